"""The room a store had left at the end of each wave: rank left and a new fact's reach.

For every point of a store's log where a sleep ended and the next event injects a fact (the end of
one wave, before the next), and at the head, this forks the store there (into a temporary
directory; the source is only read) and measures the room as sleep's budget does
(``memlog.engine.room.room_now``: every active fact's audit keys at the store's protected
positions, on the weights at that point; the reach of the newest facts' keys against the
others'). One JSON line per point on stdout:

    MEMLOG_THREADS=1 python scripts/store_reach.py --store runs/cap/store > reach.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _common import log, setup_threads

from memlog.engine.open import open_memory
from memlog.engine.room import room_now
from memlog.projections.readmodels import mean_reach
from memlog.store.fork import fork_store
from memlog.store.store import Store


def wave_ends(store: Path) -> list[int]:
    """Seqs of the SleepEnded events the next event of which is a FactInjected, and the head."""
    with Store.open(store, writable=False) as st:
        logged = st.log.read()
    kinds = [type(item.event).__name__ for item in logged]
    ends = [logged[i].seq for i in range(len(logged) - 1) if kinds[i] == "SleepEnded" and kinds[i + 1] == "FactInjected"]
    return ends + [logged[-1].seq]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    args = parser.parse_args()
    setup_threads()
    for seq in wave_ends(args.store):
        with tempfile.TemporaryDirectory() as tmp:
            fork_store(args.store, Path(tmp) / "at", seq)
            mem = open_memory(Path(tmp) / "at", writable=False)
            try:
                room = room_now(mem)
                row = {
                    "seq": seq,
                    "active_facts": room.protected,
                    "positions": mem.config.protect_positions,
                    "energy": mem.config.protect_energy,
                    "min_rank_left": min(room.rank_left.values()),
                    "reach": [room.reach[layer] for layer in sorted(room.reach)],
                    "mean_reach": mean_reach(room.reach),
                }
            finally:
                mem.close()
        log(f"seq {seq}: {row['active_facts']} facts, mean reach {row['mean_reach']:.3f}, min rank left {row['min_rank_left']}", stream=sys.stderr)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
