"""Consolidation (``memlog.engine.consolidate``) on a tiny random Llama with the real projector.

- replay of the log equals the live weights bit for bit, and a replay up to a seq before
  the consolidation gives the pre-consolidation weights bit for bit;
- every member's edit-layer output at its keys changes by at most 1e-5 relative;
- reverting the consolidation gives back the pre-consolidation weights bit for bit, also
  after a member was reverted or updated in between (the projection then equals the log
  without the consolidation, bit for bit);
- a failure mid-consolidation leaves the log, the blobs and the weights as they were;
- bad input is refused with a one-line error and writes nothing;
- a Hypothesis state machine mixes injects, updates, reverts, sleeps (in-place refreshes),
  consolidations (both kinds: SVD and joint re-solve) and their reverts: live always equals
  replay, bit for bit.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from memlog.core.adapter import LayerAdapter
from memlog.core.facts import Fact
from memlog.engine import consolidate as consolidate_module
from memlog.engine.config import EngineConfig
from memlog.engine.consolidate import member_keys, output_changes, truncated_factors
from memlog.engine.memory import Memory
from memlog.errors import UserError
from memlog.projections.consolidation import stacked_columns
from memlog.projections.ledger import Ledger
from memlog.projections.weights import WeightProjector
from memlog.store.deltas import read_uv
from memlog.store.events import Consolidated, ConsolidationReverted, blob_refs, decode_event, encode_event
from memlog.store.store import Store, gc, verify_store
from tests.conftest import make_tiny_llama
from tests.fakes import KeyedEditor, KeyedWeights, fake_header

LAYERS = [1, 2]


class Projector(WeightProjector):
    """The real projector, also keeping the fake editor's record of what is applied."""

    def __init__(self, model, fake: KeyedWeights, load_blob):
        super().__init__(model, LayerAdapter.for_model(model), LAYERS, load_blob)
        self.fake = fake

    def project(self, entries, layers=None):
        self.fake.project(entries)
        return super().project(entries, layers)


@pytest.fixture()
def mem(tmp_path):
    store = Store.create(tmp_path / "store", fake_header())
    model = make_tiny_llama(vocab=512)
    fake = KeyedWeights()
    editor = KeyedEditor(fake, layers=LAYERS, d_out=64, d_in=128)
    memory = Memory(store, editor, Projector(model, fake, store.blobs.get), EngineConfig(ppl_bound=None, refresh_strategy="reinject"))
    yield memory
    memory.close()


def _facts(n: int, start: int = 0) -> list[Fact]:
    return [Fact(f"Subject{i} Person", "lives in", f"City{i % 3}") for i in range(start, start + n)]


def _live(mem) -> list[bytes]:
    return [mem.projector.adapter.edit_weight_view(mem.projector.model, layer).detach().numpy().tobytes() for layer in LAYERS]


def _replay(events, blobs) -> list[bytes]:
    model = make_tiny_llama(vocab=512)
    adapter = LayerAdapter.for_model(model)
    WeightProjector(model, adapter, LAYERS, blobs.get).project(Ledger.fold(events).applied_entries())
    return [adapter.edit_weight_view(model, layer).detach().numpy().tobytes() for layer in LAYERS]


def _events(mem, skip=()) -> list:
    return [(i.seq, i.event) for i in mem.logged if not isinstance(i.event, skip)]


def _weights(mem) -> dict[int, torch.Tensor]:
    return {layer: mem.projector.adapter.edit_weight_view(mem.projector.model, layer).detach().clone() for layer in LAYERS}


def test_consolidation_replays_exactly_and_keeps_every_output(mem):
    mem.inject(_facts(8), audit=False)
    before, before_bytes, before_seq = _weights(mem), _live(mem), mem.head_seq
    entries = mem.ledger.applied_entries()
    report = mem.consolidate()
    assert report.members == 8 and report.columns == [8, 8] and report.rank == [8, 8]
    assert stacked_columns(mem.ledger.applied_entries(), LAYERS[0]) == 8
    assert _live(mem) != before_bytes  # the weights are now the consolidated factors' sum
    assert _replay(_events(mem), mem.store.blobs) == _live(mem)
    assert _replay([(s, e) for s, e in _events(mem) if s <= before_seq], mem.store.blobs) == before_bytes
    changes = output_changes(before, _weights(mem), member_keys(mem, entries))
    assert len(changes) == 8 and max(changes.values()) <= 1e-5
    assert 0 < report.max_output_change <= 1e-5
    assert mem.ledger.last_weights_sha256 == mem.projector.weights_sha256()
    assert verify_store(mem.store) == []
    event = mem.logged[-1].event
    assert isinstance(event, Consolidated) and decode_event(encode_event(event)) == event
    assert {ref.sha256 for ref in blob_refs(event)} == {layer.factors.sha256 for layer in event.layers}
    assert gc(mem.store) == []  # the consolidated factors are referenced


