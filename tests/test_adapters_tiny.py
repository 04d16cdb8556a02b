"""attach/detach and the PEFT adapter export on a tiny random Llama saved to a local path (fast).

The tiny model recalls nothing, so recall is compared through the completions themselves: the
adapter loaded with peft must complete every fact's prompt exactly as memlog's own audit did.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import memlog
from memlog.cli.app import main
from memlog.core.facts import Fact
from memlog.errors import ModelMismatchError, UserError
from tests.conftest import make_tiny_llama, save_tiny_model_dir

FACTS = [Fact("Aria Nakamura", "lives in", "Porto"), Fact("Bo Lindqvist", "lives in", "Lyon"), Fact("Cem Aydin", "works as", "pilot")]


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory, embedded_tokenizer):
    """A store on a tiny model dir: 3 injected facts, the second one reverted."""
    from memlog.core.model import ModelSpec
    from memlog.engine.open import init_memory

    root = tmp_path_factory.mktemp("adapters")
    model_dir = save_tiny_model_dir(root, embedded_tokenizer)
    mp = pytest.MonkeyPatch()
    mp.setenv("MEMLOG_CACHE", str(root / "cache"))
    try:
        mem = init_memory(root / "store", ModelSpec(model=str(model_dir)), layers=[1, 2])
        try:
            mem.inject(FACTS)
            mem.revert("e00002")
            head = mem.head_seq
        finally:
            mem.close()
        yield root / "store", model_dir, head
    finally:
        mp.undo()


def load_base(model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.eval()
    return model


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_attach_detach_round_trip_is_bit_exact(tiny_store):
    store, model_dir, head = tiny_store
    model = load_base(model_dir)
    before = snapshot(model)
    handle = memlog.attach(model, store)
    assert handle.seq == head and handle.active_facts == 3 and handle.weights_match_log is True
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed == ["model.layers.1.mlp.down_proj.weight", "model.layers.2.mlp.down_proj.weight"]
    with pytest.raises(UserError, match="already carries"):
        memlog.attach(model, store)
    handle.detach()
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)
    with pytest.raises(UserError, match="no memlog memory"):
        memlog.detach(model)


def test_attach_at_a_past_point_equals_memlog_replay(tiny_store):
    from memlog.engine.open import open_memory

    store, model_dir, head = tiny_store
    model = load_base(model_dir)
    handle = memlog.attach(model, store, at=f"seq={head - 3}")
    mem = open_memory(store, writable=False)
    try:
        with mem.weights_at(head - 3) as (_, _, sha):
            assert sha == handle.weights_sha256
            for layer in (1, 2):
                assert torch.equal(model.model.layers[layer].mlp.down_proj.weight, mem.editor.lm.model.model.layers[layer].mlp.down_proj.weight)
    finally:
        mem.close()
    memlog.detach(model)


def test_attach_refuses_another_base_model(tiny_store):
    store, _, _ = tiny_store
    other = make_tiny_llama(seed=1)
    before = snapshot(other)
    with pytest.raises(ModelMismatchError, match="fingerprint"):
        memlog.attach(other, store)
    assert all(torch.equal(other.state_dict()[k], before[k]) for k in before)
    assert not hasattr(other, "memlog_attachment")


def export(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else None), out.err


def test_peft_adapter_equals_the_projection_and_completes_like_the_audit(tiny_store, tmp_path, capsys):
    from peft import PeftModel

    from memlog.core.recall import object_tokens
    from memlog.engine.open import open_memory

    store, model_dir, head = tiny_store
    code, doc, err = export(capsys, "export", "--format", "peft", "--format", "json", "--out", tmp_path / "adapter", "--store", store)
    assert code == 0, err
    assert doc["format"] == "peft" and doc["seq"] == head and doc["weights_match_log"] is True
    assert set((tmp_path / "adapter").iterdir()) >= {tmp_path / "adapter" / n for n in ("adapter_config.json", "adapter_model.safetensors", "memlog-export.json")}
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["rank_pattern"] == config["alpha_pattern"]  # scaling alpha/r = 1 on every module
    tensors = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    # e00002 is reverted: two applied edits remain; each adds its factor columns to the layer's rank
    assert doc["adapter"]["ranks"] == {"1": tensors["base_model.model.model.layers.1.mlp.down_proj.lora_A.weight"].shape[0], "2": tensors["base_model.model.model.layers.2.mlp.down_proj.lora_A.weight"].shape[0]}

    peft_model = PeftModel.from_pretrained(load_base(model_dir), tmp_path / "adapter")
    peft_model.eval()
    mem = open_memory(store, writable=False)
    try:
        entries = mem.ledger.applied_entries()
        assert [e.edit_id for e in entries] == ["e00001", "e00003"]
        for layer in (1, 2):
            lora = peft_model.base_model.model.model.layers[layer].mlp.down_proj
            merged = lora.base_layer.weight + lora.get_delta_weight("default")
            projected = mem.projector.layer_sum(layer, entries)
            assert float(torch.linalg.norm(merged - projected) / torch.linalg.norm(projected)) < 1e-6
        audit = mem.editor.audit(FACTS)
    finally:
        mem.close()
    tok = mem.editor.lm.tokenizer
    new_tokens = max(object_tokens(mem.editor.lm, f.object) for f in FACTS) + 2  # as the audit decodes
    for fact, result in zip(FACTS, audit):
        ids = tok(fact.prompt, return_tensors="pt")
        out = peft_model.generate(**ids, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        assert tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True) == result.completion


def test_peft_max_rank_reports_the_truncation_error_and_its_cost(tiny_store, tmp_path, capsys):
    from memlog.adapters.lowrank import stacked_factors
    from memlog.engine.open import open_memory

    store, _, _ = tiny_store
    code, doc, err = export(capsys, "export", "--format", "peft", "--max-rank", "1", "--format", "json", "--out", tmp_path / "r1", "--store", store)
    assert code == 0, err
    adapter = doc["adapter"]
    assert adapter["ranks"] == {"1": 1, "2": 1} and adapter["full_ranks"]["1"] > 1
    tensors = load_file(tmp_path / "r1" / "adapter_model.safetensors")
    mem = open_memory(store, writable=False)
    try:
        for layer in (1, 2):
            full = stacked_factors(mem.ledger.applied_entries(), layer, mem.store.blobs.get).delta()
            prefix = f"base_model.model.model.layers.{layer}.mlp.down_proj"
            kept = tensors[f"{prefix}.lora_B.weight"] @ tensors[f"{prefix}.lora_A.weight"]
            measured = float(torch.linalg.norm(full - kept) / torch.linalg.norm(full))
            assert 0 < measured < 1 and measured == pytest.approx(adapter["relative_error"][str(layer)], rel=1e-4)
    finally:
        mem.close()
    assert set(adapter) >= {"recall_full", "recall_truncated", "facts_lost", "facts_gained"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "peft", "--format", "hf"], "at most one"),
        (["--format", "onnx"], "unknown --format"),
        (["--max-rank", "2"], "peft only"),
        (["--format", "peft", "--max-rank", "0"], "at least 1"),
        (["--format", "peft", "--at", "seq=1"], "nothing to export"),
    ],
)
def test_export_bad_requests_exit_1_and_write_nothing(tiny_store, tmp_path, capsys, args, message):
    store, _, _ = tiny_store
    code, _, err = export(capsys, "export", "--out", tmp_path / "x", *args, "--store", store)
    assert code == 1 and message in err
    assert not (tmp_path / "x").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".x.")]


def test_export_refuses_an_out_inside_the_store(tiny_store, capsys):
    store, _, _ = tiny_store
    for fmt in ("hf", "peft"):
        code, _, err = export(capsys, "export", "--format", fmt, "--out", store / "adapter", "--store", store)
        assert code == 1 and "inside the store" in err
        assert not (store / "adapter").exists()
