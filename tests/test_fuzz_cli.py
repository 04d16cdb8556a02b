"""Hypothesis fuzzing of the CLI's argument parsing and of the facts-file reader.

Random command lines built from the known commands, options and awkward values must end
with exit 0, 1 or 2 and never a traceback; random facts files are either accepted whole
(one fact per non-blank line) or refused with one line naming ``file:line``, with nothing
written. The stores used are ones that fail before a model is loaded, or a model-free
fake store for the commands that need no model, so the examples stay fast.
"""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memlog.cli.app import app, main
from memlog.core.factfile import read_facts as read_facts_file
from memlog.errors import UserError
from memlog.store.store import Store
from tests.fakes import fake_memory
from memlog.core.facts import Fact

LOADS_OR_CREATES = {"init", "demo", "experiment", "report", "compare"}  # create stores or draw figures: slow
MODEL_FREE = {"status", "log", "sql", "gc", "diff"}  # may run on the fake store (no model to load)
COMMANDS = {name: cmd for name, cmd in typer.main.get_command(app).commands.items() if name not in LOADS_OR_CREATES}
VALUES = [
    "", "0", "-1", "1", "7", "abc", "1-2", "0-2000000000", "seq=1", "seq=999", "cycle=0", "cycle=-3", "time=2020-01-01",
    "head", "[/]", "[bold]Oslo", ":smile:", "--", "-", "-x", "json", "text", "cpu", "cuda", "é", "x" * 300,
    "99999999999999999999", "nan", "inf", "1e309", "e00001", "FactInjected", "select 1", "select * from events",
    "-- comment", ";", "a'b", "\u2028", "reinject", "copy",
]


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    plain = root / "plain-file"
    plain.write_text("not a store")
    (root / "empty-dir").mkdir()
    mem = fake_memory(root / "fake-store")
    mem.inject([Fact("Aria Nakamura", "lives in", "Porto")])
    mem.close()
    return {"missing": root / "missing", "file": plain, "empty": root / "empty-dir", "fake": root / "fake-store", "root": root}


def _tokens(cmd) -> st.SearchStrategy[list[str]]:
    options = [opt for p in cmd.params for opt in p.opts if opt.startswith("-")] + ["--help", "--bogus"]
    return st.lists(st.one_of(st.sampled_from(options), st.sampled_from(VALUES)), max_size=6)


@st.composite
def command_lines(draw):
    name = draw(st.sampled_from(sorted(COMMANDS)))
    tokens = draw(_tokens(COMMANDS[name]))
    stores = ["missing", "file", "empty"] + (["fake"] if name in MODEL_FREE else [])
    return [name, *tokens], draw(st.sampled_from(stores))


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(line=command_lines())
def test_random_command_lines_never_trace_back(places, monkeypatch, line):
    argv, store = line
    monkeypatch.chdir(places["root"])  # whatever a command writes stays in the fuzz directory
    code, _, err = _run([*argv, "--store", str(places[store])])
    assert code in (0, 1, 2), (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    if code != 0:
        lines = [line for line in err.strip().splitlines() if line.strip()]
        assert lines and (lines[-1].startswith("error:") or lines[-1].startswith("problem")), (argv, err)


def _line_strategy():
    fact = st.fixed_dictionaries(
        {"subject": st.text(max_size=30), "relation": st.text(max_size=20), "object": st.text(max_size=30)},
        optional={"extra": st.integers()},
    )
    good = fact.map(lambda d: json.dumps(d, ensure_ascii=False).encode())
    junk = st.one_of(
        st.binary(max_size=40),
        st.just(b""),
        st.just(b"   "),
        st.sampled_from([b"{}", b"[]", b"null", b'{"subject": 1, "relation": "r", "object": "o"}', b'"text"', b"\xff\xfe", b'{"subject": "\\ud800", "relation": "r", "object": "o"}']),
        st.text(max_size=30).map(lambda t: t.encode("utf-8", "surrogatepass")),
    )
    return st.one_of(good, good, junk)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_line_strategy(), max_size=6), ending=st.sampled_from([b"\n", b"\r\n"]))
def test_facts_reader_accepts_all_or_names_file_and_line(tmp_path, lines, ending):
    path = tmp_path / "facts.jsonl"
    raw = ending.join(lines)
    path.write_bytes(raw)
    try:
        facts = read_facts_file(path)
    except UserError as exc:
        message = str(exc)
        assert "\n" not in message
        if re.match(rf"{re.escape(str(path))}: record \d+: ", message):
            assert raw.lstrip().startswith(b"["), message  # a JSON-list file names its record
            return
        match = re.match(rf"{re.escape(str(path))}:(\d+): ", message)
        if match is None:
            assert message == f"{path} holds no facts", message
            return
        lineno = int(match.group(1))
        assert 1 <= lineno <= raw.count(b"\n") + 1, (message, raw)
        return
    non_blank = [line for line in raw.decode("utf-8").split("\n") if line.strip()]
    assert len(facts) == len(non_blank) > 0
    for fact, line in zip(facts, non_blank):
        row = json.loads(line)
        assert (fact.subject, fact.relation, fact.object) == tuple(" ".join(row[k].split()) for k in ("subject", "relation", "object"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_line_strategy(), min_size=1, max_size=4))
def test_a_refused_facts_file_writes_nothing(places, lines):
    path = places["root"] / "facts.jsonl"
    path.write_bytes(b"\n".join(lines))
    try:
        read_facts_file(path)
    except UserError as exc:
        expected = str(exc)
    else:
        return  # an accepted file would be injected (a model run); the reader test covers acceptance
    with Store.open(places["fake"]) as st_:
        before = st_.log.head_seq()
    code, _, err = _run(["inject", "--file", str(path), "--store", str(places["fake"])])
    assert code == 1 and err.strip() == f"error: {expected}"
    with Store.open(places["fake"]) as st_:
        assert st_.log.head_seq() == before
