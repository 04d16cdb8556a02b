"""The Python fold of the sleep cycles (``memlog.projections.readmodels``) equals the ``cycles``
SQL view row by row and column by column, on logs made with the fake editors: copy mode with
prunes, in-place mode with refreshes under a cap, rolled-back refreshes, failed refreshes, a
manual revert (a held fact) and the ``correct`` refresh strategy. The ``facts`` view is held
to the ledger fold in ``tests/test_views.py``.
"""

from __future__ import annotations

import json

import pytest

from memlog.analytics.views import run_sql
from memlog.core.facts import Fact
from memlog.core.pool import fact_pool
from memlog.engine.config import EngineConfig
from memlog.experiments.fromlog import phase_ab_from_log
from memlog.projections.readmodels import CYCLE_COLUMNS, CYCLE_LABELS, CYCLE_TABLE, REPORT_KEYS, CycleRow, cycle_cells, cycle_values, cycles_of
from memlog.store.events import EditPruned, EditRefreshed, RefreshFailed, RefreshRolledBack, SleepEnded
from memlog.store.store import Store
from tests.fakes import fake_memory, keyed_memory


def _waves(mem, pool, revert: bool = True) -> None:
    """Two waves with sleeps between, an update of a fact, and (optionally) a manual revert."""
    mem.inject(pool[:9])
    mem.sleep(until_converged=True)
    mem.inject(pool[9:])
    updated = pool[2]
    mem.inject([Fact(updated.subject, updated.relation, "Lisbon" if updated.object != "Lisbon" else "Oslo")])
    if revert and mem.ledger.active_facts():
        mem.revert(mem.ledger.active_facts()[-1].edit_id)
    mem.sleep(cycles=3)


def _fake(path, refresh_mode: str, cap: int, seed: int):
    mem = fake_memory(path, EngineConfig(cap=cap, refresh_mode=refresh_mode, ppl_bound=None, wake="unconstrained"))
    try:
        _waves(mem, fact_pool(14, seed=seed))
    finally:
        mem.close()


def _rollbacks(path):
    # The keyed fake's PPL jumps while a refreshed version of a "spiky" fact is applied: those
    # refreshes are rolled back; "unsolvable" facts make refreshes fail.
    facts = fact_pool(12, seed=7)
    mem = keyed_memory(
        path,
        EngineConfig(cap=10, ppl_bound=0.05, wake="unconstrained"),
        interference=2,
        spiky={f.fact_id for f in facts[:4]},
        unsolvable={f.fact_id for f in facts[4:6]},
    )
    try:
        _waves(mem, facts)
    finally:
        mem.close()


def _correct(path):
    mem = keyed_memory(path, EngineConfig(cap=9, refresh_strategy="correct", ppl_bound=None, wake="unconstrained"), interference=2)
    try:
        _waves(mem, fact_pool(12, seed=11), revert=False)
    finally:
        mem.close()


SCENARIOS = {
    "copy": lambda path: _fake(path, "copy", cap=10, seed=3),
    "in-place": lambda path: _fake(path, "in-place", cap=8, seed=5),
    "rollbacks": _rollbacks,
    "correct": _correct,
}


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(f"readmodels-{request.param}") / "store"
    SCENARIOS[request.param](path)
    store = Store.open(path, writable=False)
    try:
        logged = store.log.read()
    finally:
        store.close()
    return request.param, path, logged


def test_the_scenarios_cover_what_they_claim(scenario):
    name, _, logged = scenario
    kinds = {type(item.event) for item in logged}
    assert SleepEnded in kinds and EditRefreshed in kinds
    if name in ("copy", "in-place"):
        assert EditPruned in kinds
    if name == "rollbacks":
        assert RefreshRolledBack in kinds and RefreshFailed in kinds


def test_the_cycles_view_equals_the_python_fold(scenario):
    _, path, logged = scenario
    rows = cycles_of(logged)
    assert len(rows) == sum(isinstance(item.event, SleepEnded) for item in logged) >= 4
    view = run_sql(path, "SELECT * FROM cycles ORDER BY ended_seq")
    assert list(view[0]) == list(CYCLE_COLUMNS)
    assert len(view) == len(rows)
    for sql_row, row in zip(view, rows):
        expected = row.to_dict()
        got = {**sql_row, "step_seconds": json.loads(sql_row["step_seconds"])}
        for column in CYCLE_COLUMNS:
            assert got[column] == expected[column], (row.cycle, column, got[column], expected[column])


def test_the_report_shape_round_trips():
    # every renamed column is a CycleReport key, and cycle_values reads report_dict back
    row = CycleRow(**{c: i for i, c in enumerate(CYCLE_COLUMNS)} | {"step_seconds": {"audit": 1.5, "blocked": 2}, "facts_known": 3})
    report = row.report_dict()
    assert set(REPORT_KEYS.values()) <= set(report)
    assert report["step_seconds"] == {"audit": 1.5}
    back = cycle_values(report)
    for column, value in back.items():
        if column != "step_seconds":
            assert value == getattr(row, column), column


def test_table_columns_are_columns_and_cells_format_them():
    assert set(CYCLE_TABLE) <= set(CYCLE_LABELS) <= set(CYCLE_COLUMNS)
    cells = cycle_cells({"cycle": 2, "recall_after": 0.5, "failed": 0, "wall_seconds": 12.345}, ("cycle", "recall_after", "failed", "blocked", "wall_seconds"))
    assert cells == ["2", "0.500", "0", "—", "12.3"]


def test_fromlog_cycles_are_the_fold_in_the_report_shape(scenario):
    _, _, logged = scenario
    rows = {row.cycle: row for row in cycles_of(logged)}
    for phase in phase_ab_from_log(logged).to_dict()["phases"]:
        for cycle in phase["cycles"]:
            shaped = rows[cycle["cycle"]].report_dict()
            assert {k: cycle[k] for k in shaped} == shaped


def test_the_cycles_sql_names_one_expression_per_column():
    from memlog.analytics.sqlviews import cycles

    assert list(cycles.EXPRESSIONS) == list(CYCLE_COLUMNS)


def test_the_report_shows_cycle_columns():
    from memlog.analytics.report import CYCLE_COLUMNS as REPORT_COLUMNS

    assert set(REPORT_COLUMNS) <= set(CYCLE_COLUMNS)


def test_the_facts_view_equals_the_ledger_fold(scenario):
    from memlog.projections.ledger import Ledger
    from tests.test_views import _check_facts_against_ledger

    _, path, logged = scenario
    _check_facts_against_ledger(path, logged)
    ledger = Ledger.fold([(item.seq, item.event) for item in logged])
    prompts = {r["fact_id"]: r["prompt"] for r in run_sql(path, "SELECT fact_id, prompt FROM facts")}
    assert prompts == {fact_id: state.fact.prompt for fact_id, state in ledger.facts.items()}