def test_revert_restores_the_members_bit_exactly(mem):
    mem.inject(_facts(5), audit=False)
    before = _live(mem)
    mem.consolidate()
    out = mem.revert_consolidation()
    assert out["consolidation_id"] == "c00001" and out["members"] == 5
    assert _live(mem) == before
    assert isinstance(mem.logged[-1].event, ConsolidationReverted)
    assert _replay(_events(mem), mem.store.blobs) == before
    with pytest.raises(UserError, match="no active consolidation to revert"):
        mem.revert_consolidation()


def test_members_changed_after_consolidation(mem):
    """A member reverted, another updated (a new version), then new facts: the projection is
    the consolidated sum minus the old members, close to the log without the consolidation,
    replays bit for bit, and reverting the consolidation gives that log's weights exactly."""
    mem.inject(_facts(6), audit=False)
    mem.consolidate()
    ids = [e.edit_id for e in mem.ledger.applied_entries()]
    mem.revert(ids[1])
    moved = _facts(1, start=3)[0]
    mem.inject([Fact(moved.subject, moved.relation, "Elsewhere")], audit=False)
    mem.inject(_facts(2, start=10), audit=False)
    assert _replay(_events(mem), mem.store.blobs) == _live(mem)
    # 4 of 6 members present, 2 missing: the consolidation minus their old factors, plus the update and the new facts
    assert stacked_columns(mem.ledger.applied_entries(), LAYERS[0]) == 6 + 2 + 1 + 2
    plain = _events(mem, skip=(Consolidated, ConsolidationReverted))
    _assert_within_1e5_of(mem, plain)
    mem.revert_consolidation("c00001")
    assert _live(mem) == _replay(plain, mem.store.blobs)


def _assert_within_1e5_of(mem, events) -> None:
    """The live weights are within 1e-5 (relative, per layer) of a fresh projection of ``events``."""
    model = make_tiny_llama(vocab=512)
    adapter = LayerAdapter.for_model(model)
    WeightProjector(model, adapter, LAYERS, mem.store.blobs.get).project(Ledger.fold(events).applied_entries())
    for layer, live in _weights(mem).items():
        reference = adapter.edit_weight_view(model, layer).detach()
        assert torch.linalg.norm(live - reference) <= 1e-5 * torch.linalg.norm(reference)


def test_in_place_refreshes_of_members_after_consolidation(mem):
    """Sleep refreshes some members in place (new versions): their old versions are subtracted from
    the consolidated sum, the new ones added; replay is exact and the weights stay within 1e-5 of
    the log without the consolidation."""
    mem.inject(_facts(6), audit=False)
    mem.consolidate()
    mem.sleep(cycles=2)
    refreshed = {i.event.edit_id for i in mem.logged if type(i.event).__name__ == "EditRefreshed"}
    assert refreshed and len(refreshed) <= 3  # the fake degrades some of the six
    assert stacked_columns(mem.ledger.applied_entries(), LAYERS[0]) == 6 + 2 * len(refreshed)
    assert _replay(_events(mem), mem.store.blobs) == _live(mem)
    plain = _events(mem, skip=(Consolidated,))
    _assert_within_1e5_of(mem, plain)


def test_most_members_gone_projects_them_one_by_one(mem):
    mem.inject(_facts(4), audit=False)
    mem.consolidate()
    for edit_id in [e.edit_id for e in mem.ledger.applied_entries()][:3]:
        mem.revert(edit_id)
    assert stacked_columns(mem.ledger.applied_entries(), LAYERS[0]) == 1  # 1 present < 3 missing
    assert _live(mem) == _replay(_events(mem, skip=(Consolidated,)), mem.store.blobs)


