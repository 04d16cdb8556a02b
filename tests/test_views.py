"""The SQL views (``memlog.analytics.views``) against logs made with the fake editor.

Every expected number is computed here from the logged events (or the ledger fold), never
hard-coded: rows per view, prune/revert/supersede marks, per-cycle summaries, per-fact
audit statistics, the wake trajectory, and the documented example queries.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import duckdb
import pytest

from memlog.analytics.views import EXAMPLE_QUERIES, VIEW_NAMES, create_views, export_parquet, run_sql
from memlog.core.facts import Fact
from memlog.core.pool import fact_pool
from memlog.engine.config import EngineConfig
from memlog.projections.ledger import Ledger
from memlog.store.events import (
    EditPruned,
    EditRefreshed,
    EditReverted,
    FactInjected,
    PerplexityMeasured,
    RecallAudited,
    RefreshRolledBack,
    SleepEnded,
    SleepStarted,
)
from memlog.store.store import Store
from tests.fakes import LAYERS, fake_memory, keyed_memory


def _build(path, refresh_mode: str, cap: int):
    """Two wake phases with sleeps, an update, a manual audit and a manual revert."""
    pool = fact_pool(14, seed=3)
    mem = fake_memory(path, EngineConfig(wake="unconstrained", cap=cap, refresh_mode=refresh_mode, ppl_bound=None))
    try:
        mem.inject(pool[:9])
        mem.sleep(until_converged=True)
        mem.inject(pool[9:])
        updated = pool[2]
        mem.inject([Fact(updated.subject, updated.relation, "Lisbon" if updated.object != "Lisbon" else "Oslo")])
        mem.audit()
        active = mem.ledger.active_facts()
        if active:
            mem.revert(active[-1].edit_id)
        mem.sleep(cycles=3)
    finally:
        mem.close()
    return path


@pytest.fixture(scope="module", params=[("in-place", 8), ("copy", 12)], ids=["in-place", "copy"])
def store(request, tmp_path_factory):
    mode, cap = request.param
    return _build(tmp_path_factory.mktemp(f"views-{mode}") / "store", mode, cap)


@pytest.fixture(scope="module")
def logged(store):
    st = Store.open(store, writable=False)
    try:
        return st.log.read()
    finally:
        st.close()


def _of(logged, cls):
    return [item for item in logged if isinstance(item.event, cls)]


def test_events_view_has_every_event_decoded(store, logged):
    rows = run_sql(store, "SELECT * FROM events ORDER BY seq")
    assert [r["seq"] for r in rows] == [item.seq for item in logged]
    assert Counter(r["kind"] for r in rows) == Counter(type(item.event).__name__ for item in logged)
    owner = {item.event.edit_id: item.event.fact.fact_id for item in _of(logged, FactInjected) + _of(logged, EditRefreshed)}
    by_seq = {r["seq"]: r for r in rows}
    for item in logged:
        row, event = by_seq[item.seq], item.event
        if isinstance(event, (EditReverted, EditPruned)):
            assert row["fact_id"] == owner[event.edit_id]  # filled in from the edit's owner
            assert row["reason"] == event.reason
        if isinstance(event, RecallAudited):
            assert row["phase"] == event.phase and row["recall"] == pytest.approx(event.recall) and row["degraded"] == event.degraded
        if isinstance(event, PerplexityMeasured):
            assert row["ppl"] == pytest.approx(event.ppl) and row["phase"] == event.phase
        if isinstance(event, FactInjected):
            assert (row["subject"], row["relation"], row["object"]) == (event.fact.subject, event.fact.relation, event.fact.object)
            assert row["v_loss"] == pytest.approx(event.v_loss)
        if isinstance(event, EditRefreshed):
            assert row["mode"] == event.mode and row["copy_of"] == event.copy_of
            assert row["n_constraint_keys"] == event.n_constraint_keys


def test_edits_view_one_row_per_version_with_marks(store, logged):
    created = _of(logged, FactInjected) + _of(logged, EditRefreshed)
    rows = run_sql(store, "SELECT * FROM edits")
    assert len(rows) == len(created)
    assert {(r["edit_id"], r["version"]) for r in rows} == {(i.event.edit_id, i.event.version) for i in created}
    assert all(r["layers"] == LAYERS and r["ranks"] == [1] * len(LAYERS) and r["rank"] == 1 for r in rows)

    pruned = {(i.event.edit_id, i.event.version): i.seq for i in _of(logged, EditPruned)}
    assert {(r["edit_id"], r["version"]): r["pruned_seq"] for r in rows if r["pruned_seq"] is not None} == pruned
    first_revert: dict = {}
    for i in _of(logged, EditReverted):
        first_revert.setdefault((i.event.edit_id, i.event.version), i.seq)
    assert {(r["edit_id"], r["version"]): r["reverted_seq"] for r in rows if r["reverted_seq"] is not None} == first_revert
    rolled = {(i.event.edit_id, i.event.version) for i in _of(logged, RefreshRolledBack)}
    assert {(r["edit_id"], r["version"]) for r in rows if r["rolled_back_seq"] is not None} == rolled

    versions = defaultdict(list)
    for i in created:
        versions[i.event.edit_id].append((i.event.version, i.seq))
    for r in rows:
        later = [seq for v, seq in versions[r["edit_id"]] if v > r["version"]]
        assert r["superseded_seq"] == (min(later) if later else None)

    modes = Counter(r["mode"] for r in rows)
    updates = sum(1 for i in _of(logged, FactInjected) if i.event.supersedes_version is not None)
    assert modes["update"] == updates
    assert modes["wake"] == len(_of(logged, FactInjected)) - updates
    assert sum(n for m, n in modes.items() if m in ("in-place", "copy")) == len(_of(logged, EditRefreshed))


def test_cycles_view_one_row_per_sleep(store, logged):
    ended = _of(logged, SleepEnded)
    started = {i.event.cycle: i for i in _of(logged, SleepStarted)}
    rows = run_sql(store, "SELECT * FROM cycles ORDER BY cycle")
    assert len(rows) == len(ended) >= 4
    for row, item in zip(rows, ended):
        e = item.event
        assert row["cycle"] == e.cycle and row["ended_seq"] == item.seq
        assert row["started_seq"] == started[e.cycle].seq < item.seq
        for key in ("recall_before", "recall_after"):
            assert row[f"{key}_active"] == pytest.approx(getattr(e, key))
        for key in ("ppl_before", "ppl_after"):
            assert row[key] == pytest.approx(getattr(e, key))
        for key in ("degraded_before", "degraded_after"):
            assert row[f"{key}_active"] == getattr(e, key)
        for key in ("refreshed", "reverted", "pruned", "rolled_back", "ledger_size", "active_facts"):
            assert row[key] == getattr(e, key)
        # over every fact ever injected: the sleep-post audit's hits over the facts known; pruned ones count as degraded
        post = [i.event for i in logged if isinstance(i.event, RecallAudited) and i.event.phase == "sleep-post" and i.event.cycle == e.cycle][-1]
        hits = len(post.results) - post.degraded
        assert row["degraded_after"] == row["facts_known"] - hits and row["recall_after"] == pytest.approx(hits / row["facts_known"])
        assert row["degraded_after"] >= e.degraded_after
        assert row["wall_seconds"] == pytest.approx(e.seconds)
        assert row["refresh_mode"] == started[e.cycle].event.refresh_mode
        assert row["ppl_drift"] == pytest.approx((e.ppl_after - e.ppl_before) / e.ppl_before)
        assert row["facts_injected"] == sum(1 for i in _of(logged, FactInjected) if i.seq < item.seq)
        assert row["facts_known"] == len({i.event.fact.fact_id for i in _of(logged, FactInjected) if i.seq < item.seq})
    # every prune and every refresh of the log happened inside a cycle
    assert sum(r["pruned"] for r in rows) == len(_of(logged, EditPruned))
    sleep_refreshes = [i for i in _of(logged, EditRefreshed) if i.event.cycle is not None]
    assert sum(r["refreshed"] + r["rolled_back"] for r in rows) == len(sleep_refreshes)


def _audit_marks(logged):
    marks = defaultdict(list)  # fact_id -> [(seq, cycle, phase, recalled, completion)]
    for item in _of(logged, RecallAudited):
        for r in item.event.results:
            marks[r.fact_id].append((item.seq, item.event.cycle, item.event.phase, r.recalled, r.completion))
    return marks


def test_audits_view_one_row_per_result(store, logged):
    audits = _of(logged, RecallAudited)
    rows = run_sql(store, "SELECT * FROM audits")
    assert len(rows) == sum(len(i.event.results) for i in audits)
    expected = [(i.seq, r.fact_id, r.recalled, r.completion) for i in audits for r in i.event.results]
    assert [(r["seq"], r["fact_id"], r["recalled"], r["completion"]) for r in rows] == expected


def _check_facts_against_ledger(store, logged):
    ledger = Ledger.fold([(item.seq, item.event) for item in logged])
    marks = _audit_marks(logged)
    refreshes = Counter(i.event.fact.fact_id for i in _of(logged, EditRefreshed))
    rows = {r["fact_id"]: r for r in run_sql(store, "SELECT * FROM facts")}
    assert set(rows) == set(ledger.facts)
    assert sum(r["active"] for r in rows.values()) == len(ledger.active_facts())
    for fact_id, state in ledger.facts.items():
        row = rows[fact_id]
        released = ledger.released_entry(fact_id)
        entry = ledger.entries.get(state.edit_id) if state.active or released else None
        assert row["active"] == state.active
        assert row["released_seq"] == (state.released_seq if released else None)
        assert row["pruned_seq"] == (None if released else state.pruned_seq)
        assert row["object"] == state.fact.object
        # the first injection ever (a fact injected again after it was pruned keeps its first seq)
        assert row["first_seq"] == min(i.seq for i in _of(logged, FactInjected) if i.event.fact.fact_id == fact_id) <= state.injected_seq
        assert row["edit_id"] == (state.edit_id if entry else None)
        assert row["version"] == (entry.version if entry else None)
        assert row["refreshes"] == refreshes[fact_id]
        mine = marks[fact_id]
        assert row["audits"] == len(mine)
        assert row["times_degraded"] == sum(1 for m in mine if not m[3])
        assert row["cycles_degraded"] == len({m[1] for m in mine if not m[3] and m[2] == "sleep-pre"})
        assert row["last_recalled"] == (mine[-1][3] if mine else None)
        assert row["last_audit_seq"] == (mine[-1][0] if mine else None)
        healthy = [m[0] for m in mine if m[3]]
        assert row["last_recalled_seq"] == (max(healthy) if healthy else None)


def test_facts_view_matches_the_ledger_fold(store, logged):
    _check_facts_against_ledger(store, logged)


def test_rolled_back_refresh_is_marked_and_the_old_version_holds_the_fact(tmp_path):
    # The keyed fake's PPL jumps while a refreshed version of a "spiky" fact is applied,
    # so every refresh crosses the bound and is rolled back.
    facts = fact_pool(8, seed=3)
    mem = keyed_memory(tmp_path / "s", EngineConfig(wake="unconstrained", ppl_bound=0.05), interference=2, spiky={f.fact_id for f in facts})
    try:
        mem.inject(facts)
        mem.sleep(cycles=1)
        logged = mem.store.log.read()
    finally:
        mem.close()
    rolled = _of(logged, RefreshRolledBack)
    assert rolled, "the scenario should roll a refresh back"
    rows = run_sql(tmp_path / "s", "SELECT edit_id, version, rolled_back_seq FROM edits WHERE rolled_back_seq IS NOT NULL")
    assert {(r["edit_id"], r["version"], r["rolled_back_seq"]) for r in rows} == {(i.event.edit_id, i.event.version, i.seq) for i in rolled}
    _check_facts_against_ledger(tmp_path / "s", logged)


def test_released_facts_in_the_facts_view_match_the_ledger_fold(tmp_path):
    """A release makes the fact inactive with its edit still named; a new inject makes it active
    again on the same edit; a fact pruned before it was released is not released."""
    facts = fact_pool(6, seed=3)
    mem = fake_memory(tmp_path / "s", EngineConfig(wake="unconstrained", ppl_bound=None))
    try:
        mem.inject(facts)
        first, second = mem.ledger.active_facts()[:2]
        mem.release(first.edit_id)
        mem.release(second.edit_id)
        mem.inject([facts[[f.fact_id for f in facts].index(second.fact.fact_id)]])  # injected anew
        logged = mem.store.log.read()
    finally:
        mem.close()
    rows = {r["fact_id"]: r for r in run_sql(tmp_path / "s", "SELECT fact_id, active, released_seq, edit_id FROM facts")}
    assert rows[first.fact.fact_id]["active"] is False and rows[first.fact.fact_id]["released_seq"] is not None
    assert rows[first.fact.fact_id]["edit_id"] == first.edit_id
    assert rows[second.fact.fact_id]["active"] is True and rows[second.fact.fact_id]["released_seq"] is None
    assert rows[second.fact.fact_id]["edit_id"] == second.edit_id
    _check_facts_against_ledger(tmp_path / "s", logged)


def test_wake_view_pairs_each_injection_with_its_audit(store, logged):
    injections = _of(logged, FactInjected)
    rows = run_sql(store, "SELECT * FROM wake ORDER BY injection")
    assert [r["seq"] for r in rows] == [i.seq for i in injections]
    assert [r["injection"] for r in rows] == list(range(1, len(injections) + 1))
    wake_audits = [i for i in _of(logged, RecallAudited) if i.event.phase == "wake"]
    for n, (row, item) in enumerate(zip(rows, injections)):
        next_seq = injections[n + 1].seq if n + 1 < len(injections) else float("inf")
        audit = next((a for a in wake_audits if item.seq < a.seq < next_seq), None)
        assert audit is not None  # the engine audits after every injection by default
        assert row["audit_seq"] == audit.seq
        assert row["recall"] == pytest.approx(audit.event.recall)
        assert row["degraded"] == audit.event.degraded
        assert row["audited"] == len(audit.event.results)
        own = [r.recalled for r in audit.event.results if r.fact_id == item.event.fact.fact_id]
        assert row["recalled"] == own[0]
        assert row["cycles_before"] == sum(1 for e in _of(logged, SleepEnded) if e.seq < item.seq)


def test_facts_degraded_in_more_than_two_cycles(store, logged):
    per_fact = defaultdict(set)
    for item in _of(logged, RecallAudited):
        if item.event.phase == "sleep-pre":
            for r in item.event.results:
                if not r.recalled:
                    per_fact[r.fact_id].add(item.event.cycle)
    for threshold in (0, 1, 2):
        rows = run_sql(store, f"SELECT fact_id FROM facts WHERE cycles_degraded > {threshold}")
        assert {r["fact_id"] for r in rows} == {f for f, cycles in per_fact.items() if len(cycles) > threshold}


def test_example_queries_run_and_are_sane(store, logged):
    n_cycles = len(_of(logged, SleepEnded))
    results = {question: run_sql(store, sql) for question, sql in EXAMPLE_QUERIES}
    drift = results["PPL drift per cycle"]
    assert [r["cycle"] for r in drift] == list(range(1, n_cycles + 1))
    for row in drift:
        assert row["drift_pct"] == pytest.approx(100 * (row["ppl_after"] - row["ppl_before"]) / row["ppl_before"], abs=1e-3)
    assert len(results["The wake trajectory (the paper's Table 3)"]) == len(_of(logged, FactInjected))
    assert len(results["Refreshes and prunes per cycle (the paper's Table 6)"]) == n_cycles
    kinds = {r["kind"]: r["n"] for r in results["Events per kind"]}
    assert kinds == dict(Counter(type(i.event).__name__ for i in logged))
    pruned_working = results["Working edits that were pruned (applied, never reverted, fact recalled at the audit before)"]
    assert {r["edit_id"] for r in pruned_working} <= {i.event.edit_id for i in _of(logged, EditPruned)}


def test_views_work_on_a_plain_duckdb_connection(store, logged):
    conn = duckdb.connect()
    try:
        conn.execute(f"ATTACH '{store / 'log.duckdb'}' AS log (READ_ONLY)")
        create_views(conn, temp=True)
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == len(logged)
        assert conn.execute("SELECT count(*) FROM cycles").fetchone()[0] == len(_of(logged, SleepEnded))
    finally:
        conn.close()


def test_export_parquet_writes_every_view(store, tmp_path):
    written = export_parquet(store, tmp_path / "pq", "SELECT cycle, recall_after FROM cycles")
    assert set(written) == set(VIEW_NAMES) | {"query"}
    conn = duckdb.connect()
    try:
        for name in VIEW_NAMES:
            expected = run_sql(store, f"SELECT count(*) AS n FROM {name}")[0]["n"]
            assert conn.execute(f"SELECT count(*) FROM '{written[name]}'").fetchone()[0] == expected
        assert conn.execute(f"SELECT count(*) FROM '{written['query']}'").fetchone()[0] == run_sql(store, "SELECT count(*) AS n FROM cycles")[0]["n"]
    finally:
        conn.close()


def test_views_on_a_store_with_only_its_header(tmp_path):
    mem = fake_memory(tmp_path / "empty")
    mem.close()
    for name in VIEW_NAMES:
        rows = run_sql(tmp_path / "empty", f"SELECT * FROM {name}")
        assert len(rows) == (1 if name == "events" else 0)


def test_wake_view_and_the_experiments_fold_give_the_same_rows(store, logged):
    """The ``wake`` view (SQL) and ``experiments.fromlog`` (the Python fold behind ``memlog
    experiment summary``) read the same wake trajectory: the same injections, audits and numbers."""
    from memlog.experiments.fromlog import split_phases

    phases, _, _ = split_phases(logged)
    folded = [row for phase in phases for row in phase.rows]
    rows = [r for r in run_sql(store, "SELECT * FROM wake ORDER BY injection") if r["audit_seq"] is not None]
    assert len(folded) == len(rows) > 0
    for view, fold in zip(rows, folded):
        assert (view["fact_id"], view["subject"], view["object"]) == (fold.fact_id, fold.subject, fold.object)
        assert (view["audit_seq"], view["recalled"], view["degraded"]) == (fold.seq, fold.recalled, fold.degraded)
        assert view["recall"] == pytest.approx(fold.recall)
        assert view["ppl"] == (pytest.approx(fold.ppl) if fold.ppl is not None else None)
        assert view["seconds"] <= fold.seconds  # the fold adds the audit's time to the injection's
