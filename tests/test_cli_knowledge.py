"""The CLI's templated inject, fact-file import and ``memlog eval`` on the tiny model."""

from __future__ import annotations

import json

from tests.test_cli_tiny import _event_count, base_store, run, store, tiny_dir  # noqa: F401  (fixtures)
from tests.test_knowledge import CF_RECORD, ZSRE_RECORD


def test_inject_with_a_prompt_template(store, capsys):
    code, data, err = run(
        capsys, "inject", "--prompt", "The mother tongue of {} is", "--subject", "Danielle Darrieux", "--object", "English",
        "--store", store, "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    fact_id = data["facts"][0]["fact_id"]
    code, audit, _ = run(capsys, "audit", "--store", store, "--format", "json")
    assert code == 0 and [r["prompt"] for r in audit["facts"] if r["fact_id"] == fact_id] == ["The mother tongue of Danielle Darrieux is"]


def test_bad_template_and_bad_record_write_nothing(store, capsys, tmp_path):
    before = _event_count(capsys, store)
    code, _, err = run(capsys, "inject", "--prompt", "The mother tongue of X is", "--subject", "X", "--object", "English", "--store", store)
    assert code == 1 and "no '{}' slot" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "inject", "--prompt", "{} of {}", "--subject", "X", "--object", "English", "--store", store)
    assert code == 1 and "2 '{}' slots" in err
    data = tmp_path / "cf.json"
    data.write_text(json.dumps([CF_RECORD, {**CF_RECORD, "subject": "Nobody"}]))
    code, _, err = run(capsys, "inject", "--file", data, "--store", store)
    assert code == 1 and "record 2" in err and "does not occur" in err
    assert _event_count(capsys, store) == before


def test_inject_counterfact_and_zsre_files(store, capsys, tmp_path):
    cf, zs = tmp_path / "cf.json", tmp_path / "zsre.json"
    cf.write_text(json.dumps([CF_RECORD]))
    zs.write_text(json.dumps([ZSRE_RECORD]))
    for path, fmt in ((cf, "auto"), (zs, "zsre")):
        code, data, err = run(capsys, "inject", "--file", path, "--file-format", fmt, "--no-audit", "--store", store, "--format", "json")
        assert code == 0 and data["facts"][0]["status"] == "injected", err
    code, log, _ = run(capsys, "log", "--store", store, "--kind", "FactInjected", "--format", "json")
    facts = [e["payload"]["fact"] if "payload" in e else e["fact"] for e in log]
    assert facts[-2]["relation"] == "The mother tongue of {} is" and facts[-2]["neighbours"][0]["answer"] == "French"
    assert facts[-1]["paraphrases"] == ["What will be the product of UniFirst?"]


def test_eval_json_result(store, capsys, tmp_path):
    data = tmp_path / "cf.json"
    data.write_text(json.dumps([CF_RECORD, {**CF_RECORD, "case_id": 1, "prompt": "Danielle Darrieux speaks", "target_new": "German"}]))
    out = tmp_path / "result.json"
    code, result, err = run(
        capsys, "eval", data, "--store", store, "--sample", "2", "--seed", "3", "--sequential", "--no-chat",
        "--out", out, "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    assert result["protocol"] == "sequential" and result["n"] == 2 and result["after"]["all"]["n"] == 2
    assert result["after"]["subject_first"]["n"] == 1 and result["after"]["subject_inside"]["n"] == 1
    full = json.loads(out.read_text())
    assert {r["case_id"] for r in full["rows"]} == {0, 1} and all(r["ES"] in (0.0, 1.0) for r in full["rows"])
    code, status, _ = run(capsys, "status", "--store", store, "--format", "json")
    assert status["active_facts"] >= 2  # --sequential wrote the edits into the store
