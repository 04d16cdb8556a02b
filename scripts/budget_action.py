"""Release against prune: what the null-space budget's action does to the facts it keeps.

    memlog fork runs/ba/release --until seq=N --store runs/wake-1000/stores/constrained
    memlog fork runs/ba/prune --until seq=N --store runs/wake-1000/stores/constrained
    python scripts/budget_action.py --store runs/ba/release --action release > release.json
    python scripts/budget_action.py --store runs/ba/prune --action prune > prune.json

The store must be over the budget (its held keys leave under 10 % of the key space free) and end
with an audit of every active fact on its current weights (the wake-only capacity run's wave-end
audit). The script takes the victims the budget takes in a sleep cycle's step 6: the store's
prune policy order (``memlog.engine.sleep.prune_order``), cut where the kept facts' keys free
the reserve (``memlog.engine.room.budget_victims``). Then it releases them (``Memory.release``)
or prunes them (the ``EditPruned`` events sleep writes, in one unit), and audits the kept facts
and reads perplexity. No refresh runs, so the two arms differ by the action alone. Two forks of
one state pick the same victims (the output's ``victims_sha256``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

from _common import log, setup_threads

from memlog.engine.open import open_memory
from memlog.engine.room import budget_excess, budget_victims, room_now
from memlog.engine.sleep import prune_order
from memlog.store.events import EditPruned


def _sha(ids) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--action", required=True, choices=["release", "prune"])
    args = parser.parse_args()
    setup_threads()
    start = time.perf_counter()
    mem = open_memory(args.store)
    try:
        before = mem.ledger.last_audit
        active = {s.fact.fact_id for s in mem.ledger.active_facts()}
        if before is None or {r.fact_id for r in before.results} != active:
            raise SystemExit(f"{args.store}: the latest audit does not cover exactly the active facts; audit first")
        recalled_before = {r.fact_id for r in before.results if r.recalled}
        ppl_before = float(mem.editor.perplexity())
        room = room_now(mem)
        short = budget_excess(mem, room)
        if short <= 0:
            raise SystemExit(f"{args.store} is not over the budget (rank left {room.rank_left if room else None})")
        order = prune_order(mem, mem.config)
        n = budget_victims(mem, room, order)
        victims = order[:n]
        log(f"{len(active)} active, rank left {min(room.rank_left.values())}, short {short} dimensions: {n} victims", sys.stderr)
        if args.action == "release":
            for state in victims:
                mem.release(state.edit_id, reason="the null-space budget's victims (scripts/budget_action.py)")
        else:
            with mem.unit():
                for state in victims:
                    entry = mem.ledger.entries[state.edit_id]
                    mem.emit(EditPruned(edit_id=entry.edit_id, version=entry.version, reason="the null-space budget's victims (scripts/budget_action.py)"), project=True)
        after = mem.audit()
        ppl_after = float(mem.editor.perplexity())
        kept = {r.fact_id for r in after.results}
        gone = {s.fact.fact_id for s in victims}
        assert kept == active - gone
        result = {
            "store": str(args.store),
            "action": args.action,
            "active": len(active),
            "recalled_before": len(recalled_before),
            "rank_left_before": room.rank_left,
            "short_dimensions": short,
            "victims": n,
            "victims_recalled_before": len(gone & recalled_before),
            "victims_sha256": _sha(gone),
            "kept": len(kept),
            "kept_recalled_before": len(kept & recalled_before),
            "kept_recalled_after": sum(1 for r in after.results if r.recalled),
            "kept_broken": sum(1 for r in after.results if not r.recalled and r.fact_id in recalled_before),
            "kept_recovered": sum(1 for r in after.results if r.recalled and r.fact_id not in recalled_before),
            "ppl_before": ppl_before,
            "ppl_after": ppl_after,
            "rank_left_after": room_now(mem).rank_left,
            "seconds": time.perf_counter() - start,
        }
    finally:
        mem.close()
    log(f"{args.action}: {result['kept_recalled_after']} of {result['kept']} kept facts recalled (before: {result['kept_recalled_before']}), PPL {ppl_before:.3f} -> {ppl_after:.3f}", sys.stderr)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
