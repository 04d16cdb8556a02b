"""The engine as a Hypothesis state machine over every path of sleep, with the keyed fake editor.

Each example picks a refresh mode (in-place or copy) and, in place, a strategy (reinject or
correct), then runs random sequences of: inject (new facts, updates, duplicates), manual
revert, sleep (with a random cap), and fault switches on the fake (facts whose refreshes
raise perplexity past the bound and are rolled back; facts whose refreshes cannot be solved).
The key space is small (``D_IN`` dimensions), so healthy keys also come to span it and the
engine has to retry under a subset.

After every step the DESIGN.md invariants are checked on the committed log:

1. append-only: the log read back starts with every event seen before, unchanged;
2. in place, every seq has at most one entry per fact and entries == active + released facts
   (a release leaves the weights as they were, and sleep never touches a released edit); after a
   sleep active facts <= cap; pruning only when over the cap (in place: exactly the excess;
   copy: the 3 oldest entries), never to make room for a refresh; in copy mode a refresh
   starts only while the ledger is not over the cap;
3. replay: every recorded weights hash equals the fake projection of the log folded to it;
4. revert: after a manual revert, the weights equal those of a log without that edit;
5. null space: every constrained refresh was solved under keys that left room (rank < d_in);
6. nothing dangling: every blob an event names exists;
7. one base model: the header is the one the store was created with;

and also: versions are monotone per edit (a rolled-back version number is never reused),
a manually reverted edit is never refreshed or re-applied by sleep, a failed refresh
changes nothing, and ``Ledger.fold`` equals the engine's step-by-step ledger.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import hypothesis.strategies as st
import torch
from hypothesis import HealthCheck, event, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from memlog.core.facts import Fact
from memlog.engine.config import EngineConfig
from memlog.projections.ledger import Ledger
from memlog.store.events import (
    EditPruned,
    EditRefreshed,
    EditReverted,
    FactInjected,
    RefreshFailed,
    SleepEnded,
    SleepStarted,
    blob_refs,
)
from tests.fakes import KeyedWeights, keyed_memory

SUBJECTS = [f"Person{i} Example" for i in range(9)]
CITIES = ["Porto", "Lyon", "Kyoto", "Oslo"]
D_IN = 5


def _fact_id(i: int) -> str:
    return Fact(SUBJECTS[i], "lives in", CITIES[0]).fact_id


def _ledger_state(ledger: Ledger) -> tuple:
    entries = sorted((e.edit_id, e.version, e.last_version, e.applied, e.held, e.released, e.fact_id, e.created_seq) for e in ledger.entries.values())
    facts = sorted((f.fact.fact_id, f.fact.object, f.edit_id, f.active, f.released_seq, f.refreshes, f.failed_refreshes) for f in ledger.facts.values())
    return entries, facts, ledger.cycle, ledger.head_seq, ledger.n_created, ledger.last_weights_sha256


class EngineMachine(RuleBasedStateMachine):
    @initialize(
        mode=st.sampled_from(["in-place", "copy"]),
        correct=st.booleans(),
        cap=st.integers(2, 6),
        n=st.integers(2, 6),
        spiky=st.sets(st.integers(0, len(SUBJECTS) - 1), max_size=3),
        unsolvable=st.sets(st.integers(0, len(SUBJECTS) - 1), max_size=3),
    )
    def setup(self, mode, correct, cap, n, spiky, unsolvable):
        self.tmp = Path(tempfile.mkdtemp(prefix="memlog-engine-"))
        strategy = "correct" if correct and mode == "in-place" else "reinject"
        self.config = EngineConfig(cap=cap, refresh_mode=mode, refresh_strategy=strategy, ppl_bound=0.05, wake="unconstrained")
        self.mem = keyed_memory(self.tmp / "store", self.config, interference=2, d_in=D_IN)
        self.header = self.mem.header
        self.seen = []  # (seq, encoded event) of every committed event so far
        self.held_edits: set[str] = set()
        self.mem.editor.spiky = {_fact_id(i) for i in spiky}
        self.mem.editor.unsolvable = {_fact_id(i) for i in unsolvable}
        self.mem.inject([Fact(SUBJECTS[i], "lives in", CITIES[i % len(CITIES)]) for i in range(n)])

    def teardown(self):
        if hasattr(self, "mem"):
            for kind in sorted({type(e).__name__ for _, e in self.seen}):  # shown by --hypothesis-show-statistics
                event(f"{self.config.refresh_mode}/{self.config.refresh_strategy}: {kind}")
            if self.mem.editor.failures:
                event("a constrained solve found no room")
            self.mem.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- rules -----------------------------------------------------------------------------

    @rule(i=st.integers(0, len(SUBJECTS) - 1), c=st.integers(0, len(CITIES) - 1))
    def inject(self, i, c):
        fact = Fact(SUBJECTS[i], "lives in", CITIES[c])
        state = self.mem.ledger.facts.get(fact.fact_id)
        active, known = (state.active, state.fact.object) if state is not None else (False, None)
        released = self.mem.ledger.released_entry(fact.fact_id)
        outcome = self.mem.inject([fact]).facts[0]
        if active and known == fact.object:
            assert outcome.status == "duplicate"
        elif active:
            assert outcome.status == "updated"
            self.held_edits.discard(outcome.edit_id)  # the user said otherwise
        else:
            assert outcome.status == "injected"
        if released is not None:  # a released fact's inject supersedes its edit: no second edit for one fact
            assert outcome.edit_id == released.edit_id and self.mem.ledger.facts[fact.fact_id].active
            self.held_edits.discard(outcome.edit_id)

    @rule(data=st.data())
    def revert(self, data):
        applied = sorted(e.edit_id for e in self.mem.ledger.entries.values() if e.applied)
        if not applied:
            return
        edit_id = data.draw(st.sampled_from(applied))
        self.mem.revert(edit_id)
        self.held_edits.add(edit_id)
        entry = self.mem.ledger.entries[edit_id]
        # invariant 4: the same weights as a log in which this edit never happened
        without = Ledger.fold([(i.seq, i.event) for i in self.mem.logged if getattr(i.event, "edit_id", None) != edit_id])
        assert KeyedWeights().project(without.applied_entries()) == KeyedWeights().project(self.mem.ledger.applied_entries())
        assert entry.held and not entry.applied

    @rule(data=st.data())
    def release(self, data):
        """What the null-space budget does to the facts its policy picks, here by hand: the fact
        leaves sleep's care, the weights do not move, and a later sleep never touches its edit."""
        active = sorted(s.edit_id for s in self.mem.ledger.active_facts())
        if self.config.refresh_mode != "in-place" or not active:
            return
        edit_id = data.draw(st.sampled_from(active))
        before = KeyedWeights().project(self.mem.ledger.applied_entries())
        fact_id = self.mem.ledger.entries[edit_id].fact_id
        self.mem.release(edit_id)
        assert KeyedWeights().project(self.mem.ledger.applied_entries()) == before
        assert not self.mem.ledger.facts[fact_id].active and self.mem.ledger.released_entry(fact_id).edit_id == edit_id

    @rule(spiky=st.sets(st.integers(0, len(SUBJECTS) - 1), max_size=3), unsolvable=st.sets(st.integers(0, len(SUBJECTS) - 1), max_size=3))
    def faults(self, spiky, unsolvable):
        self.mem.editor.spiky = {_fact_id(i) for i in spiky}
        self.mem.editor.unsolvable = {_fact_id(i) for i in unsolvable}

    @rule(cap=st.integers(1, 6), cycles=st.integers(1, 2))
    def sleep(self, cap, cycles):
        first = self.mem.head_seq + 1
        before = {e.edit_id: (e.version, e.applied) for e in self.mem.ledger.entries.values()}
        released = {e.edit_id for e in self.mem.ledger.entries.values() if e.released}
        report = self.mem.sleep(cycles=cycles, cap=cap)
        assert len(report.cycles) == cycles
        new = [i for i in self.mem.logged if i.seq >= first]
        for item in new:
            e = item.event
            if isinstance(e, (EditRefreshed, EditReverted)) and e.edit_id in self.held_edits:
                raise AssertionError(f"sleep touched held edit {e.edit_id}")
            if isinstance(e, (EditRefreshed, EditReverted, EditPruned)) and e.edit_id in released:
                raise AssertionError(f"sleep touched released edit {e.edit_id}")
            if isinstance(e, EditRefreshed) and e.copy_of in self.held_edits:
                raise AssertionError(f"sleep copied held edit {e.copy_of}")
        for edit_id in self.held_edits & set(self.mem.ledger.entries):
            assert self.mem.ledger.entries[edit_id].version == before[edit_id][0] and not self.mem.ledger.entries[edit_id].applied
        self.held_edits &= set(self.mem.ledger.entries)

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def log_is_append_only_and_replays(self):
        if not hasattr(self, "mem"):
            return
        committed = self.mem.store.log.read()
        encoded = [(i.seq, i.event) for i in committed]
        assert encoded[: len(self.seen)] == self.seen, "an event was changed or removed"
        self.seen = encoded
        assert self.mem.store.log.header() == self.header  # 7
        # Ledger.fold equals the engine's step-by-step ledger
        assert _ledger_state(Ledger.fold(encoded)) == _ledger_state(self.mem.ledger)

    @invariant()
    def every_seq_keeps_the_rules(self):
        if not hasattr(self, "mem"):
            return
        ledger, cap, versions = Ledger(), None, {}
        pruning = False
        for seq, e in self.seen:
            before_size, before_active = ledger.ledger_size(), len(ledger.active_facts())
            if isinstance(e, SleepStarted):
                cap, pruning = e.cap, False
            if isinstance(e, EditReverted) and e.reason == "degraded" and e.cycle is not None:
                assert not pruning
                if e.cycle is not None and self.config.refresh_mode == "copy":
                    assert before_size <= cap, "copy mode refreshed while over the cap"
            if isinstance(e, EditPruned):
                if not pruning:
                    pruning = True
                    prune_size = before_size
                    if self.config.refresh_mode == "copy":
                        assert before_size > cap
                        expected = [x.edit_id for x in sorted(ledger.entries.values(), key=lambda x: x.created_seq)[: self.config.copy_prune_count]]
                    else:
                        assert before_active > cap
                        expected_n = before_active - cap
                        expected = None
                    victims = []
                victims.append(e.edit_id)
                if expected is not None:
                    assert victims == expected[: len(victims)]
                else:
                    assert len(victims) <= expected_n
            if isinstance(e, (FactInjected, EditRefreshed)):
                assert e.version > versions.get(e.edit_id, 0), f"{e.edit_id} v{e.version} not after v{versions.get(e.edit_id)}"
                versions[e.edit_id] = e.version
                assert all(self.mem.store.blobs.exists(ref) for ref in blob_refs(e))  # 6
            if isinstance(e, RefreshFailed):
                entry = ledger.entries[e.edit_id]
                state_before = (entry.version, entry.applied)
            ledger.apply(seq, e)
            if isinstance(e, RefreshFailed):
                assert (ledger.entries[e.edit_id].version, ledger.entries[e.edit_id].applied) == state_before
            if getattr(e, "weights_sha256", ""):  # 3
                assert KeyedWeights().project(ledger.applied_entries()) == e.weights_sha256
            if self.config.refresh_mode == "in-place":  # 2 (a released fact keeps its one entry)
                owners = [x.fact_id for x in ledger.entries.values()]
                released = [f for f in ledger.facts.values() if ledger.released_entry(f.fact.fact_id) is not None]
                assert len(owners) == len(set(owners)) and len(owners) == len(ledger.active_facts()) + len(released)
            if isinstance(e, SleepEnded):
                if pruning and self.config.refresh_mode == "in-place":
                    assert len(victims) == expected_n
                if self.config.refresh_mode == "in-place":
                    assert len(ledger.active_facts()) <= cap
                elif pruning:
                    assert len(victims) == min(self.config.copy_prune_count, prune_size)

    @invariant()
    def constrained_refreshes_left_room(self):
        """5 (as the fake can check it): every constrained solve the fake accepted had rank < d_in."""
        if not hasattr(self, "mem"):
            return
        for _, e in self.seen:
            if isinstance(e, EditRefreshed):  # D_IN or more random unit keys span the space
                assert e.n_constraint_keys < D_IN


TestEngineMachine = EngineMachine.TestCase
TestEngineMachine.settings = settings(
    max_examples=200, stateful_step_count=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)


def test_keyed_keys_span_the_space():
    """The machine's key space is small enough that healthy keys span it (so the retry path runs)."""
    from tests.fakes import KeyedEditor

    editor = KeyedEditor(KeyedWeights(), d_in=D_IN)
    keys = editor.keys([Fact(s, "lives in", "Oslo") for s in SUBJECTS])[0]
    assert int(torch.linalg.matrix_rank(keys.double())) == D_IN
