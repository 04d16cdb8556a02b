"""Several waves into one maintained model: does a refresh strategy stay robust wave after wave?

Phase A injects ``--facts`` facts and sleeps until converged; each further wave injects
``--wave`` more facts from the same seeded pool and sleeps again (``run_phase`` of the phase-ab
experiment, repeated). Prints one line per wave: recall right after the wave (how many facts
the new injections broke) and the sleep cycles it took to get back.

    .venv/bin/python scripts/waves.py --store runs/waves-correct --refresh-strategy correct --waves 3
    .venv/bin/memlog compare runs/waves-reinject runs/waves-correct --out runs/waves-compare
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from memlog.experiments.phase_ab import run_phase  # noqa: E402
from memlog.experiments.runner import ExperimentSetup, create_memory, pool_facts  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True, type=Path)
    parser.add_argument("--facts", type=int, default=30)
    parser.add_argument("--wave", type=int, default=5)
    parser.add_argument("--waves", type=int, default=3, help="waves after Phase A")
    parser.add_argument("--refresh-strategy", default="reinject", choices=("reinject", "correct"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-cycles", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    setup = ExperimentSetup(seed=args.seed, refresh_strategy=args.refresh_strategy, max_cycles=args.max_cycles, threads=args.threads)
    facts = pool_facts(setup, args.facts + args.wave * args.waves)
    waves = [facts[: args.facts]] + [facts[args.facts + i * args.wave : args.facts + (i + 1) * args.wave] for i in range(args.waves)]
    started = time.perf_counter()
    mem, _ = create_memory(args.store, setup)
    rows = []
    try:
        injected = 0
        for index, wave in enumerate(waves):
            name = chr(ord("A") + index)
            phase = run_phase(mem, name, wave, args.max_cycles, 0, lambda *_: None, injected_before=injected)
            injected += len(wave)
            row = {
                "phase": name,
                "facts": injected,
                "recall_after_wave": round(phase.wave.recall, 3),
                "degraded_after_wave": phase.wave.degraded,
                "cycles": len(phase.cycles),
                "refreshed": sum(c["refreshed"] for c in phase.cycles),
                "final_recall": round(phase.final_recall, 3),
                "converged": phase.converged,
                "ppl": round(mem.editor.perplexity(), 3),
                "seconds": round(time.perf_counter() - started),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        mem.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
