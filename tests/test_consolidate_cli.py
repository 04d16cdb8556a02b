"""``memlog consolidate`` end to end on a tiny random Llama store (real MEMIT edits): the JSON
contract of docs/CLI.md, exact replay and revert, and bad input (exit 1, nothing written)."""

from __future__ import annotations

from tests.test_cli_tiny import base_store, run, store, tiny_dir  # noqa: F401 (fixtures)


def _events(capsys, store) -> list[dict]:
    code, events, _ = run(capsys, "log", "--store", store, "--format", "json")
    assert code == 0
    return events


def test_consolidate_revert_and_replay(store, tmp_path, capsys):  # noqa: F811
    n = len(_events(capsys, store))
    code, _, err = run(capsys, "consolidate", "--store", store)
    assert code == 1 and err.strip().splitlines()[-1] == "error: nothing to consolidate: 0 applied edit(s); consolidation needs at least 2"
    code, _, err = run(capsys, "consolidate", "--id", "c00001", "--store", store)
    assert code == 1 and "--id names a consolidation to revert" in err
    assert len(_events(capsys, store)) == n
    facts = tmp_path / "facts.jsonl"
    facts.write_text("".join(f'{{"subject": "Person{i} Example", "relation": "lives in", "object": "City{i}"}}\n' for i in range(3)))
    code, _, err = run(capsys, "inject", "--file", facts, "--no-audit", "--store", store, "--format", "json")
    assert code == 0, err
    code, before, _ = run(capsys, "replay", "--until", "head", "--store", store, "--format", "json")
    code, data, err = run(capsys, "consolidate", "--store", store, "--format", "json")
    assert code == 0, err
    assert data["consolidation_id"] == "c00001" and data["members"] == 3 and data["columns"] == [3, 3] and data["rank"] == [3, 3]
    assert 0 < data["max_output_change"] <= 1e-5
    code, head, _ = run(capsys, "replay", "--until", "head", "--store", store, "--format", "json")
    assert head["weights_match"] is True and head["weights_sha256"] != before["weights_sha256"]
    code, then, _ = run(capsys, "replay", "--until", f"seq={before['seq']}", "--store", store, "--format", "json")
    assert then["weights_sha256"] == before["weights_sha256"]
    code, back, err = run(capsys, "consolidate", "--revert", "--store", store, "--format", "json")
    assert code == 0 and back["consolidation_id"] == "c00001", err
    code, now, _ = run(capsys, "replay", "--until", "head", "--store", store, "--format", "json")
    assert now["weights_sha256"] == before["weights_sha256"] and now["weights_match"] is True
    assert [e["kind"] for e in _events(capsys, store)[-2:]] == ["Consolidated", "ConsolidationReverted"]
    code, _, err = run(capsys, "consolidate", "--revert", "--id", "c00001", "--store", store)
    assert code == 1 and "no active consolidation 'c00001'" in err
    code, ver, _ = run(capsys, "verify", "--store", store, "--format", "json")
    assert code == 0 and ver["ok"] is True
