"""Recall of a wave's new facts and of the facts stored before it, audit by audit.

    python scripts/recall_by_wave.py runs/lam/s3000 --after 245

For every ``RecallAudited`` and ``PerplexityMeasured`` (refresh checks left out) after seq
``--after``, one line: the seq, the phase and cycle, and for an audit how many of the facts
first injected after ``--after`` ("new") and how many of the others ("old") it found recalled.
"""

from __future__ import annotations

import argparse

from memlog.store.events import FactInjected, PerplexityMeasured, RecallAudited
from memlog.store.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stores", nargs="+")
    parser.add_argument("--after", type=int, required=True, help="the seq the wave starts after")
    args = parser.parse_args()
    for path in args.stores:
        items = [item for item in Store.open(path).log.read() if item.seq > args.after]
        new = {i.event.fact.fact_id for i in items if isinstance(i.event, FactInjected) and i.event.version == 1}
        for item in items:
            event = item.event
            if isinstance(event, RecallAudited):
                hits = [r.fact_id in new for r in event.results if r.recalled]
                print(path, item.seq, event.phase, event.cycle, "new", sum(hits), "old", len(hits) - sum(hits), "of", len(event.results))
            elif isinstance(event, PerplexityMeasured) and event.phase != "refresh-check":
                print(path, item.seq, "ppl", event.phase, event.cycle, round(event.ppl, 3))


if __name__ == "__main__":
    main()
