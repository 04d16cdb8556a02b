"""The event-sourced store end to end on the embedded model, through the CLI.

1. init, inject 5 facts, revert one, "restart" (every CLI call is a fresh open of the store);
2. ``replay --until seq=N --verify --format json`` at three points gives ``verified: true``;
3. the restarted live weights are bit-identical to the weights before the restart (hash);
4. corrupting a delta chunk makes ``verify`` exit 2 naming the edit;
(A different base model is refused with exit 2: tests/test_cli_tiny.py.)
"""

from __future__ import annotations

import json
import shutil

import pytest

from memlog.cli.app import main
from memlog.core.pool import fact_pool

pytestmark = pytest.mark.real_model


def run(capsys, *args) -> tuple[int, dict | list | None, str]:
    code = main(list(args))
    out = capsys.readouterr()
    try:
        data = json.loads(out.out) if out.out.strip() else None
    except json.JSONDecodeError:
        data = None
    return code, data, out.err


@pytest.fixture(scope="module")
def populated_store(tmp_path_factory):
    """A store with 5 injected facts and one revert; returns (path, weights sha before restart)."""
    from memlog.engine.open import init_memory, open_memory
    from memlog.core.model import ModelSpec

    path = tmp_path_factory.mktemp("real") / "store"
    mem = init_memory(path, ModelSpec())
    try:
        mem.inject(fact_pool(5, seed=0))
        mem.revert("e00002")
        live_sha = mem.projector.weights_sha256()
    finally:
        mem.close(restore_base=False)
    # A restart: a fresh process-equivalent open rebuilds the weights from the log.
    mem = open_memory(path, writable=False)
    try:
        restarted_sha = mem.projector.weights_sha256()
        head = mem.head_seq
    finally:
        mem.close()
    return path, live_sha, restarted_sha, head


def test_restart_is_bit_identical(populated_store):
    _, live_sha, restarted_sha, _ = populated_store
    assert live_sha == restarted_sha


def test_replay_verify_at_three_points(populated_store, capsys):
    path, _, _, head = populated_store
    code, status, _ = run(capsys, "status", "--store", str(path), "--format", "json")
    assert code == 0 and status["active_facts"] == 5 and status["seq"] == head
    for seq in (head - 6, head - 2, head):
        code, data, err = run(capsys, "replay", "--until", f"seq={seq}", "--verify", "--store", str(path), "--format", "json")
        assert code == 0, err
        assert data["verified"] is True, data
        assert data["seq"] == seq
        assert all("recalled_now" in f for f in data["facts"] if f["recalled"] is not None)


