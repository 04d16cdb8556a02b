"""Does a refresh bring its fact closer? The object NLL before each correcting refresh, fact by fact.

    python scripts/refresh_progress.py runs/newrule/store --out runs/newrule/progress.json

For every fact refreshed with the ``correct`` strategy, the sequence of ``EditRefreshed.v_loss_before``
(v*'s first-step NLL on the weights that still hold the fact's edit), and how the fact ended: recalled
at the last audit, suspended as stale, or degraded. The summary gives, for each pair of consecutive
refreshes of a fact (kept ones; rolled-back ones are left out), the ratio of the later NLL to the earlier
one, split by how the fact ended, and how many of those ratios fall at or below 1 − ``--progress``
(what ``EngineConfig.stale_progress`` calls progress).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import median

from memlog.store.events import EditRefreshed, RecallAudited, RefreshRolledBack, RefreshSuspended
from memlog.store.store import Store


def trajectories(items) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Per fact: the NLL before each kept correcting refresh, and its fate at the end of the log."""
    rolled = {(i.event.edit_id, i.event.version) for i in items if isinstance(i.event, RefreshRolledBack)}
    before: dict[str, list[float]] = {}
    for item in items:
        e = item.event
        if isinstance(e, EditRefreshed) and e.strategy == "correct" and e.v_loss_before is not None and (e.edit_id, e.version) not in rolled:
            before.setdefault(e.fact.fact_id, []).append(e.v_loss_before)
    audits = [i.event for i in items if isinstance(i.event, RecallAudited)]
    recalled = {r.fact_id for r in audits[-1].results if r.recalled} if audits else set()
    suspended = {i.event.fact_id for i in items if isinstance(i.event, RefreshSuspended)}
    fate = {f: "recalled" if f in recalled else "suspended" if f in suspended else "degraded" for f in before}
    return before, fate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--progress", type=float, default=0.25)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    items = list(Store.open(args.store, writable=False).log.read())
    before, fate = trajectories(items)
    summary = {}
    for end in ("recalled", "suspended", "degraded"):
        ratios = [b / a for f, seq in before.items() if fate[f] == end for a, b in zip(seq, seq[1:]) if a > 0]
        summary[end] = {
            "facts": sum(1 for f in fate if fate[f] == end),
            "pairs": len(ratios),
            "median_ratio": median(ratios) if ratios else None,
            "at_or_below_threshold": sum(r <= 1 - args.progress for r in ratios),
        }
        print(f"{end:9s}: {summary[end]['facts']} facts, {len(ratios)} consecutive pairs, median NLL ratio "
              f"{summary[end]['median_ratio'] if ratios else float('nan'):.3f}, {summary[end]['at_or_below_threshold']} at or below {1 - args.progress:.2f}")
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "facts": {f: {"fate": fate[f], "nll_before": seq} for f, seq in before.items()}}, indent=1))


if __name__ == "__main__":
    main()
