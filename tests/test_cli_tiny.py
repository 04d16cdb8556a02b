"""The CLI end to end on a tiny random Llama saved to a local path (fast).

Covers the JSON contract of CLI.md, exit codes (1 user error, 2 integrity), that bad input
writes nothing, a second writer, and a store opened against a different base model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from memlog.cli.app import main
from memlog.errors import UserError
from tests.conftest import make_tiny_llama


def run(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    try:
        data = json.loads(out.out) if out.out.strip() else None
    except json.JSONDecodeError:
        data = None
    return code, data, out.err


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, embedded_tokenizer):
    path = tmp_path_factory.mktemp("tiny-model")
    make_tiny_llama(seed=0).save_pretrained(path)
    embedded_tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def base_store(tmp_path_factory, tiny_dir):
    """One initialised store per module (init computes the covariance and the base PPL)."""
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("MEMLOG_CACHE")
    os.environ["MEMLOG_CACHE"] = str(cache)
    try:
        path = tmp_path_factory.mktemp("base") / "store"
        assert main(["init", "--store", str(path), "--model", str(tiny_dir), "--layers", "1-2", "--format", "json"]) == 0
        yield path
    finally:
        if old is None:
            os.environ.pop("MEMLOG_CACHE", None)
        else:
            os.environ["MEMLOG_CACHE"] = old


@pytest.fixture()
def store(tmp_path, base_store):
    """A private copy of the initialised store for one test."""
    path = tmp_path / "store"
    shutil.copytree(base_store, path)
    return path


def test_init_json(tmp_path, tiny_dir, capsys, monkeypatch):
    monkeypatch.setenv("MEMLOG_CACHE", str(tmp_path / "cache"))
    code, data, err = run(capsys, "init", "--store", tmp_path / "s", "--model", tiny_dir, "--layers", "1-2", "--format", "json")
    assert code == 0, err
    assert data["created"] is True and data["layers"] == [1, 2] and data["seq"] == 4  # header, 2 covariances, base PPL
    code, _, err = run(capsys, "init", "--store", tmp_path / "s", "--model", tiny_dir)
    assert code == 1 and "already holds" in err


def test_an_init_that_fails_after_creating_the_store_leaves_nothing_behind(tmp_path, tiny_dir, capsys, monkeypatch):
    """The base perplexity is read after the header is written: a failure there (here an
    unreadable reading) removes the half-made store, so the same ``init`` can be run again."""
    from memlog.engine.editor import MemitEditor

    monkeypatch.setenv("MEMLOG_CACHE", str(tmp_path / "cache"))
    base = ["init", "--store", tmp_path / "s", "--model", tiny_dir, "--layers", "1-2", "--format", "json"]
    with monkeypatch.context() as patch:
        patch.setattr(MemitEditor, "perplexity", lambda self: float("nan"))
        code, _, err = run(capsys, *base)
    assert code == 1 and "perplexity of the base model is nan" in err and not (tmp_path / "s").exists()
    (tmp_path / "s").mkdir()  # an existing empty directory is kept, only the store's files go
    (tmp_path / "s" / "notes.txt").write_text("mine")
    with monkeypatch.context() as patch:
        patch.setattr(MemitEditor, "perplexity", lambda self: float("inf"))
        code, _, err = run(capsys, *base)
    assert code == 1 and [p.name for p in (tmp_path / "s").iterdir()] == ["notes.txt"]
    code, data, err = run(capsys, *base)
    assert code == 0 and data["created"] is True, err


def test_init_records_the_sleep_and_protection_settings_and_refuses_unknown_ones(tmp_path, tiny_dir, capsys, monkeypatch):
    monkeypatch.setenv("MEMLOG_CACHE", str(tmp_path / "cache"))
    base = ["init", "--model", tiny_dir, "--layers", "1-2", "--format", "json"]
    code, _, err = run(capsys, *base, "--store", tmp_path / "bad", "--refresh-strategy", "rewrite")
    assert code == 1 and "unknown refresh strategy 'rewrite'" in err and not (tmp_path / "bad").exists()
    code, _, err = run(capsys, *base, "--store", tmp_path / "bad", "--wake", "constrained", "--protect", "paragraph")
    assert code == 1 and "unknown protected positions 'paragraph'" in err and not (tmp_path / "bad").exists()
    code, _, err = run(capsys, *base, "--store", tmp_path / "bad", "--protect-energy", "1.5")
    assert code == 1 and "--protect-energy must be in (0, 1]" in err and not (tmp_path / "bad").exists()
    for bad in ("-0.5", "inf"):
        code, _, err = run(capsys, *base, "--store", tmp_path / "bad", "--norm-penalty", bad)
        assert code == 1 and "--norm-penalty must be >= 0" in err and not (tmp_path / "bad").exists()
    code, _, err = run(capsys, *base, "--store", tmp_path / "bad", "--cov-samples", "0")
    assert code == 1 and "cov_samples >= 1" in err and not (tmp_path / "bad").exists()
    code, _, err = run(capsys, *base, "--store", tmp_path / "bad", "--cov-samples", "10000000")
    assert code == 1 and "10000000 samples of 64 tokens need" in err and not (tmp_path / "bad").exists()
    code, _, err = run(capsys, *base, "--store", tmp_path / "bad", "--cov-samples", "1")
    assert code == 1 and "63 keys cannot estimate a 128x128 key covariance" in err and "at least 3 windows" in err and not (tmp_path / "bad").exists()
    for bad in ("0", "-1", "inf", "nan"):
        code, _, err = run(capsys, *base, "--store", tmp_path / "bad", "--lam", bad)
        assert code == 1 and "--lam must be a positive, finite number" in err and not (tmp_path / "bad").exists()
    code, _, err = run(capsys, *base, "--store", tmp_path / "bad", "--v-stop", "never")
    assert code == 1 and "unknown v* stop 'never'" in err and not (tmp_path / "bad").exists()
    code, _, err = run(capsys, *base, "--store", tmp_path / "bad", "--ppl-budget", "-0.01")
    assert code == 1 and "--ppl-budget must be positive" in err and not (tmp_path / "bad").exists()
    code, _, err = run(capsys, *base, "--store", tmp_path / "s", "--refresh-strategy", "reinject", "--batch-refresh", "--protect", "object", "--protect-energy", "0.99", "--norm-penalty", "0.25", "--v-stop", "most-probable", "--ppl-budget", "0.01", "--ppl-bound", "0", "--cov-samples", "40", "--lam", "2500")
    assert code == 0, err
    assert _covariance_samples(tmp_path / "s") == {40}
    assert (_engine_settings(tmp_path / "s")["ppl_budget"], _engine_settings(tmp_path / "s")["ppl_bound"]) == (0.01, None)
    memit = _header_config(tmp_path / "s")["memit"]
    assert (memit["norm_penalty"], memit["v_stop"], memit["cov_samples"], memit["lam"]) == (0.25, "most-probable", 40, 2500.0)
    engine = _engine_settings(tmp_path / "s")
    assert (engine["refresh_strategy"], engine["batch_refresh"], engine["protect_positions"], engine["protect_energy"]) == ("reinject", True, "object", 0.99)
    # no --lam: 2 × the key dimension (the tiny model's MLP width, 128) with constrained wake, the
    # unconstrained value without it; the header records the number either way
    for wake, lam in (("constrained", 256.0), ("unconstrained", 10.0)):
        code, _, err = run(capsys, *base, "--store", tmp_path / wake, "--wake", wake, "--cov-samples", "40")
        assert code == 0, err
        assert _header_config(tmp_path / wake)["memit"]["lam"] == lam
    code, _, err = run(capsys, "sleep", "--store", tmp_path / "s", "--cycles", "1", "--protect-energy", "0")
    assert code == 1 and "--protect-energy must be in (0, 1]" in err
    code, _, err = run(capsys, "sleep", "--store", tmp_path / "s", "--cycles", "1", "--ppl-budget", "0")
    assert code == 1 and "--ppl-budget must be positive" in err
    code, _, err = run(capsys, *base, "--store", tmp_path / "d")
    assert code == 0, err
    engine = _engine_settings(tmp_path / "d")
    assert (engine["wake"], engine["refresh_strategy"], engine["batch_refresh"], engine["protect_positions"]) == ("constrained", "correct", False, "object")
    assert (engine["ppl_bound"], engine["ppl_budget"]) == (0.05, None)


def test_a_session_may_override_the_norm_penalty_but_not_the_edit_layers(store):
    from memlog.engine.open import open_memory

    mem = open_memory(store, memit_overrides={"norm_penalty": 0.5})
    try:
        assert mem.editor.config.norm_penalty == 0.5
        assert {factor.norm_penalty for factor in mem.editor.covariances.values()} == {0.5}
    finally:
        mem.close()
    assert _header_config(store)["memit"]["norm_penalty"] == 0.0  # the header keeps its setting
    with pytest.raises(UserError, match=r"MEMIT setting\(s\) \['layers'\] are fixed when a store is created"):
        open_memory(store, memit_overrides={"layers": (1,)})


def test_each_edit_records_the_settings_it_was_solved_with(store):
    """A session's overrides change how edits are solved; the log says which edits they touched."""
    from memlog.core.facts import Fact
    from memlog.analytics.views import run_sql
    from memlog.engine.open import open_memory
    from memlog.store.events import FactInjected

    overrides = {"memit_overrides": {"lam": 3000.0, "norm_penalty": 0.5, "v_stop": "most-probable"}, "engine_overrides": {"protect_energy": 0.9}}
    with open_memory(store, **overrides) as mem:
        mem.inject([Fact("Aria Nakamura", "lives in", "Thessaloniki")], audit=False)
        mem.inject([Fact("Bo Lindqvist", "lives in", "Valparaiso"), Fact("Cem Arslan", "lives in", "Tromso")], audit=False, batch_size=2)
    with open_memory(store) as mem:
        mem.inject([Fact("Dara Okafor", "lives in", "Cusco")], audit=False)
        injected = [e for e in mem.events() if isinstance(e, FactInjected)]
    assert [e.fact.subject for e in injected] == ["Aria Nakamura", "Bo Lindqvist", "Cem Arslan", "Dara Okafor"]
    overridden = {"wake": "constrained", "protect_positions": "object", "protect_energy": 0.9, "lam": 3000.0, "norm_penalty": 0.5, "v_stop": "most-probable"}
    assert [e.settings for e in injected[:3]] == [overridden] * 3  # one at a time and batched alike
    # the store's own λ: 2 × the tiny model's key dimension (128), the constrained-wake default
    assert injected[3].settings == {**overridden, "protect_energy": 1.0, "lam": 256.0, "norm_penalty": 0.0, "v_stop": "loss"}
    rows = run_sql(store, "SELECT subject, lam, norm_penalty, v_stop, protect_energy FROM edits ORDER BY created_seq")
    assert [tuple(r.values()) for r in rows] == [(e.fact.subject, e.settings["lam"], e.settings["norm_penalty"], e.settings["v_stop"], e.settings["protect_energy"]) for e in injected]