def test_corrupt_delta_is_named_and_exits_2(populated_store, tmp_path, capsys):
    path, _, _, _ = populated_store
    copy = tmp_path / "corrupt"
    shutil.copytree(path, copy)
    code, events, _ = run(capsys, "log", "--kind", "FactInjected", "--store", str(copy), "--format", "json")
    assert code == 0
    target = events[2]
    first = target["deltas"][0]
    sha = (first.get("packed") or first["u"])["sha256"]
    chunks = [p for p in (copy / "deltas.zarr").rglob("*") if p.is_file() and sha in str(p) and p.name != "zarr.json"]
    assert chunks, "no chunk file found for the blob"
    data = bytearray(chunks[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunks[0].write_bytes(bytes(data))
    code, report, _ = run(capsys, "verify", "--store", str(copy), "--format", "json")
    assert code == 2
    assert report["ok"] is False
    assert any(target["edit_id"] in p for p in report["problems"]), report["problems"]


def test_exported_checkpoint_recalls_the_facts_without_memlog(populated_store, tmp_path, capsys):
    """``memlog export`` at the head: plain transformers greedy decoding recalls what the last audit recalled."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from memlog.core.recall import is_recalled

    path, live_sha, _, _ = populated_store
    code, doc, err = run(capsys, "export", "--out", str(tmp_path / "model"), "--store", str(path), "--format", "json")
    assert code == 0, err
    assert doc["weights_sha256"] == live_sha and doc["weights_match_log"] is True
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "model")
    # the reverted edit's fact has no edit in the weights; its last audit predates the revert
    assert [f["edit_id"] for f in doc["facts"] if not f["applied"]] == ["e00002"]
    audited = [f for f in doc["facts"] if f["recalled"] is not None and f["applied"]]
    assert len(audited) == 4
    for fact in audited:
        ids = tokenizer(f"{fact['subject']} {fact['relation']}", return_tensors="pt")
        out = model.generate(**ids, max_new_tokens=8, do_sample=False)
        completion = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        assert is_recalled(completion, fact["object"]) == fact["recalled"], (fact, completion)


def test_edited_fact_text_and_lost_last_event_are_detected(populated_store, tmp_path, capsys):
    """Tamper evidence on the embedded model's store: verify exits 2 naming the event, and
    inject refuses to write on top of it."""
    import duckdb

    path, _, _, head = populated_store
    for name, statements, expected in (
        ("edited", ["UPDATE events SET payload = replace(payload, '\"object\":\"', '\"object\":\"X') WHERE seq = (SELECT min(seq) FROM events WHERE kind = 'FactInjected')"], "does not match its link"),
        ("truncated", [f"DELETE FROM events WHERE seq = {head}", f"DELETE FROM chain WHERE seq = {head}"], f"but HEAD records seq {head}"),
    ):
        copy = tmp_path / name
        shutil.copytree(path, copy)
        with duckdb.connect(str(copy / "log.duckdb")) as conn:
            for sql in statements:
                conn.execute(sql)
        code, report, _ = run(capsys, "verify", "--store", str(copy), "--format", "json")
        assert code == 2 and any(expected in p for p in report["problems"]), report
        code, _, err = run(capsys, "inject", "Aria Nakamura", "lives in", "Porto", "--store", str(copy))
        assert code == 2 and "refusing to write" in err


def _replays_then_reverts_to(capsys, store, live_sha) -> None:
    """The consolidated head replays exactly; the revert gives back ``live_sha``, exactly."""
    code, now, _ = run(capsys, "replay", "--until", "head", "--store", str(store), "--format", "json")
    assert now["weights_match"] is True and now["weights_sha256"] != live_sha
    code, _, err = run(capsys, "consolidate", "--revert", "--store", str(store), "--format", "json")
    assert code == 0, err
    code, back, _ = run(capsys, "replay", "--until", "head", "--store", str(store), "--format", "json")
    assert back["weights_sha256"] == live_sha and back["weights_match"] is True


def test_consolidation_keeps_recall_and_reverts_exactly(populated_store, tmp_path, capsys):
    """``memlog consolidate`` on the embedded model: every fact's layer output within 1e-5, the same
    recall in an audit, exact replay before and after, and a revert back to the same bits."""
    path, live_sha, _, head = populated_store
    copy = tmp_path / "store"
    shutil.copytree(path, copy)
    code, before, err = run(capsys, "audit", "--store", str(copy), "--format", "json")
    assert code == 0, err
    code, data, err = run(capsys, "consolidate", "--store", str(copy), "--format", "json")
    assert code == 0, err
    assert data["members"] == 4 and all(r == 4 for r in data["rank"]) and data["max_output_change"] <= 1e-5
    code, after, err = run(capsys, "audit", "--store", str(copy), "--format", "json")
    assert code == 0, err
    assert [(r["recalled"], r["completion"]) for r in after["facts"]] == [(r["recalled"], r["completion"]) for r in before["facts"]]
    code, then, _ = run(capsys, "replay", "--until", f"seq={head}", "--store", str(copy), "--format", "json")
    assert then["weights_sha256"] == live_sha
    _replays_then_reverts_to(capsys, copy, live_sha)


def test_joint_re_solve_keeps_recall_and_reverts_exactly(populated_store, tmp_path, capsys):
    """``memlog consolidate --joint`` on the embedded model: the four applied facts re-solved as one
    MEMIT batch from the base weights with their stored targets keep every recall the sequential
    edits had, replay exactly, and the revert gives back the same bits."""
    path, live_sha, _, _ = populated_store
    copy = tmp_path / "store"
    shutil.copytree(path, copy)
    code, before, err = run(capsys, "audit", "--store", str(copy), "--format", "json")
    assert code == 0, err
    code, data, err = run(capsys, "consolidate", "--joint", "--store", str(copy), "--format", "json")
    assert code == 0, err
    assert data["method"] == "joint" and data["members"] == 4 and data["lam"] == 3072.0  # the constrained store's λ
    code, after, err = run(capsys, "audit", "--store", str(copy), "--format", "json")
    assert code == 0, err
    was = {r["fact_id"] for r in before["facts"] if r["recalled"]}
    assert was and was <= {r["fact_id"] for r in after["facts"] if r["recalled"]}
    _replays_then_reverts_to(capsys, copy, live_sha)
