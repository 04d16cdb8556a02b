"""Smoke runs of ``memlog experiment`` (CI-sized).

- The protocols over the fake editor (fast): the structure of the results, and the
  ledger policy: copy mode's ledger grows past the number of facts, in-place mode's never
  does, at any seq of the log.
- The threshold detectors on hand-made trajectories.
- Both commands end to end through the CLI on a tiny random Llama saved to a local path:
  the JSON document's structure, and a store that ``sql`` and ``replay`` can read.
"""

from __future__ import annotations

import json

import pytest

from memlog.cli.app import main
from memlog.core.pool import fact_pool
from memlog.engine.config import EngineConfig
from memlog.experiments.checks import strip_volatile
from memlog.experiments.fromlog import phase_ab_from_log, wake_capacity_from_log
from memlog.experiments.phase_ab import WaveSummary, phase_label, run_phase_ab
from memlog.experiments.wake import WakeRow
from memlog.experiments.wake_capacity import detect_first_below, detect_tipping_point, detect_wake_capacity, largest_jump, run_wake_capacity
from memlog.projections.ledger import Ledger
from tests.conftest import make_tiny_llama
from tests.fakes import fake_memory

CYCLE_KEYS = {"cycle", "phase_cycle", "recall", "recall_active", "degraded", "degraded_active", "facts_known", "open_degraded", "refreshed", "pruned", "blocked", "ledger_size", "active_facts", "ppl_before", "ppl_after", "seconds", "step_seconds"}


def _row(facts: int, recall: float, degraded: int) -> WakeRow:
    return WakeRow(facts, f"f{facts}", "s", "o", True, recall, degraded, 0, facts, None, 0.0, facts)


def test_threshold_detectors_on_the_papers_trajectory():
    # Table 3 of the paper, filled in between its rows.
    recall = {1: 1.0, 5: 0.8, 10: 0.9, 13: 0.923, 14: 0.571, 20: 0.55}
    degraded = {1: 0, 5: 1, 10: 1, 13: 1, 14: 6, 20: 9}
    rows = [_row(n, recall[n], degraded[n]) for n in sorted(recall)]
    assert detect_wake_capacity(rows, 0.9) == 13
    assert detect_first_below(rows, 0.9) == 5
    assert detect_tipping_point(rows, jump=2) == 14
    assert largest_jump(rows) == {"facts": 14, "before": 1, "after": 6}
    assert detect_wake_capacity([_row(1, 0.5, 1)], 0.9) is None
    assert detect_tipping_point([_row(1, 1.0, 0), _row(2, 0.5, 1)], jump=2) is None


def _ledger_sizes(mem) -> list[tuple[int, int, int]]:
    """(seq, ledger size, facts ever injected) after every event of the committed log."""
    ledger, out = Ledger(), []
    for item in mem.logged:
        ledger.apply(item.seq, item.event)
        out.append((item.seq, ledger.ledger_size(), len(ledger.facts)))
    return out