def _engine_settings(path) -> dict:
    """The engine settings a store's header records."""
    return _header_config(path)["engine"]


def _header_config(path) -> dict:
    from memlog.store.store import Store

    store = Store.open(path)
    try:
        return store.log.header().config
    finally:
        store.close()


def _covariance_samples(path) -> set[int]:
    """The sample counts the store's logged covariances were estimated from."""
    from memlog.store.store import Store

    store = Store.open(path)
    try:
        return {item.event.n_samples for item in store.log.read(kinds=["CovarianceComputed"])}
    finally:
        store.close()


def _event_count(capsys, store) -> int:
    code, events, _ = run(capsys, "log", "--store", store, "--format", "json")
    assert code == 0
    return len(events)


def test_init_status_inject_recall_replay(store, capsys):
    code, status, _ = run(capsys, "status", "--store", store, "--format", "json")
    assert code == 0
    for key in ("active_facts", "recall", "degraded", "pressure", "cycle", "seq", "model"):
        assert key in status
    assert status["active_facts"] == 0 and status["cycle"] == 0

    code, data, err = run(capsys, "inject", "Aria Nakamura", "lives in", "Porto", "--store", store, "--format", "json")
    assert code == 0, err
    assert set(data) >= {"facts", "seq"}
    assert set(data["facts"][0]) >= {"fact_id", "edit_id", "recalled"}
    assert data["facts"][0]["edit_id"] == "e00001"

    code, dup, _ = run(capsys, "inject", "Aria Nakamura", "lives in", "Porto", "--store", store, "--format", "json")
    assert code == 0 and dup["facts"][0]["status"] == "duplicate" and dup["seq"] == data["seq"]

    code, status, _ = run(capsys, "status", "--store", store, "--format", "json")
    assert status["active_facts"] == 1 and status["seq"] == data["seq"]
    assert status["pressure"] == pytest.approx(status["degraded"] / 1)

    code, rec, _ = run(capsys, "recall", "Aria Nakamura lives in", "--store", store, "--format", "json")
    assert code == 0 and set(rec) >= {"prompt", "completion", "seq"}
    code, rec0, _ = run(capsys, "recall", "Aria Nakamura lives in", "--at", "seq=1", "--store", store, "--format", "json")
    assert code == 0 and rec0["seq"] == 1

    code, rep, err = run(capsys, "replay", "--until", "head", "--verify", "--store", store, "--format", "json")
    assert code == 0, err
    assert rep["verified"] is True
    assert set(rep["facts"][0]) >= {"fact_id", "subject", "relation", "object", "active", "recalled", "recalled_now"}

    code, sl, err = run(capsys, "sleep", "--cycles", "1", "--store", store, "--format", "json")
    assert code == 0, err
    assert set(sl["cycles"][0]) >= {"cycle", "recall", "degraded", "refreshed", "pruned", "ppl_before", "ppl_after"}
    assert "converged" in sl

    code, rd, err = run(capsys, "replay", "--until", "cycle=1", "--diff", "cycle=0", "--store", store, "--format", "json")
    assert code == 0, err
    assert rd["cycle"] == 1 and "diff" in rd
    refreshed = sl["cycles"][0]["refreshed"] + sl["cycles"][0]["rolled_back"]
    assert rd["diff"]["summary"].get("refreshed", 0) == refreshed

    code, ver, _ = run(capsys, "verify", "--store", store, "--format", "json")
    assert code == 0 and ver == {"ok": True, "problems": [], "fingerprint_scope": "model", "notes": []}

    code, why, err = run(capsys, "why", "Aria Nakamura", "--from", "seq=1", "--to", "head", "--store", store, "--format", "json")
    assert code == 0, err
    assert why["fact_id"] == data["facts"][0]["fact_id"] and why["window"]["from_seq"] == 1
    assert why["history"][0]["kind"] == "FactInjected"
    replayed = [s["seq"] for s in why["steps"]]
    assert replayed[0] == 1 and replayed[1] == why["history"][0]["seq"]  # the start, then the injection
    code, head, _ = run(capsys, "replay", "--until", "head", "--verify", "--store", store, "--format", "json")
    assert code == 0 and why["window"]["recalled_to"] == head["facts"][0]["recalled_now"]
    code, _, err = run(capsys, "why", "Nobody Anywhere", "--store", store)
    assert code == 1 and "no fact" in err


