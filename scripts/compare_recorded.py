"""``memlog compare`` with runs recorded only as an experiment's ``result.json``.

``memlog compare`` reads each run's store. A run whose store is gone survives as the
``result.json`` under docs/runs/ (``memlog experiment … --format json`` or ``memlog experiment
summary``); this draws the same figure and table from stores and such files mixed, in the order
given. Cycles read from a file use its own numbers: ``recall_before`` and ``recall`` over the
facts the cycle audited, ``recall_injected`` over every fact injected so far.

Usage: ``python scripts/compare_recorded.py STORE_OR_RESULT_JSON ... --out DIR [--label NAME ...]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import log

from memlog.analytics.compare import FIGURE, TABLE, Run, compare_runs, markdown_table, plot_comparison


def run_from_result(path: Path, label: str | None) -> Run:
    """A ``Run`` from a phase-ab ``result.json`` (its cycles, in the shape ``compare_runs`` gives)."""
    doc = json.loads(path.read_text())
    cycles = [
        {
            "cycle": c["cycle"],
            "facts_known": c["injected"],
            "active_facts": c["active_facts"],
            "ledger_size": c["ledger_size"],
            "cap": doc.get("cap"),
            "recall_before": c["recall_before"],
            "recall_active": c.get("recall_active", c["recall"]),
            "recall_injected": c["recall_injected"],
            "refreshed": c["refreshed"],
            "pruned": c["pruned"],
            "blocked": c.get("blocked") or 0,
            "refresh_mode": doc.get("refresh_mode"),
            "refresh_strategy": doc.get("setup", {}).get("refresh_strategy"),
        }
        for phase in doc["phases"]
        for c in phase["cycles"]
    ]
    return Run(label=label or f"{doc.get('refresh_mode')} ({path.parent.name})", store=str(path), cycles=cycles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="store directories or result.json files")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--label", action="append", help="a name per run, in order")
    args = parser.parse_args()
    labels = args.label or [None] * len(args.runs)
    if len(labels) != len(args.runs):
        raise SystemExit(f"{len(labels)} labels for {len(args.runs)} runs; pass one --label per run, or none")
    runs = []
    for path, label in zip(args.runs, labels):
        if path.is_file():
            runs.append(run_from_result(path, label))
        else:  # compare_runs wants two stores; read this one alongside itself and keep the first
            runs.append(compare_runs([path, path], None if label is None else [label, f"{label} (again)"])[0])
    args.out.mkdir(parents=True, exist_ok=True)
    plot_comparison(runs, args.out / FIGURE)
    (args.out / TABLE).write_text(markdown_table(runs))
    log(f"wrote {args.out / FIGURE} and {args.out / TABLE}")


if __name__ == "__main__":
    main()
