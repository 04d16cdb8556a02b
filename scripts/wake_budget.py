"""The store-wide perplexity budget at wake, on a real store: inject the next facts of its pool
under a budget and report which batches were kept and which was refused.

    memlog fork runs/wb --until seq=245 --store runs/cov1600r0/store
    python scripts/wake_budget.py --store runs/wb --facts 300 --seed 0 --count 50 --batch-size 25 \
        --budget 0.04 --out docs/runs/wake-budget.json

The store must hold the first facts of ``mixed_pool(--facts, seed=--seed)`` (as the capacity
scripts wrote them). The budget applies to this session only (the store's header keeps its own).
Prints, and writes to ``--out``, the base reading, the reading before, each accepted batch's
``wake-check`` reading, how many facts were stored, and the refusal's message if there was one.
"""

from __future__ import annotations

import argparse

from _common import log, setup_threads, write_json

from memlog.core.pool import mixed_pool
from memlog.engine.open import open_memory
from memlog.errors import UserError
from memlog.store.events import PerplexityMeasured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--facts", type=int, required=True, help="the pool's size, as the store's run had it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count", type=int, default=50, help="how many of the pool's next facts to inject")
    parser.add_argument("--batch-size", type=int, default=25)
    parser.add_argument("--budget", type=float, required=True, help="the PPL budget, a fraction of the base model's reading")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    setup_threads()
    pool = mixed_pool(args.facts, seed=args.seed)
    with open_memory(args.store, engine_overrides={"ppl_budget": args.budget}) as mem:
        stored = len(mem.ledger.facts)
        if [f.fact_id for f in pool[:stored]] != sorted(mem.ledger.facts, key=lambda i: mem.ledger.facts[i].injected_seq):
            raise SystemExit(f"{args.store} does not hold the first {stored} facts of this pool (seed {args.seed})")
        before_seq, ppl_before = mem.head_seq, mem.editor.perplexity()
        log(f"{stored} facts stored, PPL {ppl_before:.3f}, base {mem.base_ppl:.3f}, limit {mem.base_ppl * (1 + args.budget):.3f}")
        refused = None
        try:
            mem.inject(pool[stored : stored + args.count], audit=False, batch_size=args.batch_size)
        except UserError as exc:
            refused = str(exc)
            log(f"refused: {refused}")
        checks = [i.event.ppl for i in mem.logged if i.seq > before_seq and isinstance(i.event, PerplexityMeasured) and i.event.phase == "wake-check"]
        result = {
            "store": str(args.store), "budget": args.budget, "base_ppl": mem.base_ppl, "limit": mem.base_ppl * (1 + args.budget),
            "facts_before": stored, "ppl_before": ppl_before, "batch_size": args.batch_size, "asked": args.count,
            "stored": len(mem.ledger.facts) - stored, "accepted_readings": checks, "refused": refused,
        }
    log(f"stored {result['stored']} of {args.count}; accepted readings {[round(c, 3) for c in checks]}")
    write_json(args.out, result)


if __name__ == "__main__":
    main()