def test_release_leaves_the_weights_and_status_counts_it(store, capsys):
    """``memlog release``: the fact stops being active, the weights' hash does not move, status
    counts it as released, and a second release of the same edit is refused (exit 1)."""
    code, data, err = run(capsys, "inject", "Aria Nakamura", "lives in", "Porto", "--store", store, "--format", "json")
    assert code == 0, err
    edit_id = data["facts"][0]["edit_id"]
    code, before, _ = run(capsys, "replay", "--until", "head", "--store", store, "--format", "json")
    code, rel, err = run(capsys, "release", edit_id, "--store", store, "--format", "json")
    assert code == 0 and rel["edit_id"] == edit_id and rel["seq"] > before["seq"], err
    code, after, _ = run(capsys, "replay", "--until", "head", "--store", store, "--format", "json")
    assert after["weights_sha256"] == before["weights_sha256"] and after["facts"][0]["active"] is False and after["facts"][0]["applied"] is True
    assert after["facts"][0]["released"] is True and before["facts"][0]["released"] is False
    code, status, _ = run(capsys, "status", "--store", store, "--format", "json")
    assert status["active_facts"] == 0 and status["released_facts"] == 1
    code, _, err = run(capsys, "release", edit_id, "--store", store)
    assert code == 1 and "does not hold an active fact" in err


