"""``diff_points``: what changed between two points, checked against the events themselves."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from memlog.cli.app import main
from memlog.core.facts import Fact
from memlog.core.pool import fact_pool
from memlog.engine.config import EngineConfig
from memlog.replay.diff import CHANGE_ORDER, diff_points, diff_report
from memlog.replay.points import parse_point, resolve_point
from memlog.store.events import EditPruned, EditRefreshed, FactInjected, RecallAudited
from memlog.store.store import Store
from tests.fakes import fake_memory


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Wake (9 facts), sleep, a second wave of 3 with an update, sleep again under a lower cap."""
    path = tmp_path_factory.mktemp("diff") / "store"
    pool = fact_pool(12, seed=5)
    mem = fake_memory(path, EngineConfig(cap=10, ppl_bound=None))
    try:
        mem.inject(pool[:9])
        mem.sleep(cycles=2)
        mem.inject(pool[9:])
        mem.inject([Fact(pool[0].subject, pool[0].relation, "Reykjavik")])
        mem.sleep(cycles=2, cap=7)
    finally:
        mem.close()
    return path


@pytest.fixture(scope="module")
def logged(store):
    st = Store.open(store, writable=False)
    try:
        return st.log.read()
    finally:
        st.close()


def _seq(logged, point: str) -> int:
    return resolve_point(parse_point(point), logged)


def _last_recalled(logged, seq: int) -> dict[str, bool]:
    """fact_id -> recalled, from the latest audit naming it at or before ``seq``."""
    out: dict[str, bool] = {}
    for item in logged:
        if item.seq <= seq and isinstance(item.event, RecallAudited):
            for r in item.event.results:
                out[r.fact_id] = r.recalled
    return out


def _between(logged, cls, a: int, b: int):
    return [i for i in logged if a < i.seq <= b and isinstance(i.event, cls)]


def _by_change(changes) -> dict[str, set[str]]:
    out = defaultdict(set)
    for c in changes:
        out[c["change"]].add(c["fact_id"])
    return out


def test_a_sleep_cycle_refreshes_and_recovers(logged):
    a, b = _seq(logged, "cycle=0"), _seq(logged, "cycle=1")
    got = _by_change(diff_points(logged, a, b))
    refreshed = {i.event.fact.fact_id for i in _between(logged, EditRefreshed, a, b)}
    assert refreshed, "the fake editor degrades some facts during wake"
    assert got["refreshed"] == refreshed
    before, after = _last_recalled(logged, a), _last_recalled(logged, b)
    assert got["recovered"] == {f for f in before if before[f] is False and after.get(f) is True}
    assert got["degraded"] == {f for f in before if before[f] is True and after.get(f) is False}
    assert not got["injected"] and not got["pruned"] and not got["updated"]


def test_a_wake_injects_and_updates(logged):
    a = _seq(logged, "cycle=2")
    b = max(i.seq for i in logged if isinstance(i.event, FactInjected))
    got = _by_change(diff_points(logged, a, b))
    injected = _between(logged, FactInjected, a, b)
    assert got["injected"] == {i.event.fact.fact_id for i in injected if i.event.supersedes_version is None}
    assert got["updated"] == {i.event.fact.fact_id for i in injected if i.event.supersedes_version is not None}
    updated = [c for c in diff_points(logged, a, b) if c["change"] == "updated"]
    assert updated[0]["after"] == "Reykjavik" and updated[0]["object"] == "Reykjavik"


def test_prunes_over_the_cap(logged):
    a, b = _seq(logged, "cycle=2"), _seq(logged, "head")
    got = _by_change(diff_points(logged, a, b))
    owner = {i.event.edit_id: i.event.fact.fact_id for i in logged if isinstance(i.event, (FactInjected, EditRefreshed))}
    known_at_a = {i.event.fact.fact_id for i in logged if i.seq <= a and isinstance(i.event, FactInjected)}
    pruned = {owner[i.event.edit_id] for i in _between(logged, EditPruned, a, b)}
    # a fact injected after A and pruned before B is no net change
    assert pruned & known_at_a and got["pruned"] == pruned & known_at_a


def test_reverse_diff_swaps_injected_and_pruned(logged):
    a, b = _seq(logged, "cycle=2"), _seq(logged, "head")
    forward, backward = _by_change(diff_points(logged, a, b)), _by_change(diff_points(logged, b, a))
    assert backward["pruned"] == forward["injected"]
    assert backward["injected"] == forward["pruned"]
    assert backward["recovered"] == forward["degraded"] and backward["degraded"] == forward["recovered"]


def test_same_point_has_no_changes(logged):
    seq = _seq(logged, "cycle=1")
    assert diff_points(logged, seq, seq) == []


def test_changes_are_ordered_and_described(logged):
    changes = diff_points(logged, 0, _seq(logged, "head"))
    order = [CHANGE_ORDER.index(c["change"]) for c in changes]
    assert order == sorted(order)
    for c in changes:
        assert {"fact_id", "subject", "relation", "object", "change", "before", "after"} <= set(c)


def test_diff_report_and_cli(store, logged, capsys):
    report = diff_report(logged, "cycle=0", "cycle=1")
    assert report["from"]["seq"] == _seq(logged, "cycle=0") and report["to"]["cycle"] == 1
    assert sum(report["summary"].values()) == len(report["changes"])
    code = main(["diff", "--from", "cycle=0", "--to", "cycle=1", "--store", str(store), "--format", "json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["changes"] == json.loads(json.dumps(report["changes"]))
    code = main(["diff", "--from", "cycle=0", "--store", str(store)])
    out = capsys.readouterr()
    assert code == 0 and "from cycle=0" in out.out
    code = main(["diff", "--from", "cycle=99", "--store", str(store)])
    assert code == 1 and "cycle=99" in capsys.readouterr().err


def test_a_release_and_a_new_inject_of_the_released_fact(tmp_path):
    """A released fact is ``released`` (not pruned) from before to after the release; read
    backwards it is ``injected`` from ``released``; injected again after it, the diff across both
    says released, then injected."""
    pool = fact_pool(5, seed=5)
    mem = fake_memory(tmp_path / "s", EngineConfig(ppl_bound=None, wake="unconstrained"))
    try:
        mem.inject(pool)
        start = mem.head_seq
        victim = mem.ledger.active_facts()[1]
        released_at = mem.release(victim.edit_id)
        mem.inject([pool[[f.fact_id for f in pool].index(victim.fact.fact_id)]])
        end = mem.head_seq
        logged = mem.store.log.read()
    finally:
        mem.close()
    fid = victim.fact.fact_id
    assert _by_change(diff_points(logged, start, released_at)) == {"released": {fid}}
    backward = [c for c in diff_points(logged, released_at, start) if c["fact_id"] == fid]
    assert [(c["change"], c["before"]) for c in backward] == [("injected", "released")]
    across = [c["change"] for c in diff_points(logged, start, end) if c["fact_id"] == fid]
    assert across[0] == "injected" and "released" in across and "pruned" not in across
