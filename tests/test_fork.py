"""``memlog fork``: a store holding a prefix of another store's log (tiny random Llama, real MEMIT
edits): the fork replays to the source's weights at that point, verifies, continues on its own,
leaves the source untouched, and refuses bad points and destinations without writing anything."""

from __future__ import annotations

import hashlib

from tests.test_cli_tiny import base_store, run, store, tiny_dir  # noqa: F401 (fixtures)


def _log(capsys, store) -> list[dict]:
    code, events, err = run(capsys, "log", "--store", store, "--format", "json")
    assert code == 0, err
    return events


def _digest(path) -> str:
    return hashlib.sha256((path / "log.duckdb").read_bytes()).hexdigest()


def _inject_three(capsys, store, tmp_path) -> None:
    facts = tmp_path / "facts.jsonl"
    facts.write_text("".join(f'{{"subject": "Person{i} Example", "relation": "lives in", "object": "City{i}"}}\n' for i in range(3)))
    code, _, err = run(capsys, "inject", "--file", facts, "--no-audit", "--store", store, "--format", "json")
    assert code == 0, err


def test_fork_replays_to_the_source_point_and_continues_alone(store, tmp_path, capsys):  # noqa: F811
    _inject_three(capsys, store, tmp_path)
    point = len(_log(capsys, store))  # after three single injections
    code, _, err = run(capsys, "inject", "Later Person", "lives in", "Oslo", "--store", store, "--format", "json")
    assert code == 0, err
    code, source_then, _ = run(capsys, "replay", "--until", f"seq={point}", "--store", store, "--format", "json")
    before = _digest(store)
    dest = tmp_path / "fork"
    code, data, err = run(capsys, "fork", dest, "--until", f"seq={point}", "--store", store, "--format", "json")
    assert code == 0, err
    assert data["seq"] == point and data["blobs"] > 0 and data["store"] == str(dest)
    assert _digest(store) == before  # the source is only read
    source_events, fork_events = _log(capsys, store), _log(capsys, dest)
    assert fork_events == source_events[:point]  # row for row, commit times included
    code, head, _ = run(capsys, "replay", "--until", "head", "--store", dest, "--format", "json")
    assert head["seq"] == point and head["weights_sha256"] == source_then["weights_sha256"] and head["weights_match"] is True
    assert {f["fact_id"] for f in head["facts"]} == {f["fact_id"] for f in source_then["facts"]}
    code, ver, _ = run(capsys, "verify", "--store", dest, "--format", "json")
    assert code == 0 and ver["ok"] is True, ver
    code, _, err = run(capsys, "inject", "Fork Person", "lives in", "Lima", "--store", dest, "--format", "json")
    assert code == 0, err
    assert len(_log(capsys, dest)) > point and _digest(store) == before
    code, ver, _ = run(capsys, "verify", "--store", dest, "--format", "json")
    assert code == 0 and ver["ok"] is True, ver
    code, rows, err = run(capsys, "sql", "SELECT CAST(value->>'$.seq' AS INTEGER) AS seq FROM log.header WHERE key = 'forked_from'", "--store", dest, "--format", "json")
    assert code == 0 and rows == [{"seq": point}], err


def test_fork_refuses_a_point_inside_a_unit_and_bad_destinations(store, tmp_path, capsys):  # noqa: F811
    _inject_three(capsys, store, tmp_path)
    facts = tmp_path / "batch.jsonl"
    facts.write_text("".join(f'{{"subject": "Batch{i} Person", "relation": "lives in", "object": "Town{i}"}}\n' for i in range(3)))
    start = len(_log(capsys, store))
    code, _, err = run(capsys, "inject", "--file", facts, "--batch-size", "3", "--no-audit", "--store", store, "--format", "json")
    assert code == 0, err
    events = _log(capsys, store)
    batch = [e["seq"] for e in events[start:] if e["kind"] == "FactInjected"]
    assert len(batch) == 3
    dest = tmp_path / "fork"
    code, _, err = run(capsys, "fork", dest, "--until", f"seq={batch[0]}", "--store", store)
    assert code == 1 and "inside a unit written together" in err and f"seq={batch[0] - 1}" in err, err
    assert not dest.exists() and not list(tmp_path.glob(".fork.*"))
    for until, message in (("seq=9999", "past the head"), ("banana", "cycle=N"), ("cycle=7", "not in the log")):
        code, _, err = run(capsys, "fork", dest, "--until", until, "--store", store)
        assert code == 1 and message in err, err
        assert not dest.exists()
    code, _, err = run(capsys, "fork", store / "inside", "--until", "head", "--store", store)
    assert code == 1 and "inside the store" in err and not (store / "inside").exists()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    code, _, err = run(capsys, "fork", taken, "--until", "head", "--store", store)
    assert code == 1 and "is not empty" in err
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    code, data, err = run(capsys, "fork", empty, "--until", "head", "--store", store, "--format", "json")
    assert code == 0 and data["seq"] == len(events), err
    assert _log(capsys, empty) == events
