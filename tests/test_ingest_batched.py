"""Batched ingestion on the tiny random Llama with real MEMIT (``memlog.engine.ingest``).

- a batch is one MEMIT solve logged as one ``FactInjected`` per fact, each holding column i of
  the batch's factors; the projection of the batch equals the batch's own ``U Vᵀ`` applied at
  once, and a replay of the log is bit-identical to the live weights;
- one ``RecallAudited`` per batch, at its end (and one per fact with ``batch_size=1``);
- a single fact of a batch can be reverted (its column leaves the weights, bit for bit as if
  it had never been logged) and refreshed by sleep;
- updates and repeats inside the input go through the single-fact path, in order.
"""

from __future__ import annotations

import pytest
import torch

from memlog.core.adapter import LayerAdapter
from memlog.core.facts import Fact
from memlog.core.memit import MemitConfig, memit_edit
from memlog.core.model import LoadedModel, ModelSpec
from memlog.core.pool import fact_pool
from memlog.engine.config import EngineConfig
from memlog.engine.open import init_memory, open_memory
from memlog.projections.ledger import Ledger
from memlog.store.events import EditRefreshed, EditReverted, FactInjected, RecallAudited
from tests.conftest import make_tiny_llama

CHEAP = MemitConfig(layers=(1, 2), cov_samples=24, v_steps=10)


def _tiny(tokenizer) -> LoadedModel:
    model = make_tiny_llama(seed=0)
    return LoadedModel(model=model, tokenizer=tokenizer, adapter=LayerAdapter.for_model(model), model_id="tiny-llama", source="test", spec=ModelSpec(model="tiny-llama"))


def _events(mem, kind) -> list:
    return [item.event for item in mem.logged if isinstance(item.event, kind)]


def _weights(lm) -> list[bytes]:
    return [lm.adapter.edit_weight_view(lm.model, layer).detach().numpy().tobytes() for layer in CHEAP.layers]


def reopens_as(path, tokenizer, live: list[bytes], head: str | None = None) -> bool:
    """Whether the store at ``path``, opened read-only on a fresh tiny model, projects ``live``
    (and, given, the weights hash ``head``)."""
    again = _tiny(tokenizer)
    ro = open_memory(path, lm=again, writable=False)
    try:
        sha = ro.project()
        return _weights(again) == live and (head is None or sha == head)
    finally:
        ro.close()


def _init(tmp_path, tokenizer, monkeypatch, **engine):
    monkeypatch.setenv("MEMLOG_CACHE", str(tmp_path / "cache"))
    lm = _tiny(tokenizer)
    mem = init_memory(tmp_path / "s", ModelSpec(model="tiny-llama"), lm=lm, memit=CHEAP, engine=EngineConfig(**{"ppl_bound": None, "cap": 50, "wake": "unconstrained", **engine}))
    return mem, lm


def test_a_batch_is_one_solve_split_per_fact_and_replays_exactly(tmp_path, embedded_tokenizer, monkeypatch):
    mem, lm = _init(tmp_path, embedded_tokenizer, monkeypatch)
    facts = fact_pool(5, seed=2)
    try:
        base = {layer: mem.projector.base_weight(layer).clone() for layer in CHEAP.layers}
        expected = memit_edit(lm, facts, CHEAP, mem.editor.covariances)  # the same solve, outside the engine
        n_events = len(mem.logged)
        report = mem.inject(facts, batch_size=5)
        injected = _events(mem, FactInjected)
        assert [e.fact.fact_id for e in injected] == [f.fact_id for f in facts]
        assert len({e.edit_id for e in injected}) == 5 and all(len(d.deltas) == 2 for d in injected for d in [d])
        assert [bool(e.weights_sha256) for e in injected] == [False] * 4 + [True]  # one projection, at the batch's end
        assert len(_events(mem, RecallAudited)) == 1 and len(mem.logged) == n_events + 6
        assert [o.fact_id for o in report.facts] == [f.fact_id for f in facts] and all(o.status == "injected" for o in report.facts)
        for layer in CHEAP.layers:  # the N rank-1 entries project to the batch's own U Vᵀ, bit for bit
            f = expected.deltas[layer]
            once = torch.addmm(base[layer], f.u, f.v.T)
            assert torch.equal(lm.adapter.edit_weight_view(lm.model, layer), once)
        live = _weights(lm)
        head = mem.ledger.last_weights_sha256
    finally:
        mem.close()
    again = _tiny(embedded_tokenizer)
    ro = open_memory(tmp_path / "s", lm=again, writable=False)
    try:
        assert _weights(again) == live and ro.project() == head
        assert ro.replay("seq=" + str(ro.head_seq - 2))["weights_match"] is None  # inside the batch: no hash recorded
        assert ro.replay("seq=" + str(ro.head_seq))["weights_match"] is True
    finally:
        ro.close()


