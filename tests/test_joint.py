"""The joint re-solve (``memlog consolidate --joint``, ``memlog.engine.joint``) on the tiny random
Llama with real MEMIT.

- every inject stores its fact's v* target, equal to the target of the very solve that wrote it;
- the re-solve's projection equals MEMIT's layer solve of all the applied facts from the base
  weights with those targets (to float32 rounding of the stored factor pair);
- it replays bit for bit, and its revert gives back the weights before it bit for bit;
- facts sharing a subject's key share the latest-written target;
- it stands for its members while any is present (a member that left is subtracted);
- a store whose edits have no target and a bad λ are refused, nothing written.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from memlog.core.facts import Fact
from memlog.core.memit import MemitConfig, memit_edit, solve_layers
from memlog.core.pool import fact_pool
from memlog.engine.joint import group_targets
from memlog.engine.open import open_memory
from memlog.errors import UserError
from memlog.projections.consolidation import projection_terms
from memlog.projections.facts import record_of
from memlog.store.events import Consolidated, FactInjected
from tests.test_ingest_batched import CHEAP, _init, _tiny, _weights, reopens_as

def _targets(mem) -> list[np.ndarray]:
    return [mem.store.blobs.get(item.event.target) for item in mem.logged if isinstance(item.event, FactInjected)]


def test_an_inject_stores_the_target_of_its_own_solve(tmp_path, embedded_tokenizer, monkeypatch):
    mem, lm = _init(tmp_path, embedded_tokenizer, monkeypatch)
    facts = fact_pool(3, seed=4)
    try:
        expected = memit_edit(lm, facts, CHEAP, mem.editor.covariances)
        mem.inject(facts, batch_size=3)
        stored = _targets(mem)
        assert len(stored) == 3
        for i, target in enumerate(stored):
            assert target.shape == (lm.model.config.hidden_size,) and target.dtype == np.float32
            assert np.array_equal(target, expected.targets[:, i].numpy())
        mem.inject(fact_pool(4, seed=4)[3:])  # the single-fact path stores one as well
        assert len(_targets(mem)) == 4
    finally:
        mem.close()


def test_the_joint_re_solve_is_memit_from_the_base_and_replays_exactly(tmp_path, embedded_tokenizer, monkeypatch):
    mem, lm = _init(tmp_path, embedded_tokenizer, monkeypatch)
    facts = fact_pool(4, seed=6)
    try:
        for fact in facts:  # one at a time: each solved on top of the last
            mem.inject([fact])
        before = _weights(lm)
        base = {layer: mem.projector.base_weight(layer).clone() for layer in CHEAP.layers}
        targets = torch.from_numpy(np.stack(_targets(mem), axis=1))
        report = mem.consolidate(joint=True, lam=50.0)
        assert report.method == "joint" and report.lam == 50.0 and report.members == 4
        event = mem.logged[-1].event
        assert isinstance(event, Consolidated) and event.method == "joint" and event.lam == 50.0
        live = _weights(lm)
        with torch.no_grad():
            saved = {layer: lm.adapter.edit_weight_view(lm.model, layer).clone() for layer in CHEAP.layers}
            for layer in CHEAP.layers:
                lm.adapter.edit_weight_view(lm.model, layer).copy_(base[layer])
            deltas, _ = solve_layers(lm, facts, MemitConfig(layers=CHEAP.layers, cov_samples=24, v_steps=10, lam=50.0), mem.editor.covariances, targets)
            for layer in CHEAP.layers:
                lm.adapter.edit_weight_view(lm.model, layer).copy_(saved[layer])
        for layer in CHEAP.layers:
            want = deltas[layer].u @ deltas[layer].v.T
            got = lm.adapter.edit_weight_view(lm.model, layer) - base[layer]
            assert float((got - want).norm() / want.norm()) < 1e-5
        assert live != before  # a different solution from the sequential one
        head = mem.ledger.last_weights_sha256
    finally:
        mem.close()
    assert reopens_as(tmp_path / "s", embedded_tokenizer, live, head)
    mem = open_memory(tmp_path / "s", lm=_tiny(embedded_tokenizer))
    try:
        mem.revert_consolidation()
        assert _weights(mem.editor.lm) == before
    finally:
        mem.close()


def test_facts_sharing_a_subject_key_share_the_latest_target():
    def entry(subject, relation, seq, value):
        fact = Fact(subject, relation, "X")
        return SimpleNamespace(current=SimpleNamespace(fact=record_of(fact), seq=seq, target=value))

    entries = [entry("Aria Nakamura", "lives in", 3, 1.0), entry("Aria Nakamura", "works as", 9, 2.0), entry("Bo Lind", "lives in", 5, 3.0)]
    got = group_targets(entries, lambda value: np.full(4, value, dtype=np.float32))
    assert got.shape == (4, 3)
    assert got[0].tolist() == [2.0, 2.0, 3.0]


def test_refusals_write_nothing(tmp_path, embedded_tokenizer, monkeypatch):
    monkeypatch.setattr("memlog.engine.ingest.write_target", lambda *args: None)  # edits as older logs wrote them
    mem, lm = _init(tmp_path, embedded_tokenizer, monkeypatch)
    try:
        mem.inject(fact_pool(2, seed=8), batch_size=2)
        n, live = len(mem.logged), _weights(lm)
        with pytest.raises(UserError, match="no stored v\\* target"):
            mem.consolidate(joint=True)
        for bad in (0.0, -1.0, float("nan"), float("inf")):
            with pytest.raises(UserError, match="--lam"):
                mem.consolidate(joint=True, lam=bad)
        assert len(mem.logged) == n and _weights(lm) == live
    finally:
        mem.close()


def test_a_joint_re_solve_stands_while_any_member_is_present(tmp_path, embedded_tokenizer, monkeypatch):
    """With most members reverted an SVD consolidation gives way to its members' own factors; a
    joint one stays, minus the reverted members' factors, and a replay agrees bit for bit."""
    mem, lm = _init(tmp_path, embedded_tokenizer, monkeypatch)
    try:
        mem.inject(fact_pool(4, seed=9), batch_size=4)
        report = mem.consolidate(joint=True)
        for entry in list(mem.ledger.applied_entries())[:3]:
            mem.revert(entry.edit_id)
        terms = projection_terms(mem.ledger.applied_entries())
        assert terms[0].coef == 1.0 and len(terms) == 4  # the joint pair, then the three reverted members subtracted
        assert all(t.coef == -1.0 for t in terms[1:])
        live = _weights(lm)
        assert report.consolidation_id == mem.ledger.applied_entries()[0].consolidated_in().consolidation_id
    finally:
        mem.close()
    assert reopens_as(tmp_path / "s", embedded_tokenizer, live)


def test_sleep_starts_with_a_joint_re_solve_when_one_is_due(tmp_path, embedded_tokenizer, monkeypatch):
    mem, lm = _init(tmp_path, embedded_tokenizer, monkeypatch, wake="constrained", refresh_strategy="correct")
    try:
        mem.inject(fact_pool(3, seed=11), batch_size=3)
        first = mem.sleep(cycles=1, joint_before_sleep=True)
        kinds = [type(item.event).__name__ for item in mem.logged]
        joint_at = kinds.index("Consolidated")
        assert first.resolved is not None and "SleepStarted" not in kinds[:joint_at] and "SleepStarted" in kinds[joint_at:]
        assert mem.logged[joint_at].event.method == "joint" and len(mem.logged[joint_at].event.members) == 3
        refreshed = any(kind == "EditRefreshed" for kind in kinds[joint_at:])
        second = mem.sleep(cycles=1, joint_before_sleep=True)
        # due again only when an edit left the joint re-solve or a new one came
        assert (second.resolved is not None) == refreshed
        assert mem.sleep(cycles=1).resolved is None  # off by default
        mem.inject(fact_pool(4, seed=11)[3:])
        assert mem.sleep(cycles=1, joint_before_sleep=True).resolved is not None
    finally:
        mem.close()
