"""Hostile input to the CLI: a damaged log file, usage and OS errors, markup in data.

Each failure must be one line on stderr with exit 1 (user error) or 2 (integrity), never a
traceback, and must write nothing.
"""

from __future__ import annotations

import json

import pytest

from memlog.cli.app import main
from tests.test_cli_tiny import base_store, run, store, tiny_dir  # noqa: F401  (fixtures)


def _one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:"), err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------ a damaged log file


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(20_000)


def _scribble(path):
    with open(path, "r+b") as f:
        f.seek(12_288)  # DuckDB's first metadata block
        f.write(b"\xff" * 4096)


@pytest.mark.parametrize("damage", [_truncate, _scribble], ids=["truncated", "overwritten"])
@pytest.mark.parametrize(
    "args",
    [["verify"], ["status"], ["recall", "Aria Nakamura lives in"], ["inject", "Aria Nakamura", "lives in", "Porto"], ["log"], ["sql", "select 1"]],
    ids=lambda a: a[0],
)
def test_damaged_log_exits_2_with_one_line_naming_the_file(store, capsys, damage, args):
    log = store / "log.duckdb"
    damage(log)
    size = log.stat().st_size
    code, _, err = run(capsys, *args, "--store", store)
    line = _one_error_line(err)
    assert code == 2
    assert str(log) in line and "damaged" in line and "backup" in line
    assert log.stat().st_size == size  # nothing written


# ------------------------------------------------------------- usage and OS errors


@pytest.mark.parametrize(
    "args, message",
    [
        (["recall", "x", "--max-new-tokens", "0"], "--max-new-tokens"),
        (["sleep", "--cycles", "abc"], "--cycles"),
        (["status", "--bogus"], "--bogus"),
        (["nosuchcommand"], "nosuchcommand"),
        (["sql", "-- comment"], "put `--` before it"),
        (["recall"], "prompt"),
    ],
)
def test_usage_errors_are_one_line_exit_1(capsys, args, message):
    code, _, err = run(capsys, *args)
    assert code == 1
    assert message in _one_error_line(err)


def test_no_arguments_prints_help_and_exits_0(capsys):
    code = main([])
    out = capsys.readouterr()
    assert code == 0 and "Usage" in out.out and "Traceback" not in out.err


def test_store_that_is_a_file_is_one_line_exit_1(tmp_path, capsys):
    not_a_dir = tmp_path / "plain-file"
    not_a_dir.write_text("hello")
    for args in (["status"], ["verify"], ["sql", "select 1"]):
        code, _, err = run(capsys, *args, "--store", not_a_dir)
        assert code == 1 and str(not_a_dir) in _one_error_line(err)
    code, _, err = run(capsys, "init", "--store", not_a_dir / "sub", "--model", "no-such-model-dir")
    assert code == 1
    _one_error_line(err)


def test_store_on_a_read_only_filesystem_is_one_line_exit_1(capsys, tiny_dir):  # noqa: F811
    """/proc refuses new directories even to root, so this holds whoever runs the tests."""
    code, _, err = run(capsys, "init", "--store", "/proc/memlog-store", "--model", tiny_dir, "--layers", "1-2")
    assert code == 1
    assert "/proc/memlog-store" in _one_error_line(err)


def test_non_utf8_facts_file_names_file_and_line(store, tmp_path, capsys):
    facts = tmp_path / "facts.jsonl"
    facts.write_bytes(b'{"subject": "A B", "relation": "lives in", "object": "Porto"}\n{"subject": "\xff\xfe", "relation": "r", "object": "o"}\n')
    code, _, err = run(capsys, "inject", "--file", facts, "--store", store)
    assert code == 1
    line = _one_error_line(err)
    assert f"{facts}:2" in line and "UTF-8" in line


# ------------------------------------------------------------------- markup in data


def test_markup_in_facts_prints_literally_and_audit_exits_0(store, capsys):
    code, _, err = run(capsys, "inject", "[bold]Oslo", "is twinned with", "a [/] b", "--store", store, "--no-audit")
    assert code == 0, err
    code, report, err = run(capsys, "audit", "--store", store, "--format", "json")
    assert code == 0, err
    before = len(json.loads(json.dumps(report))["facts"])
    code = main(["audit", "--store", str(store)])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "[bold]Oslo" in out.out and "a [/] b" in out.out
    code = main(["recall", "[bold]Oslo is twinned with", "--store", str(store)])
    out = capsys.readouterr()
    assert code == 0 and out.out.startswith("[bold]Oslo is twinned with"), out
    code = main(["log", "--store", str(store)])
    out = capsys.readouterr()
    assert code == 0 and "[bold]Oslo" in out.out and "a [/] b" in out.out
    assert before == 1


# ----------------------------------------------------------------- limits on the CLI


def test_layers_out_of_range_name_the_range_and_layer_count(tmp_path, tiny_dir, capsys):  # noqa: F811
    code, _, err = run(capsys, "init", "--store", tmp_path / "s", "--model", tiny_dir, "--layers", "0-2000000000")
    assert code == 1 and "0-2000000000 is out of range" in _one_error_line(err)
    code, _, err = run(capsys, "init", "--store", tmp_path / "s", "--model", tiny_dir, "--layers", "99-200")
    assert code == 1 and _one_error_line(err).endswith("--layers 99-200 is out of range: this model has 4 layers (0-3)")
    assert not (tmp_path / "s").exists()


def test_long_subject_is_refused_and_export_inside_the_store_is_refused(store, capsys):
    code, events, _ = run(capsys, "log", "--store", store, "--format", "json")
    code, _, err = run(capsys, "inject", "x" * 10_000, "lives in", "Porto", "--store", store)
    assert code == 1 and "the limit is 200" in _one_error_line(err)
    code, _, err = run(capsys, "export", "--out", store / "deltas.zarr" / "tmp" / "model", "--store", store)
    assert code == 1 and "inside the store" in _one_error_line(err)
    assert not (store / "deltas.zarr" / "tmp" / "model").exists()
    code, after, _ = run(capsys, "log", "--store", store, "--format", "json")
    assert len(after) == len(events)


def test_init_reads_memlog_threads_and_refuses_a_bad_value(tmp_path, tiny_dir, capsys, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MEMLOG_THREADS", "two")
    code, _, err = run(capsys, "init", "--store", tmp_path / "s", "--model", tiny_dir)
    assert code == 1 and "MEMLOG_THREADS must be a whole number of threads, got 'two'" in _one_error_line(err)
    assert not (tmp_path / "s").exists()