def test_replay_verify_says_when_edits_came_after_the_audit_it_reran(store, capsys):
    """``--verify`` re-runs the latest audit at or before the point on that audit's weights. An
    inject without an audit after it changes the weights at head: the check still passes (the log
    is right), and a note says recall on head's own weights was not what it recomputed."""
    code, first, err = run(capsys, "inject", "Aria Nakamura", "lives in", "Porto", "--store", store, "--format", "json")
    assert code == 0, err
    code, rep, err = run(capsys, "replay", "--until", "head", "--verify", "--store", store, "--format", "json")
    assert code == 0 and rep["verified"] is True and rep["verify_audit_seq"] <= rep["seq"] and "verify_note" not in rep, err
    code, second, err = run(capsys, "inject", "Bruno Silva", "works as a", "baker", "--no-audit", "--store", store, "--format", "json")
    assert code == 0, err
    code, rep2, err = run(capsys, "replay", "--until", "head", "--verify", "--store", store, "--format", "json")
    assert code == 0 and rep2["verified"] is True, err
    assert rep2["verify_audit_seq"] == rep["verify_audit_seq"] < rep2["seq"]
    assert f"after the audit at seq {rep['verify_audit_seq']}" in rep2["verify_note"]
    assert [f.get("recalled_now") is None for f in rep2["facts"]] == [False, True]  # the second fact was not in the audit re-run
    assert main(["replay", "--until", "head", "--verify", "--store", str(store)]) == 0
    assert "not on the weights at this point" in " ".join(capsys.readouterr().out.split())  # the text output says it too


