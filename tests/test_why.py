"""``why_report``: the replayed steps agree with the recorded audits and with an independent oracle."""

from __future__ import annotations

import pytest

from memlog.core.facts import Fact
from memlog.core.pool import fact_pool
from memlog.engine.config import EngineConfig
from memlog.projections.facts import fact_of
from memlog.errors import UserError
from memlog.replay.why import WEIGHT_EVENTS, default_window, find_fact, why_report
from memlog.store.events import RecallAudited
from tests.fakes import FakeEditor, FakeWeights, fake_memory


@pytest.fixture()
def mem(tmp_path):
    """A wake of 10 facts (audited after each), two sleep cycles, and 2 more facts."""
    pool = fact_pool(12, seed=3)
    memory = fake_memory(tmp_path / "store", EngineConfig(wake="unconstrained", ppl_bound=None))
    for fact in pool[:10]:
        memory.inject([fact], audit=True)
    memory.sleep(cycles=2)
    for fact in pool[10:]:
        memory.inject([fact], audit=True)
    yield memory
    memory.close()


def _recorded(mem, fact_id: str) -> list[tuple[int, bool]]:
    """(seq, recalled) of every audit that names the fact, read from the raw events."""
    return [
        (item.seq, r.recalled)
        for item in mem.logged
        if isinstance(item.event, RecallAudited)
        for r in item.event.results
        if r.fact_id == fact_id
    ]


def _oracle(mem, fact_id: str, seq: int, without: str | None = None) -> bool:
    """The fake model's recall of the fact with the weights of ``seq`` (minus one edit), computed afresh."""
    entries = [e for e in mem.ledger_at(seq).applied_entries() if e.edit_id != without]
    weights = FakeWeights()
    weights.project(entries)
    fact = fact_of(mem.ledger_at(mem.head_seq).facts[fact_id].fact)
    return FakeEditor(weights)._recalled(fact)


def _flipping_facts(mem) -> list[str]:
    out = []
    for fact_id in mem.ledger.facts:
        values = [r for _, r in _recorded(mem, fact_id)]
        if any(a != b for a, b in zip(values, values[1:])):
            out.append(fact_id)
    return out


def test_default_window_is_the_last_flip_and_steps_match_the_oracle(mem):
    flipping = _flipping_facts(mem)
    assert flipping, "the fixture should degrade and repair some facts"
    for fact_id in flipping:
        audits = _recorded(mem, fact_id)
        last_flip = max(i for i in range(1, len(audits)) if audits[i][1] != audits[i - 1][1])
        report = why_report(mem, fact_id)
        window = report["window"]
        assert (window["from_seq"], window["to_seq"]) == (audits[last_flip - 1][0], audits[last_flip][0])
        # replay is exact: the ends reproduce the recorded audits
        assert window["recalled_from"] == audits[last_flip - 1][1]
        assert window["recalled_to"] == audits[last_flip][1]
        expected_seqs = [window["from_seq"]] + [
            i.seq for i in mem.logged if window["from_seq"] < i.seq <= window["to_seq"] and isinstance(i.event, WEIGHT_EVENTS)
        ]
        assert [s["seq"] for s in report["steps"]] == expected_seqs
        for step in report["steps"]:
            assert step["recalled"] == _oracle(mem, fact_id, step["seq"])
        flips = [b["seq"] for a, b in zip(report["steps"], report["steps"][1:]) if a["recalled"] != b["recalled"]]
        assert report["changed_at"] == flips and flips


def test_live_weights_are_restored(mem):
    fact_id = _flipping_facts(mem)[0]
    head = dict(mem.projector.applied)
    why_report(mem, fact_id, leave_one_out=True)
    assert mem.projector.applied == head


def test_change_picks_degradations_or_recoveries(mem):
    for fact_id in _flipping_facts(mem):
        state = mem.ledger.facts[fact_id]
        marks = {m.seq: m.recalled for m in state.audits}
        degraded = default_window(state, "degraded")
        recovered = default_window(state, "recovered")
        if degraded and degraded[0] >= state.injected_seq:
            assert marks[degraded[0]] and not marks[degraded[1]]
        if recovered:
            assert not marks[recovered[0]] and marks[recovered[1]]
    with pytest.raises(UserError, match="unknown change"):
        default_window(mem.ledger.facts[fact_id], "sideways")


def test_suspects_match_the_oracle(mem):
    fact_id = _flipping_facts(mem)[0]
    report = why_report(mem, fact_id, leave_one_out=True)
    end = report["window"]["to_seq"]
    recalled_end = report["window"]["recalled_to"]
    others = [e.edit_id for e in mem.ledger_at(end).applied_entries() if e.fact_id != fact_id]
    expected = {e for e in others if _oracle(mem, fact_id, end, without=e) != recalled_end}
    assert {s["edit_id"] for s in report["suspects"]} == expected


def test_explicit_window_and_history(mem):
    fact_id = next(iter(mem.ledger.facts))
    report = why_report(mem, fact_id, "cycle=0", "cycle=1")
    assert report["window"]["from_seq"] < report["window"]["to_seq"]
    history = report["history"]
    assert history[0]["kind"] == "FactInjected" and [h["seq"] for h in history] == sorted(h["seq"] for h in history)
    assert [(h["seq"], h["recalled"]) for h in history if h["kind"] == "audit"] == _recorded(mem, fact_id)


def test_a_release_is_in_the_facts_history_and_its_steps_move_nothing(mem):
    """``FactReleased`` is the fact's history (it is why the fact is no longer audited) but not a
    weight event: no step of ``why`` replays it."""
    state = mem.ledger.active_facts()[0]
    seq = mem.release(state.edit_id)
    report = why_report(mem, state.fact.fact_id, "cycle=0", f"seq={seq}")
    assert [(h["seq"], h["kind"]) for h in report["history"] if h["seq"] == seq] == [(seq, "FactReleased")]
    assert seq not in [step["seq"] for step in report["steps"]]


def test_a_fact_that_never_changed_has_nothing_to_explain(tmp_path):
    memory = fake_memory(tmp_path / "s", EngineConfig(wake="unconstrained", ppl_bound=None), interference=10**9)
    try:
        fact = Fact("Aria Nakamura", "lives in", "Thessaloniki")
        memory.inject([fact], audit=True)
        memory.audit()
        report = why_report(memory, "aria nakamura")
        assert report["window"] is None and report["steps"] == [] and "no change" in report["note"]
    finally:
        memory.close()


def test_bad_names_and_windows_are_user_errors(mem):
    with pytest.raises(UserError, match="no fact"):
        why_report(mem, "Nobody Anywhere")
    with pytest.raises(UserError, match="name a fact"):
        why_report(mem, "  ")
    fact_id = next(iter(mem.ledger.facts))
    with pytest.raises(UserError, match="both --from and --to"):
        why_report(mem, fact_id, "cycle=0", None)
    with pytest.raises(UserError, match="must come before"):
        why_report(mem, fact_id, "cycle=1", "cycle=0")


def test_ambiguous_subject_lists_the_candidates(tmp_path):
    memory = fake_memory(tmp_path / "s", EngineConfig(wake="unconstrained", ppl_bound=None))
    try:
        memory.inject([Fact("Aria Nakamura", "lives in", "Thessaloniki"), Fact("Aria Nakamura", "works as", "a pilot")])
        with pytest.raises(UserError, match="names 2 facts"):
            why_report(memory, "Aria Nakamura")
        assert find_fact(memory.ledger, "aria nakamura works as").fact.object == "a pilot"
    finally:
        memory.close()
