"""More correcting batched cycles on a capacity store, with session overrides (the room A/B runs).

    python docs/runs/capacity-300/room/more_cycles.py STORE 1000 7 3                          # λ = 1,000
    python docs/runs/capacity-300/room/more_cycles.py STORE 3000 7 3 '{"protect_energy": 0.99}'

Arguments: the store (a fork; it is written to), λ for the refreshes, the number of cycles,
``stale_after`` (``none`` switches the stale rule off with ``memlog.OFF``), and optional further
engine overrides as JSON. One JSON row per cycle; the first row gives the settings in force.
"""
import json
import sys
import time

sys.path.insert(0, "scripts")
from _common import setup_threads  # noqa: E402

from memlog.engine.config import OFF  # noqa: E402
from memlog.engine.open import open_memory  # noqa: E402

setup_threads()
store, lam, cycles, stale = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
stale_after = OFF if stale == "none" else int(stale)
overrides = {"refresh_strategy": "correct", "batch_refresh": True, "stale_after": stale_after, **(json.loads(sys.argv[5]) if len(sys.argv) > 5 else {})}
with open_memory(store, engine_overrides=overrides, memit_overrides={"lam": lam}) as mem:
    print(json.dumps({"stale_after": mem.config.stale_after, "stale_progress": mem.config.stale_progress, "protect_energy": mem.config.protect_energy, "lam": mem.editor.config.lam}), flush=True)
    for _ in range(cycles):
        start = time.perf_counter()
        report = mem.sleep(cycles=1).cycles[0]
        print(json.dumps({"cycle": report.cycle, "recall": report.recall, "ppl_after": report.ppl_after, "refreshed": report.refreshed,
                          "rolled_back": report.rolled_back, "seconds": time.perf_counter() - start}), flush=True)