@pytest.mark.parametrize(
    "args, message",
    [
        (["inject", "  ", "lives in", "Porto"], "subject"),
        (["inject", "Aria", "lives in", "x" * 201], "200"),
        (["inject", "Aria", "lives in"], "SUBJECT RELATION OBJECT"),
        (["recall", "x", "--at", "cycle=7"], "cycle=7"),
        (["replay", "--until", "seq=999"], "past the head"),
        (["replay", "--until", "banana"], "cycle=N"),
        (["log", "--kind", "Nope"], "unknown --kind"),
        (["revert", "e09999"], "no edit"),
    ],
)
def test_bad_input_exits_1_and_writes_nothing(store, capsys, args, message):
    before = _event_count(capsys, store)
    code, _, err = run(capsys, *args, "--store", store)
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert message in last and last.startswith("error:")
    assert _event_count(capsys, store) == before


def test_bad_facts_file_writes_nothing(store, tmp_path, capsys):
    facts = tmp_path / "facts.jsonl"
    facts.write_text('{"subject": "A B", "relation": "lives in", "object": "Porto"}\n{"subject": "C", "relation": "lives in"}\n')
    before = _event_count(capsys, store)
    code, _, err = run(capsys, "inject", "--file", facts, "--store", store)
    assert code == 1 and "facts.jsonl:2" in err
    assert _event_count(capsys, store) == before


