"""Invariants 3 and 4 with real tensors: replay is exact, and revert is exact.

A Hypothesis state machine drives inject (one fact or a batch) / revert / sleep on a tiny random Llama with the
real ``WeightProjector`` (the fake editor only makes random low-rank factors of the right
shape). After every step:

- the live edit-layer weights are bit-identical to a fresh replay of the whole log onto a
  second copy of the base model;
- every recorded ``weights_sha256`` equals the hash of a replay up to that event's seq.

After a revert, the live weights are bit-identical to a log in which the reverted edit
never happened.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import hypothesis.strategies as st
import torch
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from memlog.core.adapter import LayerAdapter
from memlog.core.facts import Fact
from memlog.engine.config import EngineConfig
from memlog.engine.memory import Memory
from memlog.projections.ledger import Ledger
from memlog.projections.weights import WeightProjector
from memlog.store.events import blob_refs, edit_key
from memlog.store.store import Store
from tests.conftest import make_tiny_llama
from tests.fakes import KeyedEditor, KeyedWeights, fake_header

LAYERS = [1, 2]


class TrackingProjector:
    """The real projector, plus the fake's record of what is applied (for the fake audit)."""

    def __init__(self, real: WeightProjector, fake: KeyedWeights):
        self.real, self.fake = real, fake

    def project(self, entries, layers=None):
        self.fake.project(entries)
        return self.real.project(entries, layers)


def _replayed(events, blobs) -> tuple[torch.nn.Module, str]:
    model = make_tiny_llama(vocab=512)
    adapter = LayerAdapter.for_model(model)
    projector = WeightProjector(model, adapter, LAYERS, blobs.get)
    ledger = Ledger.fold(events)
    return model, projector.project(ledger.applied_entries())


def _edit_layers_bytes(model) -> list[bytes]:
    adapter = LayerAdapter.for_model(model)
    return [adapter.edit_weight_view(model, layer).detach().numpy().tobytes() for layer in LAYERS]


class ProjectionMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="memlog-proj-"))
        store = Store.create(self.tmp / "store", fake_header())
        self.model = make_tiny_llama(vocab=512)
        adapter = LayerAdapter.for_model(self.model)
        fake = KeyedWeights()
        real = WeightProjector(self.model, adapter, LAYERS, store.blobs.get)
        spiky = {Fact(f"Subject{n} Person", "lives in", "x").fact_id for n in range(0, 30, 3)}
        editor = KeyedEditor(fake, layers=LAYERS, d_out=64, d_in=128, spiky=spiky)
        # Refreshes of every third subject raise the fake PPL past the bound: rollbacks are projected too.
        self.mem = Memory(store, editor, TrackingProjector(real, fake), EngineConfig(cap=5, ppl_bound=0.05))
        self.n = 0

    def teardown(self):
        if hasattr(self, "mem"):
            self.mem.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    @rule()
    def inject(self):
        self.mem.inject([Fact(f"Subject{self.n} Person", "lives in", f"City{self.n % 3}")], audit=self.n % 2 == 0)
        self.n += 1

    @rule(size=st.integers(2, 4))
    def inject_batch(self, size):
        """A batch: one solve, one entry per fact holding its column (reverted one by one by ``revert``)."""
        facts = [Fact(f"Subject{self.n + i} Person", "lives in", f"City{(self.n + i) % 3}") for i in range(size)]
        self.mem.inject(facts, audit=self.n % 2 == 0, batch_size=size)
        self.n += size

    @precondition(lambda self: hasattr(self, "mem") and any(e.applied for e in self.mem.ledger.entries.values()))
    @rule(data=st.data())
    def revert(self, data):
        applied = sorted(e.edit_id for e in self.mem.ledger.entries.values() if e.applied)
        edit_id = data.draw(st.sampled_from(applied))
        self.mem.revert(edit_id)
        # A log in which this edit never happened.
        without = [(i.seq, i.event) for i in self.mem.logged if getattr(i.event, "edit_id", None) != edit_id]
        model, _ = _replayed(without, self.mem.store.blobs)
        assert _edit_layers_bytes(model) == _edit_layers_bytes(self.model)

    @rule()
    def sleep(self):
        self.mem.sleep(cycles=1)

    @invariant()
    def live_equals_replay(self):
        if not hasattr(self, "mem"):
            return
        events = [(i.seq, i.event) for i in self.mem.logged]
        model, sha = _replayed(events, self.mem.store.blobs)
        assert _edit_layers_bytes(model) == _edit_layers_bytes(self.model)
        assert sha == self.mem.ledger.last_weights_sha256 or not self.mem.ledger.last_weights_sha256

    @invariant()
    def log_is_whole_and_folds_to_the_live_ledger(self):
        """Invariants 1, 6 and the fold: the committed log is what the engine saw, every blob it
        names exists, versions are monotone per edit, and folding it gives the live ledger."""
        if not hasattr(self, "mem"):
            return
        committed = self.mem.store.log.read()
        assert [(i.seq, i.event) for i in committed] == [(i.seq, i.event) for i in self.mem.logged]
        versions: dict[str, int] = {}
        for item in committed:
            assert all(self.mem.store.blobs.exists(ref) for ref in blob_refs(item.event))
            key = edit_key(item.event)
            if key is not None:
                assert key[1] > versions.get(key[0], 0)
                versions[key[0]] = key[1]
        folded = Ledger.fold([(i.seq, i.event) for i in committed])
        live = self.mem.ledger
        assert [(e.edit_id, e.version, e.applied) for e in folded.applied_entries()] == [(e.edit_id, e.version, e.applied) for e in live.applied_entries()]
        assert {k: (f.active, f.edit_id) for k, f in folded.facts.items()} == {k: (f.active, f.edit_id) for k, f in live.facts.items()}

    @invariant()
    def recorded_hashes_replay(self):
        if not hasattr(self, "mem"):
            return
        for i, item in enumerate(self.mem.logged[-3:]):
            sha = getattr(item.event, "weights_sha256", "")
            if sha:
                prefix = [(x.seq, x.event) for x in self.mem.logged if x.seq <= item.seq]
                assert _replayed(prefix, self.mem.store.blobs)[1] == sha


TestProjection = ProjectionMachine.TestCase
TestProjection.settings = settings(max_examples=100, stateful_step_count=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
