"""``memlog sql`` can never change the log: writes are refused by DuckDB, bad queries exit 1.

Each refused statement is checked three ways: DuckDB's own message reaches the user, the
number of events is unchanged, and the log file's bytes are unchanged.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from memlog.analytics.views import run_sql
from memlog.cli.app import main
from memlog.core.pool import fact_pool
from memlog.engine.config import EngineConfig
from memlog.errors import UserError
from memlog.store.store import Store
from tests.fakes import fake_memory

# (statement, a fragment of DuckDB's refusal)
REFUSED = [
    ("DELETE FROM events", "Can only delete from base table"),
    ("DROP VIEW events", "read-only mode"),
    ("DROP TABLE events", "read-only mode"),
    ("DELETE FROM log.events", "read-only mode"),
    ("DROP TABLE log.events", "read-only mode"),
    ("INSERT INTO log.events SELECT * FROM log.events", "read-only mode"),
    ("INSERT INTO events SELECT * FROM events", "events"),
    ("UPDATE log.events SET kind = 'Nothing'", "read-only mode"),
    ("UPDATE events SET kind = 'Nothing'", "Can only update base table"),
    ("CREATE TABLE scratch AS SELECT 1", "read-only mode"),
    ("DROP VIEW facts", "read-only mode"),
    ("ATTACH 'elsewhere.duckdb' AS w", "disabled by configuration"),
    ("COPY log.events TO 'events.csv'", "disabled by configuration"),
    ("SET enable_external_access = true", "configuration has been locked"),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("sql") / "store"
    mem = fake_memory(path, EngineConfig(wake="unconstrained", cap=6, ppl_bound=None))
    try:
        mem.inject(fact_pool(8, seed=2))
        mem.sleep(cycles=2)
    finally:
        mem.close()
    return path


def _fingerprint(store) -> tuple[int, str, list[str]]:
    st = Store.open(store, writable=False)
    try:
        count = st.log.count()
    finally:
        st.close()
    digest = hashlib.sha256((store / "log.duckdb").read_bytes()).hexdigest()
    return count, digest, sorted(p.name for p in store.iterdir())


def run(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("statement,message", REFUSED, ids=[s for s, _ in REFUSED])
def test_writes_are_refused_and_the_log_is_unchanged(store, statement, message, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # any file a statement managed to write would land here
    before = _fingerprint(store)
    with pytest.raises(UserError) as err:
        run_sql(store, statement)
    assert message in str(err.value)
    assert _fingerprint(store) == before
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("statement,message", REFUSED[:8], ids=[s for s, _ in REFUSED[:8]])
def test_cli_refuses_with_duckdbs_message_and_exit_1(store, statement, message, capsys):
    before = _fingerprint(store)
    code, out, err = run(capsys, "sql", statement, "--store", store)
    assert code == 1
    assert out == ""
    assert message in err and err.startswith("error: ")
    assert _fingerprint(store) == before


def test_a_second_writable_attach_of_the_log_is_refused(store):
    before = _fingerprint(store)
    with pytest.raises(UserError):
        run_sql(store, f"ATTACH '{store / 'log.duckdb'}' AS w (READ_WRITE); DELETE FROM w.events")
    # even attached again under another name, the instance is read-only
    with pytest.raises(UserError, match="read-only"):
        run_sql(store, f"ATTACH '{store / 'log.duckdb'}' AS w2; DELETE FROM w2.events")
    assert _fingerprint(store) == before


def test_bad_query_exits_1_with_duckdbs_message_and_writes_nothing(store, capsys, tmp_path):
    before = _fingerprint(store)
    code, out, err = run(capsys, "sql", "SELEC * FROM events", "--store", store)
    assert code == 1 and out == ""
    assert "Parser Error" in err and len(err.strip().splitlines()) == 1
    code, out, err = run(capsys, "sql", "SELECT * FROM no_such_view", "--store", store, "--export", "parquet", tmp_path / "pq")
    assert code == 1 and out == ""
    assert "no_such_view" in err
    assert not (tmp_path / "pq").exists() or not any((tmp_path / "pq").iterdir())
    assert _fingerprint(store) == before


def test_missing_store_and_empty_query_are_user_errors(tmp_path, capsys, store):
    code, out, err = run(capsys, "sql", "SELECT 1", "--store", tmp_path / "nowhere")
    assert code == 1 and out == "" and "no memlog store" in err
    code, out, err = run(capsys, "sql", "  ", "--store", store)
    assert code == 1 and "empty" in err
    code, out, err = run(capsys, "sql", "SELECT 1", "--store", store, "--export", "csv", tmp_path / "x")
    assert code == 1 and "parquet" in err


def test_json_is_a_list_of_row_objects(store, capsys):
    code, out, err = run(capsys, "sql", "SELECT cycle, recall_before, recall_after FROM cycles ORDER BY cycle", "--store", store, "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert isinstance(rows, list) and [r["cycle"] for r in rows] == [1, 2]
    assert set(rows[0]) == {"cycle", "recall_before", "recall_after"}
    code, out, _ = run(capsys, "sql", "SELECT seq, ts, payload FROM events WHERE seq = 1", "--store", store, "--format", "json")
    row = json.loads(out)[0]
    assert row["seq"] == 1 and isinstance(row["ts"], str) and json.loads(row["payload"])["kind"] == "StoreCreated"


def test_text_output_is_a_table(store, capsys):
    code, out, _ = run(capsys, "sql", "SELECT kind, count(*) AS n FROM events GROUP BY kind", "--store", store)
    assert code == 0
    assert "kind" in out and "FactInjected" in out and "rows)" in out


def test_export_only_writes_every_view(store, capsys, tmp_path):
    code, out, err = run(capsys, "sql", "--export", "parquet", tmp_path / "pq", "--store", store, "--format", "json")
    assert code == 0, err
    exported = json.loads(out)["exported"]
    assert {"events", "edits", "facts", "cycles"} <= set(exported)
    assert all((tmp_path / "pq" / f"{name}.parquet").is_file() for name in exported)