def test_missing_store_is_a_user_error(tmp_path, capsys):
    code, _, err = run(capsys, "status", "--store", tmp_path / "nowhere")
    assert code == 1 and "memlog init" in err


def test_second_writer_gets_locked_error_exit_2(store, capsys):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys,time; from memlog.store.store import Store; s=Store.open(sys.argv[1], writable=True); print('held', flush=True); time.sleep(30)", str(store)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = _event_count(capsys, store)
        code, _, err = run(capsys, "inject", "Aria Nakamura", "lives in", "Porto", "--store", store)
        assert code == 2 and f"PID {holder.pid}" in err
        assert _event_count(capsys, store) == before
    finally:
        holder.kill()
        holder.wait()


def test_different_base_model_exits_2(store, tiny_dir, capsys, embedded_tokenizer):
    make_tiny_llama(seed=1).save_pretrained(tiny_dir)  # the path the store was made for now holds another model
    try:
        code, _, err = run(capsys, "recall", "Aria Nakamura lives in", "--store", store)
        assert code == 2 and "fingerprint" in err
    finally:
        make_tiny_llama(seed=0).save_pretrained(tiny_dir)  # the module's other tests use the original


def test_verify_exits_2_naming_the_corrupt_edit(tmp_path, capsys):
    """A corrupted delta chunk: verify names the edit and exits 2 (no model needed to find it)."""
    from memlog.core.facts import Fact
    from tests.fakes import fake_memory

    mem = fake_memory(tmp_path / "s")
    mem.inject([Fact("Aria Nakamura", "lives in", "Porto"), Fact("Bo Lindqvist", "lives in", "Lyon")])
    mem.close()
    code, events, _ = run(capsys, "log", "--kind", "FactInjected", "--store", tmp_path / "s", "--format", "json")
    sha = events[1]["deltas"][0]["packed"]["sha256"]
    chunk = next(p for p in (tmp_path / "s" / "deltas.zarr").rglob("c.0.0") if sha in str(p))
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    code, report, _ = run(capsys, "verify", "--store", tmp_path / "s", "--format", "json")
    assert code == 2 and report["ok"] is False
    assert any(p.startswith(f"edit {events[1]['edit_id']} v1") and "[packed, seq" in p for p in report["problems"]), report


def test_export_is_a_plain_checkpoint_of_the_weights_at_the_point(store, tmp_path, capsys):
    """The exported model loads with transformers alone and its edit layers hash to what the log recorded."""
    from transformers import AutoModelForCausalLM

    from memlog.core.adapter import LayerAdapter
    from memlog.projections.weights import weights_sha256
    from memlog.replay.export import MANIFEST

    code, injected, err = run(capsys, "inject", "Aria Nakamura", "lives in", "Porto", "--store", store, "--format", "json")
    assert code == 0, err
    code, head, err = run(capsys, "export", "--out", tmp_path / "head", "--store", store, "--format", "json")
    assert code == 0, err
    code, base, err = run(capsys, "export", "--out", tmp_path / "base", "--at", "seq=1", "--store", store, "--format", "json")
    assert code == 0, err
    assert head["seq"] == injected["seq"] and head["weights_match_log"] is True and base["seq"] == 1
    assert [f["fact_id"] for f in head["facts"]] == [injected["facts"][0]["fact_id"]] and base["facts"] == []
    hashes = {}
    for name, doc in (("head", head), ("base", base)):
        model = AutoModelForCausalLM.from_pretrained(tmp_path / name)
        hashes[name] = weights_sha256(model, LayerAdapter.for_model(model), doc["edit_layers"])
        assert hashes[name] == doc["weights_sha256"]
        assert json.loads((tmp_path / name / MANIFEST).read_text())["seq"] == doc["seq"]
    assert hashes["head"] != hashes["base"]
    # the log's own record of the weights after the injection
    code, events, _ = run(capsys, "log", "--kind", "FactInjected", "--store", store, "--format", "json")
    assert events[-1]["weights_sha256"] == hashes["head"]