@pytest.mark.parametrize("mode", ["in-place", "copy"])
def test_phase_ab_with_the_fake_editor(tmp_path, mode):
    mem = fake_memory(tmp_path / "store", EngineConfig(ppl_bound=None, refresh_mode=mode, cap=50))
    facts = fact_pool(12, seed=0)
    try:
        result = run_phase_ab(mem, facts[:9], facts[9:], max_cycles=4).to_dict()
        sizes = _ledger_sizes(mem)
        rebuilt = phase_ab_from_log(mem.logged).to_dict()
    finally:
        mem.close()
    assert [p["name"] for p in result["phases"]] == ["A", "B"]
    for phase in result["phases"]:
        assert set(phase["wave"]) >= {"injected", "active_facts", "recall", "degraded", "ledger_size", "ppl", "seconds"}
        cycles = phase["cycles"]
        assert all(set(c) >= CYCLE_KEYS for c in cycles)
        assert [c["phase_cycle"] for c in cycles] == list(range(1, len(cycles) + 1))
        clean = [c["open_degraded"] == 0 for c in cycles]
        two_clean = next((i + 1 for i in range(1, len(clean)) if clean[i - 1] and clean[i]), None)
        # sleep runs until two clean cycles in a row, or max_cycles (4)
        assert phase["converged"] == (two_clean is not None) and len(cycles) == (two_clean or 4)
        if phase["converged"]:
            assert phase["result"] == ("No sleep needed" if phase["wave"]["degraded"] == 0 and all(c["degraded"] == 0 for c in cycles) else "Converged")
        else:
            assert phase["result"] in ("Diverged", "Not converged", "Stalled (refreshes blocked at the cap)")
        for c in cycles:  # recall over every fact ever injected, and over the active ones
            hits = c["active_facts"] - c["degraded_active"]
            assert c["degraded"] == c["facts_known"] - hits and c["recall"] == pytest.approx(hits / c["facts_known"])
            assert c["recall_active"] == pytest.approx(hits / c["active_facts"])
        assert len(phase["trajectory"]) == phase["wave"]["injected"]
    assert result["phases"][0]["wave"]["injected"] == 9 and result["phases"][1]["wave"]["injected"] == 3
    assert set(result["convergence"]) >= {"phase_A_initial_recall", "phase_A_cycles_run", "phase_A_final_recall", "phase_B_result"}
    assert set(result["perplexity"]) >= {"baseline", "post_injection", "post_sleep_A", "drift_post_sleep_A", "peak"}
    assert strip_volatile(rebuilt) == strip_volatile(result), "the log alone gives back the same result"
    last = result["phases"][-1]["cycles"][-1]
    assert last["facts_known"] == 12
    refreshed = sum(c["refreshed"] for p in result["phases"] for c in p["cycles"])
    assert refreshed > 0, "the fake editor degrades some facts, so sleep must refresh some"
    if mode == "in-place":
        assert all(size <= injected for _, size, injected in sizes), "in-place: never more entries than facts"
        assert max(p["max_ledger_size"] for p in result["phases"]) == 12
    else:
        assert any(size > injected for _, size, injected in sizes), "copy: refresh copies pile up beside the originals"
        assert max(p["max_ledger_size"] for p in result["phases"]) > 12


def test_wake_capacity_with_the_fake_editor(tmp_path):
    mem = fake_memory(tmp_path / "store")
    try:
        result = run_wake_capacity(mem, fact_pool(8, seed=1), ppl_every=3).to_dict()
        kinds = [type(item.event).__name__ for item in mem.logged]
        rebuilt = wake_capacity_from_log(mem.logged).to_dict()
    finally:
        mem.close()
    rows = result["rows"]
    assert [r["facts"] for r in rows] == list(range(1, 9))
    assert [r["ppl"] is not None for r in rows] == [False, False, True, False, False, True, False, True]
    assert kinds.count("FactInjected") == 8 and kinds.count("RecallAudited") == 8
    assert kinds.count("PerplexityMeasured") == 3
    assert set(result) >= {"wake_capacity", "tipping_point", "first_below", "largest_jump", "base_ppl"}
    assert strip_volatile(rebuilt) == strip_volatile(result)


def _wave(recall: float, degraded: int) -> WaveSummary:
    return WaveSummary(injected=10, active_facts=10, recall=recall, degraded=degraded, ledger_size=10, ppl=None, seconds=0.0, seq=0)


def _cycle(recall: float, degraded: int, refreshed: int = 0, blocked: int = 0) -> dict:
    return {"recall": recall, "degraded": degraded, "refreshed": refreshed, "blocked": blocked}


def test_phase_labels():
    assert phase_label(_wave(1.0, 0), [_cycle(1.0, 0), _cycle(1.0, 0)], True) == "No sleep needed"
    assert phase_label(_wave(0.6, 4), [_cycle(0.9, 1, 3), _cycle(1.0, 0, 1), _cycle(1.0, 0)], True) == "Converged"
    assert phase_label(_wave(0.97, 1), [_cycle(0.97, 1, 1), _cycle(0.6, 4)], False) == "Diverged"
    assert phase_label(_wave(0.6, 4), [_cycle(0.9, 1, 3), _cycle(0.9, 1, 0, 1)], False) == "Stalled (refreshes blocked at the cap)"
    assert phase_label(_wave(0.6, 4), [_cycle(0.9, 1, 3), _cycle(0.9, 1, 1)], False) == "Not converged"


# -- end to end through the CLI on a tiny random Llama ----------------------------------------


def run(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 and out.out.strip() else None), out.err


