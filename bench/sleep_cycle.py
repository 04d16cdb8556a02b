"""Benchmark: one sleep cycle at 14 facts on the embedded model, broken down by step.

Creates a store in a temporary directory (covariances from the ``$MEMLOG_CACHE`` copy
when there is one), injects the first 14 pool facts unconstrained (without per-fact
audits, to save time; the cycle audits anyway), then runs one sleep cycle and prints
``CycleReport.step_seconds`` (PPL before, audit, constraint keys, refresh, prune, PPL
after, audit after) with each step's share of the cycle, and the mean inject time.

At 14 facts the embedded model still recalls every fact (its wake capacity is ~16), so a
cycle would refresh nothing; by default the audit's verdict is overridden to call 6 facts
degraded (``--refreshes 6``, as in ``bench/gpu_8b.py``) so that the refresh step is timed
too; the audit forward passes and the refreshes are real. ``--refreshes 0`` keeps the
model's own verdict.

    python bench/sleep_cycle.py [--facts 14] [--refreshes 6] [--seed 0]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench_common import ForcedVerdictEditor, add_repo_to_path, fix_threads, print_ratio, timed

add_repo_to_path()


def build(path: Path, facts: int, seed: int):
    """A fresh store on the embedded model with ``facts`` pool facts injected; returns (memory, seconds per inject)."""
    from memlog.core.model import ModelSpec
    from memlog.core.pool import fact_pool
    from memlog.engine.open import init_memory
    from memlog.experiments.seeding import seed_everything

    seed_everything(seed)
    mem = init_memory(path, ModelSpec())
    seconds, _ = timed(lambda: mem.inject(fact_pool(facts, seed=seed), audit=False))
    return mem, seconds / facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facts", type=int, default=14)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--refreshes", type=int, default=6,
        help="Force this many facts to be audited as degraded, so the cycle refreshes them (0: the model's own verdict).",
    )
    args = parser.parse_args()
    if not 0 <= args.refreshes <= args.facts:
        parser.error("--refreshes must be between 0 and --facts")
    threads = fix_threads()
    with tempfile.TemporaryDirectory(prefix="memlog-bench-sleep-") as tmp:
        mem, per_inject = build(Path(tmp) / "store", args.facts, args.seed)
        if args.refreshes:
            from memlog.core.pool import fact_pool

            healthy = {f.fact_id for f in fact_pool(args.facts, seed=args.seed)[: args.facts - args.refreshes]}
            mem.editor = ForcedVerdictEditor(mem.editor, healthy)
        try:
            report = mem.sleep(cycles=1).cycles[0]
        finally:
            mem.close()
    forced = f"{args.refreshes} forced degraded" if args.refreshes else "the model's own audit verdict"
    print(f"sleep_cycle: embedded model, {args.facts} facts ({forced}), seed {args.seed}, {threads} threads")
    print(f"sleep_cycle: mean inject {per_inject:.2f} s/fact")
    print(
        f"sleep_cycle: cycle {report.seconds:.2f} s: recall {report.recall_before:.3f} -> {report.recall:.3f}, "
        f"degraded {report.degraded_before} -> {report.degraded}, refreshed {report.refreshed}, rolled back {report.rolled_back}, pruned {report.pruned}"
    )
    for step, seconds in report.step_seconds.items():
        print(f"sleep_cycle:   {step:<16} {seconds:8.2f} s  {100 * seconds / report.seconds:5.1f}%")
    if report.refreshed + report.rolled_back:
        per_refresh = report.step_seconds.get("refresh", 0.0) / (report.refreshed + report.rolled_back)
        print(f"sleep_cycle: {per_refresh:.2f} s per refresh (revert + constrained MEMIT + projection + PPL check)")
        print_ratio("sleep_cycle.refresh_over_inject", per_refresh, per_inject, "one constrained refresh / one unconstrained inject")
    print_ratio("sleep_cycle.cycle_over_inject", report.seconds, per_inject, f"sleep cycle at {args.facts} facts / one inject")
    ppl = report.step_seconds.get("ppl_before", 0.0) + report.step_seconds.get("ppl_after", 0.0)
    print_ratio("sleep_cycle.ppl_share", ppl, report.seconds, "PPL before+after / cycle")


if __name__ == "__main__":
    main()
