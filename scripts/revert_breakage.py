"""Does reverting a sleep cycle's degraded edits break healthy facts? Measured on a store's log.

For every sleep cycle of the store: its ``sleep-pre`` audit splits the active facts into
degraded and healthy (exact recall). The weights are projected as they were at that audit,
the healthy facts audited there (a check that the projection reproduces the audit), then
projected without the degraded edits and audited again: the facts the reverts alone break,
before any refresh is solved. Against the cycle's ``sleep-post`` audit it also reports how many
healthy facts the whole cycle lost and how many of those the reverts alone had already lost.
Completions are compared up to the shorter one's length. Nothing is written to the store.

``--tiny N`` measures the same on the tiny random Llama of the tests instead: N facts injected
(real MEMIT, layers 1-2), every other one (in injection order) taken as degraded, since a random
model recalls none of them; it reports how many of the other facts' greedy completions change
when the degraded edits are removed.

``--fork-at SEQ --fork-to DIR`` also writes a new store holding the log up to SEQ (the same
header, events and delta blobs, through the store's own API), e.g. to rerun a sleep cycle from
the state before it with other options.

    MEMLOG_THREADS=1 python scripts/revert_breakage.py --store STORE > breakage.json
    MEMLOG_THREADS=1 python scripts/revert_breakage.py --tiny 20
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from _common import log, setup_threads
from memlog.engine.open import open_memory
from memlog.projections.facts import fact_of
from memlog.store.events import RecallAudited, StoreCreated
from memlog.store.store import Store


def fork(src: Path, seq: int, dst: Path) -> None:
    """A new store at ``dst`` with ``src``'s log up to ``seq`` and its delta blobs."""
    with Store.open(src) as store:
        events = [item for item in store.log.read() if item.seq <= seq]
        header = events[0].event
        assert isinstance(header, StoreCreated)
        new = Store.create(dst, header)
        try:
            shutil.copytree(src / "deltas.zarr", dst / "deltas.zarr", dirs_exist_ok=True)
            new.append([item.event for item in events[1:]])
        finally:
            new.close()


def _same(a: str, b: str) -> bool:
    """The same greedy completion, read to the shorter length (the audit's length may differ
    from the version of memlog that wrote the log)."""
    return a.startswith(b) or b.startswith(a)


def cycle_breakage(mem, pre_seq: int, pre: RecallAudited, post: RecallAudited | None) -> dict:
    ledger = mem.ledger_at(pre_seq)
    recalled = {r.fact_id: r for r in pre.results}
    healthy = [s for s in ledger.active_facts() if recalled.get(s.fact.fact_id) and recalled[s.fact.fact_id].recalled]
    degraded = [s for s in ledger.active_facts() if s.fact.fact_id in recalled and not recalled[s.fact.fact_id].recalled]
    drop = {s.edit_id for s in degraded}
    facts = [fact_of(s.fact) for s in healthy]
    with mem.weights_at(pre_seq):
        same = mem.editor.audit(facts)
        mem.projector.project([e for e in ledger.applied_entries() if e.edit_id not in drop])
        started = time.perf_counter()
        reverted = mem.editor.audit(facts)
        seconds = time.perf_counter() - started
    ids = [s.fact.fact_id for s in healthy]
    lost = [i for i, r in zip(ids, reverted) if not r.recalled]
    changed = [i for i, r in zip(ids, reverted) if not _same(r.completion, recalled[i].completion)]
    out = {
        "cycle": pre.cycle,
        "active": len(ledger.active_facts()),
        "degraded": len(degraded),
        "healthy": len(healthy),
        "reproduced": sum(_same(a.completion, recalled[i].completion) for i, a in zip(ids, same)),
        "reproduced_recall": sum(a.recalled for a in same),
        "lost_by_reverts": len(lost),
        "changed_by_reverts": len(changed),
        "audit_seconds": seconds,
        "lost_by_reverts_ids": lost,
    }
    if post is not None:
        after = {r.fact_id: r.recalled for r in post.results}
        lost_cycle = [i for i in ids if not after.get(i, False)]
        out.update(lost_by_cycle=len(lost_cycle), lost_by_cycle_and_reverts=len(set(lost_cycle) & set(lost)))
    return out


def tiny(n: int) -> dict:
    """The revert measurement on the tiny random Llama (see the module doc)."""
    import tempfile

    from transformers import AutoTokenizer

    from memlog.core.adapter import LayerAdapter
    from memlog.core.memit import MemitConfig
    from memlog.core.model import LoadedModel, ModelSpec, ensure_embedded_cache
    from memlog.core.pool import fact_pool
    from memlog.engine.config import EngineConfig
    from memlog.engine.open import init_memory
    from tests.conftest import make_tiny_llama

    tok = AutoTokenizer.from_pretrained(str(ensure_embedded_cache()))
    tok.pad_token = tok.pad_token or tok.eos_token
    model = make_tiny_llama(seed=0)
    lm = LoadedModel(model=model, tokenizer=tok, adapter=LayerAdapter.for_model(model), model_id="tiny-llama", source="script", spec=ModelSpec(model="tiny-llama"))
    cfg = MemitConfig(layers=(1, 2), cov_samples=24, v_steps=10)
    with tempfile.TemporaryDirectory() as tmp:
        mem = init_memory(Path(tmp) / "s", ModelSpec(model="tiny-llama"), lm=lm, memit=cfg, engine=EngineConfig(ppl_bound=None))
        try:
            mem.inject(fact_pool(n, seed=0), audit=False)
            states = mem.ledger.active_facts()
            degraded, healthy = states[::2], states[1::2]
            facts = [fact_of(s.fact) for s in healthy]
            before = mem.editor.audit(facts)
            mem.projector.project([e for e in mem.ledger.applied_entries() if e.edit_id not in {s.edit_id for s in degraded}])
            after = mem.editor.audit(facts)
        finally:
            mem.close()
    return {
        "model": "tiny random Llama (4 layers, MLP width 128)", "facts": n, "degraded": len(degraded), "healthy": len(healthy),
        "recalled_before": sum(r.recalled for r in before), "recalled_after_reverts": sum(r.recalled for r in after),
        "changed_by_reverts": sum(not _same(a.completion, b.completion) for a, b in zip(after, before)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument("--tiny", type=int, default=None, help="measure on the tiny random Llama with this many facts instead")
    parser.add_argument("--fork-at", type=int, default=None, help="also write the log up to this seq as a new store")
    parser.add_argument("--fork-to", type=Path, default=None)
    args = parser.parse_args()
    setup_threads()
    if args.tiny is not None:
        print(json.dumps(tiny(args.tiny), indent=1))
        return
    if args.store is None:
        parser.error("give --store STORE (or --tiny N)")
    if args.fork_at is not None:
        fork(args.store, args.fork_at, args.fork_to)
        log(f"forked {args.store} at seq {args.fork_at} to {args.fork_to}")
    mem = open_memory(args.store, writable=False)
    try:
        audits = [(item.seq, item.event) for item in mem.logged if isinstance(item.event, RecallAudited)]
        cycles = []
        for seq, event in audits:
            if event.phase != "sleep-pre":
                continue
            post = next((e for s, e in audits if s > seq and e.phase == "sleep-post" and e.cycle == event.cycle), None)
            cycles.append(cycle_breakage(mem, seq, event, post))
            log(f"cycle {event.cycle}: {cycles[-1]['lost_by_reverts']} of {cycles[-1]['healthy']} healthy lost by the reverts")
    finally:
        mem.close()
    print(json.dumps({"store": str(args.store), "cycles": cycles}, indent=1))


if __name__ == "__main__":
    main()
