"""Run ``memlog experiment capacity`` for several wake modes one after the other, writing each
wave's row as it finishes (so that a run stopped early keeps its waves), then the documents
and one plot.

    python scripts/capacity_runs.py --out docs/runs/capacity-100 --facts 100 --wave 10 \
        --modes constrained unconstrained --max-cycles 4

``--lam``, ``--v-stop-loss`` and ``--v-stop`` set MEMIT's λ and v*'s early stop for the stores.
With ``--no-sleep`` each wave ends with an audit instead of a sleep (the wake-only curve):

    python scripts/capacity_runs.py --out runs/wake-1000 --facts 1000 --wave 100 --batch-size 25 \
        --modes constrained --protect object --no-sleep

Writes OUT/MODE.rows.jsonl (one line per wave), OUT/MODE.json (the experiment's document) and
OUT/capacity.png. Stores go under OUT/stores/ (not for git).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import log, setup_threads

from memlog.core.memit_hparams import MemitConfig
from memlog.engine.config import PROTECT_POSITIONS
from memlog.experiments.runner import ExperimentSetup, capacity_experiment, capacity_plot  # noqa: E402


def memit_settings(args) -> dict:
    """The MEMIT settings the command line set (the others stay MemitConfig's defaults)."""
    given = {"lam": args.lam, "v_stop_loss": args.v_stop_loss, "v_stop": args.v_stop}
    return {k: v for k, v in given.items() if v is not None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--facts", type=int, default=100)
    parser.add_argument("--wave", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--names", default="unique")
    parser.add_argument("--max-cycles", type=int, default=4)
    parser.add_argument("--modes", nargs="+", default=["constrained", "unconstrained"])
    parser.add_argument("--batch-size", type=int, default=1, help="facts per MEMIT solve within a wave")
    parser.add_argument("--refresh-strategy", default="reinject", choices=["reinject", "correct"])
    parser.add_argument("--protect", default="subject", choices=list(PROTECT_POSITIONS), help="positions constrained solves hold per fact")
    parser.add_argument("--no-sleep", action="store_true", help="audit after each wave instead of sleeping (the wake-only curve)")
    parser.add_argument("--joint", action="store_true", help="re-solve every applied edit jointly from the base weights before each sleep")
    parser.add_argument("--batch-refresh", action="store_true", help="sleep refreshes a cycle's degraded facts in one constrained solve")
    parser.add_argument("--lam", type=float, default=None, help="MEMIT's λ for the new stores (default: a new store's for the wake mode)")
    parser.add_argument("--v-stop-loss", type=float, default=None, help="v*'s early-stop loss (default: MemitConfig's, MEMIT's 0.05)")
    parser.add_argument("--v-stop", default=None, choices=["loss", "most-probable"], help="v*'s early-stop rule (default: MemitConfig's)")
    args = parser.parse_args()
    setup_threads()
    args.out.mkdir(parents=True, exist_ok=True)
    docs = {}
    for mode in args.modes:
        rows_file = args.out / f"{mode}.rows.jsonl"
        rows_file.write_text("")

        def on_row(row, rows_file=rows_file, mode=mode):
            with rows_file.open("a") as fh:
                fh.write(json.dumps(row.to_dict()) + "\n")
            joined = f"-> joint {row.recall_after_joint:.3f} (PPL {row.ppl_after_joint:.3f}) " if row.recall_after_joint is not None else ""
            slept = joined + f"-> {row.recall_after_sleep:.3f}, {row.cycles} cycles, PPL {row.ppl_after_sleep:.2f}" if row.cycles else f"(no sleep), PPL {row.ppl_after_wave:.3f}"
            log(f"{mode}: wave {row.wave}, {row.facts} facts: recall {row.recall_after_wave:.3f} {slept}, "
                f"min rank left {min(row.rank_left) if row.rank_left else None}, inject {row.inject_seconds:.0f} s, audit/sleep {row.sleep_seconds:.0f} s")

        setup = ExperimentSetup(seed=args.seed, cap=None, max_cycles=args.max_cycles, wake=mode, threads=1, refresh_strategy=args.refresh_strategy, protect_positions=args.protect, batch_refresh=args.batch_refresh)
        log(f"{mode}: {args.facts} facts in waves of {args.wave}")
        doc = capacity_experiment(args.out / "stores" / mode, setup, n_facts=args.facts, wave=args.wave, names=args.names, on_row=on_row, batch_size=args.batch_size, sleep=not args.no_sleep, joint=args.joint,
                                  memit=MemitConfig(seed=args.seed, **memit_settings(args)),
                                  progress=lambda stage, done, total: log(f"{mode}: {stage} {done}/{total}") if stage == "waves" else None)
        (args.out / f"{mode}.json").write_text(json.dumps(doc, indent=1))
        docs[mode] = doc
        capacity_plot(docs, args.out / "capacity.png")
        log(f"{mode}: done in {doc['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
