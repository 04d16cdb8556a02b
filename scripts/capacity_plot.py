"""One plot of several capacity runs, each pieced together from the files its waves left.

    python scripts/capacity_plot.py --out docs/runs/capacity-300/capacity-all.png \
        --run "subject, reinject=docs/runs/capacity-300/constrained.rows.jsonl" \
        --run "subject, correct=docs/runs/capacity-300/constrained.rows.jsonl:1,docs/runs/capacity-300/sleep-correct-after-wave-2.json" \
        --base-ppl 14.403

A run is ``LABEL=FILE[,FILE...]``, its points in order: a ``.rows.jsonl`` file gives one point
per wave row (``FILE:N`` keeps its first N rows); a sleep report (``memlog sleep --format json``,
a JSON object with ``cycles``) gives one point, the active facts after its last cycle, recall
before its first cycle and after its last, and PPL after its last. The plot is
``memlog.experiments.capacity.plot_capacity``'s: recall after the wave (dashed) and after sleep,
and PPL, against facts stored.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import log

from memlog.experiments.capacity import plot_capacity


def points(spec: str) -> list[dict]:
    """The rows one ``FILE[:N]`` contributes."""
    name, _, keep = spec.partition(":")
    path = Path(name)
    if path.name.endswith(".jsonl"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return rows[: int(keep)] if keep else rows
    report = json.loads(path.read_text())
    first, last = report["cycles"][0], report["cycles"][-1]
    return [{"facts": last["active_facts"], "recall_after_wave": first["recall_before"], "recall_after_sleep": last["recall"], "ppl_after_sleep": last["ppl_after"]}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="LABEL=FILE[,FILE...] (see the module doc)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--base-ppl", type=float, default=None, help="draw the unedited model's PPL (e.g. from `memlog status` of any store of the model)")
    args = parser.parse_args()
    runs = {}
    for run in args.run:
        label, _, files = run.partition("=")
        runs[label] = [row for spec in files.split(",") for row in points(spec)]
    log(f"wrote {plot_capacity(runs, args.out, args.base_ppl)}")


if __name__ == "__main__":
    main()
