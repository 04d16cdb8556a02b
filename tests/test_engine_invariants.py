"""Invariant 2 (in-place refresh) as a Hypothesis state machine, with the fake editor.

Random sequences of inject, update, duplicate, audit, sleep and cap changes run against
a real store, and after every step the ledger is checked against a plain reference model:

- each fact has at most one ledger entry, and entries == active facts (in-place), at
  every seq of the log, not only at the end;
- after a sleep, active facts ≤ cap; pruning happened only when over the cap and removed
  exactly the excess, never to make room for a refresh;
- a refresh keeps the fact's edit_id and bumps its version by one; with the ``correct``
  strategy it never reverts, and the new version's factors are the previous ones with the
  correction's columns appended;
- the reference model's facts (subject/relation → object) equal the ledger's.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from memlog.core.facts import Fact
from memlog.core.pool import fact_pool
from memlog.engine.config import REFRESH_STRATEGIES, EngineConfig
from memlog.errors import UserError
from memlog.projections.ledger import Ledger
from memlog.store.deltas import read_factors
from memlog.store.events import EditPruned, EditRefreshed, EditReverted, FactInjected, SleepEnded, SleepStarted
from tests.fakes import fake_memory

SUBJECTS = [f"Person{i} Example" for i in range(12)]
CITIES = ["Porto", "Lyon", "Kyoto", "Oslo", "Lima", "Cairo"]


class InPlaceLedgerMachine(RuleBasedStateMachine):
    @initialize(cap=st.integers(min_value=2, max_value=6), strategy=st.sampled_from(REFRESH_STRATEGIES))
    def setup(self, cap, strategy):
        self.tmp = Path(tempfile.mkdtemp(prefix="memlog-inv-"))
        self.mem = fake_memory(self.tmp / "store", EngineConfig(cap=cap, ppl_bound=None, refresh_strategy=strategy))
        self.cap = cap
        self.strategy = strategy
        self.reference: dict[str, str] = {}  # fact_id -> object, for active facts

    def teardown(self):
        if hasattr(self, "mem"):
            self.mem.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    @rule(i=st.integers(0, len(SUBJECTS) - 1), c=st.integers(0, len(CITIES) - 1))
    def inject(self, i, c):
        fact = Fact(SUBJECTS[i], "lives in", CITIES[c])
        before = self.reference.get(fact.fact_id)
        report = self.mem.inject([fact])
        status = report.facts[0].status
        if before is None:
            assert status == "injected"
        elif before == fact.object:
            assert status == "duplicate"
        else:
            assert status == "updated"
        self.reference[fact.fact_id] = fact.object

    @rule()
    def audit(self):
        event = self.mem.audit()
        assert len(event.results) == len(self.reference)

    @rule(cap=st.integers(min_value=1, max_value=6))
    def change_cap(self, cap):
        self.cap = cap

    @rule(cycles=st.integers(1, 2))
    def sleep(self, cycles):
        before_active = len(self.mem.ledger.active_facts())
        first_seq = self.mem.head_seq + 1
        report = self.mem.sleep(cycles=cycles, cap=self.cap)
        assert len(report.cycles) == cycles
        expected_pruned = max(0, before_active - self.cap)
        assert sum(c.pruned for c in report.cycles) == expected_pruned
        assert len(self.mem.ledger.active_facts()) == min(before_active, self.cap)
        # Drop pruned facts from the reference model.
        active_ids = {s.fact.fact_id for s in self.mem.ledger.active_facts()}
        self.reference = {k: v for k, v in self.reference.items() if k in active_ids}
        self._check_cycle_events(first_seq)

    def _check_cycle_events(self, first_seq: int):
        events = [item for item in self.mem.logged if item.seq >= first_seq]
        prefix = Ledger.fold([(item.seq, item.event) for item in self.mem.logged if item.seq < first_seq])
        for item in events:
            e = item.event
            if isinstance(e, EditRefreshed):
                assert e.mode == "in-place" and e.strategy == self.strategy
                previous = prefix.entries[e.edit_id]
                assert e.version == previous.version + 1
                assert previous.fact_id == e.fact.fact_id
                if self.strategy == "correct":  # the previous factors, then the correction's columns
                    for old, new in zip(previous.current.deltas, e.deltas, strict=True):
                        before = read_factors(old, self.mem.store.blobs.get)
                        after = read_factors(new, self.mem.store.blobs.get)
                        for a, b in zip(before, after):
                            assert b.shape[1] > a.shape[1] and np.array_equal(b[:, : a.shape[1]], a)
            if isinstance(e, EditReverted) and e.reason == "degraded":
                assert self.strategy == "reinject", "the correct strategy never reverts"
            if isinstance(e, EditPruned):
                cap = self._cap_of_cycle(e.cycle)
                assert len(prefix.active_facts()) > cap, "pruned while not over the cap"
            prefix.apply(item.seq, e)

    def _cap_of_cycle(self, cycle):
        for item in self.mem.logged:
            if isinstance(item.event, SleepStarted) and item.event.cycle == cycle:
                return item.event.cap
        raise AssertionError(f"no SleepStarted for cycle {cycle}")

    @invariant()
    def ledger_matches_reference(self):
        if not hasattr(self, "mem"):
            return
        ledger = self.mem.ledger
        active = {s.fact.fact_id: s.fact.object for s in ledger.active_facts()}
        assert active == self.reference
        assert ledger.ledger_size() == len(active)
        per_fact = [e.fact_id for e in ledger.entries.values()]
        assert len(per_fact) == len(set(per_fact))

    @invariant()
    def every_seq_has_one_entry_per_fact(self):
        if not hasattr(self, "mem"):
            return
        ledger = Ledger()
        for item in self.mem.logged:
            ledger.apply(item.seq, item.event)
            facts = [e.fact_id for e in ledger.entries.values()]
            assert len(facts) == len(set(facts)), f"two entries for one fact at seq {item.seq}"
            assert len(ledger.entries) == len(ledger.active_facts())
            if isinstance(item.event, SleepEnded):
                assert len(ledger.active_facts()) <= self._cap_of_cycle(item.event.cycle)


TestInPlaceLedger = InPlaceLedgerMachine.TestCase
TestInPlaceLedger.settings = settings(
    max_examples=40, stateful_step_count=10, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _drive(mode: str, tmp_path: Path) -> tuple[int, int, list[int]]:
    """Inject 8 facts, sleep 4 cycles with cap 12; return the max ledger size, facts, ledger sizes."""
    mem = fake_memory(tmp_path / mode, EngineConfig(cap=12, refresh_mode=mode, ppl_bound=None), interference=2)
    try:
        mem.inject([Fact(SUBJECTS[i], "lives in", CITIES[i % len(CITIES)]) for i in range(8)])
        sizes = []
        for _ in range(4):
            mem.sleep(cycles=1)
            sizes.append(mem.ledger.ledger_size())
        n_facts = len({s.fact.fact_id for s in mem.ledger.facts.values()})
        max_size = 0
        ledger = Ledger()
        for item in mem.logged:
            ledger.apply(item.seq, item.event)
            max_size = max(max_size, ledger.ledger_size())
        return max_size, n_facts, sizes
    finally:
        mem.close()


def test_copy_mode_ledger_exceeds_facts_in_place_never_does(tmp_path):
    copy_max, copy_facts, copy_sizes = _drive("copy", tmp_path)
    inplace_max, inplace_facts, _ = _drive("in-place", tmp_path)
    assert copy_max > copy_facts, f"copy mode ledger {copy_sizes} never exceeded {copy_facts} facts"
    assert inplace_max <= inplace_facts


def test_refresh_keeps_edit_id_and_bumps_version(tmp_path):
    mem = fake_memory(tmp_path / "s", EngineConfig(cap=50, ppl_bound=None), interference=2)
    try:
        mem.inject([Fact(SUBJECTS[i], "lives in", CITIES[i % len(CITIES)]) for i in range(6)])
        ids_before = {s.fact.fact_id: s.edit_id for s in mem.ledger.active_facts()}
        report = mem.sleep(cycles=2)
        assert sum(c.refreshed for c in report.cycles) > 0, "the fake should have degraded something"
        ids_after = {s.fact.fact_id: s.edit_id for s in mem.ledger.active_facts()}
        assert ids_before == ids_after
        refreshed = [i.event for i in mem.logged if isinstance(i.event, EditRefreshed)]
        assert all(e.version >= 2 for e in refreshed)
        injected = {i.event.edit_id for i in mem.logged if isinstance(i.event, FactInjected)}
        assert {e.edit_id for e in refreshed} <= injected
        # Constraint set = healthy facts of the cycle's audit, plus each fact refreshed earlier in the cycle.
        from memlog.store.events import RecallAudited

        healthy, done = 0, 0
        for item in mem.logged:
            e = item.event
            if isinstance(e, RecallAudited) and e.phase == "sleep-pre":
                healthy, done = len(e.results) - e.degraded, 0
            elif isinstance(e, EditRefreshed):
                assert e.n_constraint_keys == healthy + done
                done += 1
    finally:
        mem.close()


def test_auto_sleep_is_triggered_and_recorded(tmp_path):
    from memlog.store.events import SleepTriggered

    mem = fake_memory(tmp_path / "auto", EngineConfig(cap=50, ppl_bound=None, auto_sleep=0.1), interference=2)
    try:
        report = mem.inject([Fact(SUBJECTS[i], "lives in", CITIES[i % len(CITIES)]) for i in range(6)])
        triggers = [i for i in mem.logged if isinstance(i.event, SleepTriggered)]
        assert triggers, "pressure never crossed 0.1 with the fake's interference"
        assert len(report.sleeps) == len(triggers)
        for t in triggers:
            assert t.event.pressure > t.event.threshold == 0.1
            nxt = next(i for i in mem.logged if i.seq > t.seq)
            assert isinstance(nxt.event, SleepStarted)
    finally:
        mem.close()


def test_status_pressure_matches_latest_audit(tmp_path):
    mem = fake_memory(tmp_path / "p", EngineConfig(ppl_bound=None), interference=2)
    try:
        mem.inject([Fact(SUBJECTS[i], "lives in", CITIES[i % len(CITIES)]) for i in range(5)])
        status = mem.status()
        audit = mem.ledger.last_audit
        assert status["pressure"] == audit.degraded / len(audit.results)
        assert status["degraded"] == sum(not r.recalled for r in audit.results)
        assert status["active_facts"] == 5 and status["seq"] == mem.head_seq
    finally:
        mem.close()


def test_correct_strategy_needs_in_place():
    with pytest.raises(UserError, match="needs --refresh-mode in-place"):
        EngineConfig(refresh_mode="copy", refresh_strategy="correct")
    with pytest.raises(UserError, match="unknown refresh strategy"):
        EngineConfig(refresh_strategy="rewrite")


def test_cycles_view_records_the_strategy(tmp_path):
    from memlog.analytics.views import run_sql

    for strategy in REFRESH_STRATEGIES:
        mem = fake_memory(tmp_path / strategy, EngineConfig(ppl_bound=None, refresh_strategy=strategy), interference=2)
        try:
            mem.inject(fact_pool(6, seed=4))
            mem.sleep(cycles=2)
        finally:
            mem.close()
        rows = run_sql(tmp_path / strategy, "SELECT DISTINCT refresh_strategy FROM cycles")
        assert rows == [{"refresh_strategy": strategy}]


def test_correct_strategy_stacks_the_correction_on_the_previous_version(tmp_path):
    """Deterministic companion of the state machine: refreshes happen, none reverts, factors stack."""
    mem = fake_memory(tmp_path / "c", EngineConfig(ppl_bound=None, refresh_strategy="correct"))
    try:
        mem.inject(fact_pool(10, seed=1))
        report = mem.sleep(cycles=3)
        assert sum(c.refreshed for c in report.cycles) >= 3 and sum(c.reverted for c in report.cycles) == 0
        ledger = Ledger()
        for item in mem.logged:
            e = item.event
            assert not isinstance(e, EditReverted)
            if isinstance(e, EditRefreshed):
                assert e.strategy == "correct"
                previous = ledger.entries[e.edit_id].current
                for old, new in zip(previous.deltas, e.deltas, strict=True):
                    for a, b in zip(read_factors(old, mem.store.blobs.get), read_factors(new, mem.store.blobs.get)):
                        assert b.shape[1] == a.shape[1] + 1 and np.array_equal(b[:, : a.shape[1]], a)
            ledger.apply(item.seq, e)
    finally:
        mem.close()
