"""Release against prune: what the null-space budget's action does to the facts it keeps.

    memlog fork runs/ba/release --until seq=N --store runs/wake-1000/stores/constrained
    memlog fork runs/ba/prune --until seq=N --store runs/wake-1000/stores/constrained
    python scripts/budget_action.py --store runs/ba/release --action release --out runs/ba/release.json
    python scripts/budget_action.py --store runs/ba/prune --action prune --out runs/ba/prune.json

The store must be over the budget (its held keys leave under 10 % of the key space free). The
script runs one sleep cycle there with the given ``budget_action``. Everything before the
cycle's prune step is deterministic, so two forks of one state refresh the same facts and pick
the same victims; only what is done to the victims differs. The output gives the cycle's
opening audit, the victims (and how many of them were recalled), the facts kept and how many the
cycle's closing audit found recalled, and perplexity before and after.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

from _common import log, setup_threads

from memlog.engine.open import open_memory
from memlog.store.events import EditPruned, FactReleased, RecallAudited


def _recalled(audit: RecallAudited, facts: set[str]) -> int:
    return sum(1 for r in audit.results if r.fact_id in facts and r.recalled)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--action", required=True, choices=["release", "prune"])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    setup_threads()
    start = time.perf_counter()
    mem = open_memory(args.store, engine_overrides={"budget_action": args.action})
    try:
        first = mem.head_seq + 1
        owner = {e.edit_id: e.fact_id for e in mem.ledger.entries.values()}
        report = mem.sleep(cycles=1, progress=lambda stage, done, total: log(f"{stage} {done}/{total}") if done == total else None)
        new = [i.event for i in mem.logged if i.seq >= first]
        victims = [e for e in new if isinstance(e, (FactReleased, EditPruned))]
        pre = next(e for e in new if isinstance(e, RecallAudited) and e.phase == "sleep-pre")
        post = next(e for e in reversed(new) if isinstance(e, RecallAudited) and e.phase == "sleep-post")
        gone = {owner[e.edit_id] for e in victims}
        kept = sorted(r.fact_id for r in post.results)
        cycle = report.cycles[0]
    finally:
        mem.close()
    result = {
        "store": str(args.store),
        "action": args.action,
        "facts_before": len(pre.results),
        "recalled_before": _recalled(pre, {r.fact_id for r in pre.results}),
        "victims": len(victims),
        "victim_kinds": sorted({type(e).__name__ for e in victims}),
        "victims_recalled_before": _recalled(pre, gone),
        "kept": len(kept),
        "kept_sha256": hashlib.sha256("\n".join(kept).encode()).hexdigest(),  # the same set in both arms
        "kept_recalled_before": _recalled(pre, set(kept)),
        "kept_recalled_after": _recalled(post, set(kept)),
        "refreshed": cycle.refreshed,
        "ppl_before": cycle.ppl_before,
        "ppl_after": cycle.ppl_after,
        "cycle_seconds": cycle.seconds,
        "seconds": time.perf_counter() - start,
    }
    log(f"{args.action}: {len(victims)} victims, {result['kept_recalled_after']} of {len(kept)} kept facts recalled after (before: {result['kept_recalled_before']}), PPL {cycle.ppl_after:.3f}")
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