def test_a_second_consolidation_and_its_revert(mem):
    mem.inject(_facts(4), audit=False)
    mem.consolidate()
    mem.inject(_facts(3, start=4), audit=False)
    before = _live(mem)
    report = mem.consolidate()
    assert report.consolidation_id == "c00002" and report.members == 7
    assert stacked_columns(mem.ledger.applied_entries(), LAYERS[0]) == 7
    assert _replay(_events(mem), mem.store.blobs) == _live(mem)
    mem.revert_consolidation()
    assert _live(mem) == before  # back to c00001 plus the three newer facts
    from memlog.analytics.views import run_sql

    rows = run_sql(mem.store.path, "SELECT consolidation_id, consolidated_seq IS NOT NULL AS c, consolidation_reverted_seq IS NOT NULL AS r FROM edits ORDER BY created_seq")
    assert rows == [{"consolidation_id": "c00001", "c": True, "r": False}] * 4 + [{"consolidation_id": "c00002", "c": True, "r": True}] * 3


def test_a_failure_mid_consolidation_leaves_the_store_as_before(mem, monkeypatch):
    mem.inject(_facts(4), audit=False)
    head, blobs, weights = mem.store.log.head_seq(), mem.store.blobs.list_blobs(), _live(mem)
    real, calls = consolidate_module.write_consolidated_layer, []

    def failing(*args):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(*args)

    monkeypatch.setattr(consolidate_module, "write_consolidated_layer", failing)
    with pytest.raises(OSError, match="disk full"):
        mem.consolidate()
    assert len(calls) == 2  # the first layer's factors were written, then the failure
    assert mem.store.log.head_seq() == head and mem.store.blobs.list_blobs() == blobs
    assert _live(mem) == weights and not mem.ledger.consolidations
    assert verify_store(mem.store) == []


def test_bad_input_is_refused_and_writes_nothing(mem):
    mem.inject(_facts(1), audit=False)
    head = mem.store.log.head_seq()
    with pytest.raises(UserError, match=r"nothing to consolidate: 1 applied edit\(s\)"):
        mem.consolidate()
    mem.inject(_facts(1, start=1), audit=False)
    with pytest.raises(UserError, match=r"--rtol must be in \[0, 1\), got 1.5"):
        mem.consolidate(rtol=1.5)
    with pytest.raises(UserError, match="no active consolidation 'c00009'"):
        mem.revert_consolidation("c00009")
    assert mem.store.log.head_seq() == head + 1
    mem.consolidate()
    with pytest.raises(UserError, match="already consolidated in c00001"):
        mem.consolidate()


def test_truncated_factors_cap_the_rank_and_drop_only_below_rtol():
    rng = np.random.default_rng(0)
    us = [rng.standard_normal((6, 1)) for _ in range(20)]
    vs = [rng.standard_normal((9, 1)) for _ in range(20)]
    exact = sum(u @ v.T for u, v in zip(us, vs))
    a, b, sigma = truncated_factors(us, vs, rtol=0.0)
    assert a.shape == (6, 6) and b.shape == (9, 6)  # 20 columns, rank at most min(6, 9)
    assert np.allclose(a @ b.T, exact, rtol=0, atol=1e-12 * np.abs(exact).max())
    a, b, _ = truncated_factors(us, vs, rtol=sigma[2] / sigma[0] * 1.0000001)
    assert a.shape[1] == 2
    assert np.linalg.norm(a @ b.T - exact, 2) == pytest.approx(sigma[2], rel=1e-9)


def test_without_consolidations_the_projection_is_the_plain_sum(mem):
    """Logs without consolidation events project as before: base + cat(s·U) cat(V)ᵀ, in entry order."""
    mem.inject(_facts(3), audit=False)
    mem.revert(mem.ledger.applied_entries()[0].edit_id)
    entries = mem.ledger.applied_entries()
    for layer in LAYERS:
        us, vs = [], []
        for entry in entries:
            for delta in entry.current.deltas:
                if delta.layer == layer:
                    u, v = (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for x in read_uv(delta, mem.store.blobs.get))
                    us.append(u * entry.scale)
                    vs.append(v)
        plain = torch.addmm(mem.projector.base_weight(layer), torch.cat(us, dim=1), torch.cat(vs, dim=1).T)
        assert torch.equal(mem.projector.layer_sum(layer, entries), plain)


def test_sleep_consolidates_above_a_width(mem):
    mem.inject(_facts(4), audit=False)
    assert mem.sleep(cycles=1, consolidate_above=8).consolidated is None  # 4 columns per layer
    mem.inject(_facts(2, start=4), audit=False)
    report = mem.sleep(cycles=1, consolidate_above=5)
    assert report.consolidated == "c00001" and report.to_dict()["consolidated"] == "c00001"
    assert isinstance(mem.logged[-1].event, Consolidated)
    assert _replay(_events(mem), mem.store.blobs) == _live(mem)


