"""More correcting batched cycles on a capacity store at a given λ, with the stale rule as given.

    python docs/runs/capacity-300/stale/more_cycles.py STORE 3000 4 none   # the rule off
    python docs/runs/capacity-300/stale/more_cycles.py STORE 3000 4 3      # stale_after = 3

Run from the repository root on a copy of the store (it writes to it). One JSON row per cycle.
The "rule as it was" rows were made with ``3`` before the progress rule existed (so only recall
restarted a fact's count); ``none`` switches the rule off for the session (``memlog.OFF``: an
override of None is read as "not given").
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
overrides = {"refresh_strategy": "correct", "batch_refresh": True, "stale_after": stale_after}
with open_memory(store, engine_overrides=overrides, memit_overrides={"lam": lam}) as mem:
    print(json.dumps({"stale_after": mem.config.stale_after, "stale_progress": mem.config.stale_progress}), flush=True)
    for _ in range(cycles):
        start = time.perf_counter()
        report = mem.sleep(cycles=1).cycles[0]
        print(json.dumps({"cycle": report.cycle, "recall": report.recall, "ppl_after": report.ppl_after, "refreshed": report.refreshed,
                          "rolled_back": report.rolled_back, "seconds": time.perf_counter() - start}), flush=True)
