"""``memlog compare``: two runs from the same facts, copy vs in-place, checked against their events."""

from __future__ import annotations

import json

import pytest

from memlog.analytics.compare import FIGURE, TABLE, compare_runs
from memlog.cli.app import main
from memlog.core.pool import fact_pool
from memlog.engine.config import EngineConfig
from memlog.store.events import FactInjected, SleepEnded
from memlog.store.store import Store
from tests.fakes import fake_memory


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """The same 12 facts and cycles under a cap of 10, once per refresh mode."""
    root = tmp_path_factory.mktemp("compare")
    pool = fact_pool(14, seed=2)
    paths = {}
    for mode in ("copy", "in-place"):
        path = root / mode
        mem = fake_memory(path, EngineConfig(cap=10, refresh_mode=mode, ppl_bound=None, wake="unconstrained"))
        try:
            mem.inject(pool[:12])
            mem.sleep(cycles=3)
            mem.inject(pool[12:])
            mem.sleep(cycles=2)
        finally:
            mem.close()
        paths[mode] = path
    return paths


def _events(path):
    store = Store.open(path, writable=False)
    try:
        return store.log.read()
    finally:
        store.close()


def test_rows_match_the_sleep_events(stores):
    runs = compare_runs([stores["copy"], stores["in-place"]])
    assert [r.label for r in runs] == ["copy", "in-place"]
    for run, path in zip(runs, (stores["copy"], stores["in-place"])):
        logged = _events(path)
        ended = [i for i in logged if isinstance(i.event, SleepEnded)]
        assert [c["cycle"] for c in run.cycles] == [i.event.cycle for i in ended]
        for row, item in zip(run.cycles, ended):
            e = item.event
            known = len({i.event.fact.fact_id for i in logged if isinstance(i.event, FactInjected) and i.seq < item.seq})
            assert (row["recall_active"], row["ledger_size"], row["active_facts"], row["pruned"], row["ppl_before"], row["ppl_after"]) == (
                e.recall_after,
                e.ledger_size,
                e.active_facts,
                e.pruned,
                e.ppl_before,
                e.ppl_after,
            )
            assert row["facts_known"] == known
            assert row["recall_injected"] == pytest.approx(round(e.recall_after * e.active_facts) / known)
    copy, in_place = runs
    # in place keeps one ledger entry per active fact; copy mode's ledger outgrows its facts
    assert all(c["ledger_size"] == c["active_facts"] for c in in_place.cycles)
    assert any(c["ledger_size"] > c["active_facts"] for c in copy.cycles)


def test_cli_writes_the_figure_and_table(stores, tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", str(stores["copy"]), str(stores["in-place"]), "--out", str(out), "--label", "bug", "--label", "fix", "--format", "json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    doc = json.loads(captured.out)
    assert [r["label"] for r in doc["runs"]] == ["bug", "fix"]
    assert (out / FIGURE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / TABLE).read_text().splitlines()
    n_cycles = len({c["cycle"] for r in doc["runs"] for c in r["cycles"]})
    assert len(table) == 2 + n_cycles and "bug recall" in table[0] and "fix PPL after" in table[0]


def test_bad_input_is_a_user_error(stores, tmp_path, capsys):
    assert main(["compare", str(stores["copy"]), "--out", str(tmp_path / "o")]) == 1
    assert "at least two" in capsys.readouterr().err
    empty = tmp_path / "empty"
    fake_memory(empty).close()
    assert main(["compare", str(stores["copy"]), str(empty), "--out", str(tmp_path / "o")]) == 1
    assert "no sleep cycles" in capsys.readouterr().err
    assert main(["compare", str(stores["copy"]), str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 1
    assert "no memlog store" in capsys.readouterr().err
    assert main(["compare", str(stores["copy"]), str(stores["in-place"]), "--out", str(tmp_path / "o"), "--label", "one"]) == 1
    assert "labels" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