class ConsolidationMachine(RuleBasedStateMachine):
    """Injects, updates, reverts, sleeps (in-place refreshes), consolidations and their reverts in
    any order: the live weights always equal a fresh replay of the log, bit for bit, and every
    recorded weights hash replays."""

    @initialize()
    def setup(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="memlog-consolidate-"))
        store = Store.create(self.tmp / "store", fake_header())
        fake = KeyedWeights()
        projector = Projector(make_tiny_llama(vocab=512), fake, store.blobs.get)
        self.mem = Memory(store, KeyedEditor(fake, layers=LAYERS, d_out=64, d_in=128), projector, EngineConfig(ppl_bound=None))
        self.n = 0

    def teardown(self):
        if hasattr(self, "mem"):
            self.mem.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    @rule(size=st.integers(1, 3))
    def inject(self, size):
        self.mem.inject(_facts(size, start=self.n), audit=False, batch_size=size)
        self.n += size

    @precondition(lambda self: hasattr(self, "mem") and self.n > 0)
    @rule(data=st.data())
    def update(self, data):
        fact = _facts(1, start=data.draw(st.integers(0, self.n - 1)))[0]
        self.mem.inject([Fact(fact.subject, fact.relation, f"Moved{self.n}")], audit=False)

    @precondition(lambda self: hasattr(self, "mem") and len(self.mem.ledger.applied_entries()) > 0)
    @rule(data=st.data())
    def revert(self, data):
        self.mem.revert(data.draw(st.sampled_from([e.edit_id for e in self.mem.ledger.applied_entries()])))

    @precondition(lambda self: hasattr(self, "mem") and self.n > 0)
    @rule()
    def sleep(self):
        self.mem.sleep(cycles=1)

    @precondition(lambda self: hasattr(self, "mem") and len(self.mem.ledger.applied_entries()) > 1)
    @rule()
    def consolidate(self):
        try:
            assert self.mem.consolidate().max_output_change <= 1e-5
        except UserError as exc:
            assert "already consolidated" in str(exc)

    @precondition(lambda self: hasattr(self, "mem") and len(self.mem.ledger.applied_entries()) > 1)
    @rule()
    def joint_re_solve(self):
        try:
            self.mem.consolidate(joint=True)
        except UserError as exc:
            assert "already consolidated" in str(exc)

    @precondition(lambda self: hasattr(self, "mem") and any(c.active for c in self.mem.ledger.consolidations.values()))
    @rule()
    def revert_consolidation(self):
        self.mem.revert_consolidation()

    @invariant()
    def live_equals_replay(self):
        if hasattr(self, "mem"):
            assert _replay(_events(self.mem), self.mem.store.blobs) == _live(self.mem)

    @invariant()
    def recorded_hashes_replay(self):
        if not hasattr(self, "mem"):
            return
        for item in self.mem.logged[-2:]:
            sha = getattr(item.event, "weights_sha256", "")
            if sha:
                model = make_tiny_llama(vocab=512)
                projector = WeightProjector(model, LayerAdapter.for_model(model), LAYERS, self.mem.store.blobs.get)
                prefix = [(x.seq, x.event) for x in self.mem.logged if x.seq <= item.seq]
                assert projector.project(Ledger.fold(prefix).applied_entries()) == sha


TestConsolidationMachine = ConsolidationMachine.TestCase
TestConsolidationMachine.settings = settings(max_examples=20, stateful_step_count=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_the_adapter_factors_are_the_projection_terms_after_consolidation(mem):
    """``memlog export --format peft`` stacks what the live weights sum: the consolidation's factors
    (and a departed member's negative term), not the members' own, so B A is the live ΔW."""
    from memlog.adapters.lowrank import stacked_factors

    mem.inject(_facts(6), audit=False)
    mem.consolidate()
    mem.revert(mem.ledger.applied_entries()[0].edit_id)
    entries = mem.ledger.applied_entries()
    for layer in LAYERS:
        factors = stacked_factors(entries, layer, mem.store.blobs.get)
        assert factors.b.shape[1] == stacked_columns(entries, layer)  # consolidated rank + the departed member
        live = mem.projector.adapter.edit_weight_view(mem.projector.model, layer).detach() - mem.projector.base_weight(layer)
        assert torch.allclose(factors.delta(), live, rtol=0, atol=1e-6 * float(live.abs().max()))