def test_export_refuses_a_used_directory_and_bad_points(store, tmp_path, capsys):
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    code, _, err = run(capsys, "export", "--out", used, "--store", store)
    assert code == 1 and "not empty" in err
    assert [p.name for p in used.iterdir()] == ["keep.txt"]
    code, _, err = run(capsys, "export", "--out", tmp_path / "new", "--at", "cycle=9", "--store", store)
    assert code == 1 and "cycle=9" in err
    assert not (tmp_path / "new").exists() and not any(p.name.startswith(".new") for p in tmp_path.iterdir())


def test_an_inject_over_the_stores_perplexity_budget_is_refused_and_writes_nothing(tmp_path, tiny_dir, capsys, monkeypatch):
    """Under ``--ppl-budget`` an inject reads perplexity with its edit applied; a reading over the
    budget refuses it (exit 1) and the log and the blobs stay as they were. (A MEMIT edit of the
    random tiny model lowers its perplexity, so the over-budget reading is patched in; the
    limit's arithmetic is tested on the fake editor in test_sleep_faults.py.)"""
    from memlog.engine.editor import MemitEditor

    monkeypatch.setenv("MEMLOG_CACHE", str(tmp_path / "cache"))
    code, data, err = run(capsys, "init", "--store", tmp_path / "s", "--model", tiny_dir, "--layers", "1-2", "--ppl-budget", "0.01", "--format", "json")
    assert code == 0, err
    files = sorted(str(p) for p in (tmp_path / "s").rglob("*") if p.is_file() and "log.duckdb" not in p.name)
    with monkeypatch.context() as patch:
        patch.setattr(MemitEditor, "perplexity", lambda self: 1e9)
        code, _, err = run(capsys, "inject", "Aria Nakamura", "lives in", "Porto", "--store", tmp_path / "s", "--format", "json")
    assert code == 1 and "the inject of Aria Nakamura lives in Porto would leave perplexity at 1000000000.0000, over the store's budget" in err
    code, status, err = run(capsys, "status", "--store", tmp_path / "s", "--format", "json")
    assert code == 0 and status["seq"] == data["seq"] and status["ledger_size"] == 0, err
    assert sorted(str(p) for p in (tmp_path / "s").rglob("*") if p.is_file() and "log.duckdb" not in p.name) == files
    code, out, err = run(capsys, "inject", "Aria Nakamura", "lives in", "Porto", "--store", tmp_path / "s", "--format", "json")
    assert code == 0, err  # the real reading (the edit lowers this random model's perplexity) is within the budget


def test_sleep_takes_lam_for_its_refreshes_and_refuses_a_bad_one(store, capsys):
    code, _, err = run(capsys, "sleep", "--store", store, "--cycles", "1", "--lam", "-5")
    assert code == 1 and "--lam must be a positive, finite number" in err
    code, _, err = run(capsys, "inject", "Aria Nakamura", "lives in", "Porto", "--store", store, "--format", "json")
    assert code == 0, err
    code, data, err = run(capsys, "sleep", "--store", store, "--cycles", "1", "--lam", "500", "--format", "json")
    assert code == 0, err
    code, rows, err = run(capsys, "sql", "SELECT version, lam FROM edits ORDER BY created_seq", "--store", store, "--format", "json")
    assert code == 0, err
    assert rows[0] == {"version": 1, "lam": 256.0}  # the inject: the store's λ (2 × the tiny model's key dimension)
    assert data["cycles"][0]["refreshed"] == len(rows) - 1 >= 1 and all(r["lam"] == 500.0 for r in rows[1:])  # the tiny model does not recall it: refreshed at 500