def test_one_audit_per_batch_and_one_per_fact_without_batching(tmp_path, embedded_tokenizer, monkeypatch):
    mem, _ = _init(tmp_path, embedded_tokenizer, monkeypatch)
    try:
        mem.inject(fact_pool(7, seed=4), batch_size=3)  # batches of 3, 3, 1
        assert len(_events(mem, RecallAudited)) == 3
        assert len(_events(mem, FactInjected)) == 7
        mem.inject(fact_pool(9, seed=4)[7:], batch_size=1)
        assert len(_events(mem, RecallAudited)) == 5
        assert all(e.weights_sha256 for e in _events(mem, FactInjected)[7:])
        audited = _events(mem, RecallAudited)[-1]
        assert len(audited.results) == 9
    finally:
        mem.close()


def test_a_single_fact_of_a_batch_reverts_exactly_and_is_refreshed(tmp_path, embedded_tokenizer, monkeypatch):
    mem, lm = _init(tmp_path, embedded_tokenizer, monkeypatch)
    facts = fact_pool(4, seed=6)
    try:
        mem.inject(facts, batch_size=4)
        victim = _events(mem, FactInjected)[1]
        mem.revert(victim.edit_id, reason="degraded")  # not held: sleep may refresh it
        without = [(i.seq, i.event) for i in mem.logged if getattr(i.event, "edit_id", None) != victim.edit_id]
        assert mem.projector.project(Ledger.fold(without).applied_entries()) == mem.ledger.last_weights_sha256
        mem.project()
        assert [e.edit_id for e in _events(mem, EditReverted)] == [victim.edit_id]
        assert victim.edit_id not in {e.edit_id for e in mem.ledger.applied_entries()}
        mem.sleep(cycles=1)
        refreshed = [e for e in _events(mem, EditRefreshed) if e.edit_id == victim.edit_id]
        assert refreshed and refreshed[0].version == 2 and mem.ledger.entries[victim.edit_id].applied
    finally:
        mem.close()


def test_updates_and_repeats_in_the_input_take_the_single_path_in_order(tmp_path, embedded_tokenizer, monkeypatch):
    mem, _ = _init(tmp_path, embedded_tokenizer, monkeypatch)
    a, b, c = fact_pool(3, seed=8)
    moved = Fact(a.subject, a.relation, "Reykjavik")
    try:
        mem.inject([a], batch_size=1)
        report = mem.inject([b, moved, c, c], batch_size=4, audit=False)
        assert [o.status for o in report.facts] == ["injected", "updated", "injected", "duplicate"]
        injected = _events(mem, FactInjected)
        assert [(e.fact.fact_id, e.version) for e in injected] == [(a.fact_id, 1), (b.fact_id, 1), (a.fact_id, 2), (c.fact_id, 1)]
        assert mem.ledger.facts[a.fact_id].fact.object == "Reykjavik"
    finally:
        mem.close()


@pytest.mark.real_model
def test_a_batch_on_the_embedded_model_is_recalled_and_replays(tmp_path, real_model):
    """The capability on the real model: 4 facts in one batch, one audit, recalled, replay exact."""
    facts = fact_pool(4, seed=11)
    mem = init_memory(tmp_path / "s", ModelSpec(), lm=real_model, engine=EngineConfig(ppl_bound=None))
    try:
        report = mem.inject(facts, batch_size=4)
        assert len(_events(mem, FactInjected)) == 4 and len(_events(mem, RecallAudited)) == 1
        assert sum(bool(o.recalled) for o in report.facts) >= 3, [(o.fact_id, o.recalled) for o in report.facts]
        head = mem.ledger.last_weights_sha256
        assert mem.project() == head and mem.replay(f"seq={mem.head_seq}")["weights_match"] is True
    finally:
        mem.close()
