"""Continue a capacity run in an existing store: more waves of the same seeded pool.

    memlog fork runs/cap/more --until seq=224 --store runs/capacity-300/stores/constrained
    python scripts/capacity_more.py --store runs/cap/more --facts 300 --wave 50 --batch-size 25 \
        --refresh-strategy correct --max-cycles 3 --out runs/cap/more.rows.jsonl

The store must be empty (``memlog init``) or hold the first facts of
``mixed_pool(--facts, seed=--seed, names=--names)``, as
``memlog experiment capacity`` (or ``scripts/capacity_runs.py``) wrote them; the script checks
that, then injects the rest of the pool wave by wave (``--batch-size`` facts per MEMIT solve) and
sleeps until converged after each (``experiments.capacity.run_wave``), appending each wave's row
to ``--out`` as it ends. ``--refresh-strategy``, ``--max-cycles``, ``--protect``, ``--protect-energy``, ``--lam``, ``--norm-penalty``, ``--v-stop``, ``--batch-refresh``, ``--joint`` and ``--ppl-budget`` apply to this
session only (the store's header keeps its settings).
With ``--until HH:MM`` (UTC) no new wave starts after that time. Each step of a wave (inject,
re-solve, audit, refresh) is shown on stderr as it happens.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

from _common import log, setup_threads

from memlog.cli.progress import progress_bars
from memlog.core.pool import mixed_pool
from memlog.engine.config import PROTECT_POSITIONS
from memlog.engine.open import open_memory
from memlog.errors import UserError
from memlog.experiments.capacity import run_wave


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--facts", type=int, required=True, help="the pool's size (facts in all, as the first run had it)")
    parser.add_argument("--wave", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--names", default="unique")
    parser.add_argument("--refresh-strategy", default="reinject", choices=["reinject", "correct"])
    parser.add_argument("--max-cycles", type=int, default=3)
    parser.add_argument("--protect", default=None, choices=list(PROTECT_POSITIONS), help="override the store's protected positions")
    parser.add_argument("--protect-energy", type=float, default=None, help="override the store's held share of the protected keys' energy")
    parser.add_argument("--lam", type=float, default=None, help="override the store's MEMIT λ (the covariance term's weight) for new edits")
    parser.add_argument("--norm-penalty", type=float, default=None, help="override the store's MEMIT norm penalty ρ for new edits")
    parser.add_argument("--v-stop", default=None, choices=["loss", "most-probable"], help="override the store's v* early stop for new edits")
    parser.add_argument("--batch-refresh", action="store_true", help="sleep refreshes a cycle's degraded facts in one constrained solve")
    parser.add_argument("--ppl-budget", type=float, default=None, help="override the store's PPL budget: sleep keeps no refresh, and wake no inject, that leaves PPL more than this fraction above the base model's (a refused batch ends the run)")
    parser.add_argument("--joint", action="store_true", help="re-solve every applied edit jointly from the base weights before each wave's sleep")
    parser.add_argument("--up-to", type=int, default=None, help="stop once this many facts are stored (default: the whole pool)")
    parser.add_argument("--until", default=None, help="start no wave after HH:MM (UTC)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    setup_threads()
    pool = mixed_pool(args.facts, seed=args.seed, names=args.names)
    overrides = {"refresh_strategy": args.refresh_strategy, "max_cycles": args.max_cycles, "protect_positions": args.protect, "protect_energy": args.protect_energy, "batch_refresh": args.batch_refresh or None, "ppl_budget": args.ppl_budget}
    mem = open_memory(args.store, engine_overrides=overrides, memit_overrides={"lam": args.lam, "norm_penalty": args.norm_penalty, "v_stop": args.v_stop})
    try:
        with progress_bars(True) as progress:  # each step of a wave on stderr: a cycle can run for half an hour
            waves(mem, pool, args, progress)
    finally:
        mem.close()


def waves(mem, pool, args, progress) -> None:
    """Inject the rest of the pool wave by wave, appending each wave's row to ``args.out``."""
    stored = len(mem.ledger.facts)
    if [f.fact_id for f in pool[:stored]] != sorted(mem.ledger.facts, key=lambda i: mem.ledger.facts[i].injected_seq):
        raise SystemExit(f"{args.store} does not hold the first {stored} facts of this pool (seed {args.seed}, names {args.names})")
    stop = None
    if args.until:
        hour, minute = map(int, args.until.split(":"))
        stop = datetime.now(timezone.utc).replace(hour=hour, minute=minute, second=0, microsecond=0)
    rest = pool[stored : args.up_to]
    for first in range(0, len(rest), args.wave):
        if stop is not None and datetime.now(timezone.utc) >= stop:
            log(f"stopping before the wave at {stored + first} facts: past {args.until}")
            break
        number = (stored + first) // args.wave + 1
        try:
            row = run_wave(mem, number, rest[first : first + args.wave], args.max_cycles, progress, args.batch_size, joint=args.joint)
        except UserError as exc:  # the wake guard refused a batch: the budget is full
            log(f"wave {number} stopped: {exc}")
            break
        with args.out.open("a") as fh:
            fh.write(json.dumps(row.to_dict() | {"refresh_strategy": args.refresh_strategy, "batch_size": args.batch_size, "protect": mem.config.protect_positions, "protect_energy": mem.config.protect_energy, "batch_refresh": mem.config.batch_refresh, "lam": mem.editor.config.lam, "norm_penalty": mem.editor.config.norm_penalty, "v_stop": mem.editor.config.v_stop, "ppl_budget": mem.config.ppl_budget, "joint": args.joint}) + "\n")
        log(f"wave {number}, {row.facts} facts: recall {row.recall_after_wave:.3f} -> {row.recall_after_sleep:.3f}, {row.cycles} cycles, "
            f"{row.refreshed} refreshed, PPL {row.ppl_after_sleep:.3f}, inject {row.inject_seconds:.0f}s, sleep {row.sleep_seconds:.0f}s")


if __name__ == "__main__":
    main()