@pytest.fixture()
def tiny_dir(tmp_path, embedded_tokenizer, monkeypatch):
    monkeypatch.setenv("MEMLOG_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "tiny-model"
    make_tiny_llama(seed=0).save_pretrained(path)
    embedded_tokenizer.save_pretrained(path)
    return path


def test_cli_wake_capacity_on_tiny(tmp_path, tiny_dir, capsys):
    store = tmp_path / "wake"
    code, data, err = run(capsys, "experiment", "wake-capacity", "--facts", "3", "--ppl-every", "2", "--model", tiny_dir, "--layers", "1-2", "--threads", "1", "--store", store, "--format", "json")
    assert code == 0, err
    assert data["experiment"] == "wake-capacity" and data["layers"] == [1, 2] and data["determinism"]["threads"] == 1
    assert [r["facts"] for r in data["rows"]] == [1, 2, 3]
    assert [r["ppl"] is not None for r in data["rows"]] == [False, True, True]
    assert all(set(r) >= {"facts", "recall", "degraded", "ppl", "newly_broken", "seconds"} for r in data["rows"])
    code, rows, err = run(capsys, "sql", "SELECT count(*) AS n FROM events WHERE kind = 'PerplexityMeasured'", "--store", store, "--format", "json")
    assert code == 0, err
    assert rows[0]["n"] == 3  # base + two wake readings
    code, again, err = run(capsys, "experiment", "wake-capacity", "--facts", "1", "--model", tiny_dir, "--layers", "1-2", "--store", store)
    assert code == 1 and "already holds" in err  # experiments always write into a fresh store


def test_cli_phase_ab_on_tiny(tmp_path, tiny_dir, capsys):
    store = tmp_path / "ab"
    code, data, err = run(
        capsys, "experiment", "phase-ab", "--facts", "3", "--second-wave", "1", "--max-cycles", "1", "--refresh-mode", "copy", "--cap", "4", "--ppl-bound", "0",
        "--model", tiny_dir, "--layers", "1-2", "--threads", "1", "--store", store, "--format", "json",
    )
    assert code == 0, err
    assert data["experiment"] == "phase-ab" and data["refresh_mode"] == "copy" and data["cap"] == 4
    assert [p["name"] for p in data["phases"]] == ["A", "B"]
    for phase in data["phases"]:
        assert phase["cycles_run"] == 1
        assert all(set(c) >= CYCLE_KEYS for c in phase["cycles"])
        # one cycle cannot show two clean cycles in a row, so no phase converged
        assert phase["converged"] is False and phase["result"] != "Converged"
    assert data["perplexity"]["baseline"] is not None and data["perplexity"]["post_injection"] is not None
    code, rep, err = run(capsys, "replay", "--until", "cycle=1", "--verify", "--store", store, "--format", "json")
    assert code == 0, err
    assert rep["verified"] is True
    code, summary, err = run(capsys, "experiment", "summary", "--store", store, "--format", "json")
    assert code == 0, err
    assert summary["experiment"] == "phase-ab" and summary["facts"] == 3 and summary["second_wave"] == 1
    assert strip_volatile(summary["phases"]) == strip_volatile(data["phases"])


def test_cli_rejects_a_bad_refresh_mode(tmp_path, tiny_dir, capsys):
    code, _, err = run(capsys, "experiment", "phase-ab", "--refresh-mode", "sideways", "--model", tiny_dir, "--store", tmp_path / "x")
    assert code == 1 and "refresh mode" in err
    assert not (tmp_path / "x").exists()
    code, _, err = run(capsys, "experiment", "phase-ab", "--lam", "-1", "--model", tiny_dir, "--store", tmp_path / "x")
    assert code == 1 and "--lam must be a positive, finite number" in err
    assert not (tmp_path / "x").exists()


def test_cli_capacity_on_tiny_in_batches(tmp_path, tiny_dir, capsys):
    """``memlog experiment capacity`` with constrained wake, waves of 4 in batches of 2 and the
    correct refresh strategy: one row per wave, each batch one committed unit, room and delta
    norms per layer, the plot written."""
    store, plot = tmp_path / "cap", tmp_path / "cap.png"
    code, data, err = run(
        capsys, "experiment", "capacity", "--facts", "8", "--wave", "4", "--batch-size", "2", "--refresh-strategy", "correct",
        "--wake", "constrained", "--max-cycles", "2", "--ppl-bound", "0", "--plot", plot,
        "--model", tiny_dir, "--layers", "1-2", "--threads", "1", "--store", store, "--format", "json",
    )
    assert code == 0, err
    assert data["batch_size"] == 2 and data["engine"]["refresh_strategy"] == "correct" and data["engine"]["wake"] == "constrained"
    assert data["memit"]["lam"] == 256.0  # no --lam: the constrained default, 2 × the tiny model's key dimension
    assert [r["facts"] for r in data["rows"]] == [4, 8]
    assert all(len(r["rank_left"]) == 2 and len(r["delta_norm"]) == 2 for r in data["rows"])
    assert data["rows"][1]["rank_left"][0] < data["rows"][0]["rank_left"][0]  # four more keys held
    assert plot.stat().st_size > 0
    code, units, err = run(capsys, "sql", "SELECT count(DISTINCT ts) AS units, count(*) AS n FROM events WHERE kind = 'FactInjected'", "--store", store, "--format", "json")
    assert code == 0 and units == [{"units": 4, "n": 8}], err  # batches of two, each written together


def test_cli_capacity_without_sleep_audits_each_wave(tmp_path, tiny_dir, capsys):
    """``--no-sleep``: the wake-only curve. No sleep cycle runs; each wave ends with one audit and
    one perplexity reading in the log (phase wake), and its row carries the room as sleep would
    measure it, with the after-sleep fields empty."""
    store, plot = tmp_path / "cap", tmp_path / "cap.png"
    code, data, err = run(
        capsys, "experiment", "capacity", "--facts", "6", "--wave", "3", "--batch-size", "3", "--no-sleep",
        "--wake", "constrained", "--protect", "object", "--lam", "40", "--plot", plot,
        "--model", tiny_dir, "--layers", "1-2", "--threads", "1", "--store", store, "--format", "json",
    )
    assert code == 0, err
    assert data["sleep"] is False and [r["facts"] for r in data["rows"]] == [3, 6]
    assert data["memit"]["lam"] == 40.0 and data["setup"]["lam"] == 40.0
    for row in data["rows"]:
        assert row["cycles"] == 0 and row["recall_after_sleep"] is None and row["ppl_after_sleep"] is None
        assert 0.0 <= row["recall_after_wave"] <= 1.0 and row["ppl_after_wave"] > 1.0
        assert len(row["rank_left"]) == 2 and len(row["delta_norm"]) == 2 and all(n > 0 for n in row["delta_norm"])
    assert data["rows"][1]["rank_left"][0] < data["rows"][0]["rank_left"][0]  # the room is read over every stored fact
    assert plot.stat().st_size > 0
    code, kinds, err = run(capsys, "sql", "SELECT kind, count(*) AS n FROM events WHERE kind IN ('RecallAudited', 'PerplexityMeasured', 'CycleCompleted') AND (kind <> 'PerplexityMeasured' OR payload->>'phase' = 'wake') GROUP BY kind ORDER BY kind", "--store", store, "--format", "json")
    assert code == 0 and kinds == [{"kind": "PerplexityMeasured", "n": 2}, {"kind": "RecallAudited", "n": 2}], err


def test_cli_capacity_with_the_joint_re_solve(tmp_path, tiny_dir, capsys):
    """``--joint``: after each wave one audit and perplexity reading, then one joint re-solve
    (a ``Consolidated`` event, method joint, over every applied edit), then the sleep. The row
    carries the readings before and after the re-solve; ``--no-sleep`` with it is refused. With
    ``--batch-refresh`` the store's sleep refreshes a cycle's degraded facts in one solve."""
    store = tmp_path / "cap"
    code, data, err = run(
        capsys, "experiment", "capacity", "--facts", "6", "--wave", "3", "--batch-size", "3", "--joint", "--batch-refresh", "--refresh-strategy", "correct",
        "--wake", "constrained", "--max-cycles", "1", "--ppl-bound", "0",
        "--model", tiny_dir, "--layers", "1-2", "--threads", "1", "--store", store, "--format", "json",
    )
    assert code == 0, err
    assert data["joint"] is True and [r["facts"] for r in data["rows"]] == [3, 6]
    assert data["setup"]["batch_refresh"] is True and data["engine"]["batch_refresh"] is True
    for row in data["rows"]:
        assert 0.0 <= row["recall_after_joint"] <= 1.0 and row["ppl_after_joint"] > 1.0 and row["joint_seconds"] > 0
    code, joints, err = run(capsys, "sql", "SELECT payload->>'method' AS method, json_array_length(payload->'members') AS members FROM events WHERE kind = 'Consolidated' ORDER BY seq", "--store", store, "--format", "json")
    assert code == 0 and joints == [{"method": "joint", "members": 3}, {"method": "joint", "members": 6}], err
    code, _, err = run(capsys, "experiment", "capacity", "--joint", "--no-sleep", "--model", tiny_dir, "--store", tmp_path / "x")
    assert code == 1 and "--joint" in err and not (tmp_path / "x").exists()
    code, _, err = run(capsys, "experiment", "capacity", "--batch-refresh", "--no-sleep", "--model", tiny_dir, "--store", tmp_path / "y")
    assert code == 1 and "--batch-refresh" in err and not (tmp_path / "y").exists()
