"""The base-model fingerprint covers every weight, is cached by file identity, and older
stores with the edit-layer fingerprint still open (and say so in verify)."""

from __future__ import annotations

import json
import os

import pytest
import torch

from memlog.core.fingerprint import cached_model_fingerprint, is_whole_model, model_fingerprint
from memlog.core.model import ModelSpec, fingerprint, load_model
from tests.conftest import make_tiny_llama
from tests.test_cli_tiny import base_store, run, store, tiny_dir  # noqa: F401  (fixtures)


def _count_events(capsys, store) -> int:
    code, events, _ = run(capsys, "log", "--store", store, "--format", "json")
    assert code == 0
    return len(events)


def _scale_outside_edit_layers(model) -> None:
    """What the probe did: embeddings, layer 0's MLP, layer 3's attention and an up_proj, ×1.5
    (the store's edit layers are 1-2, so the older fingerprint saw none of it)."""
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(1.5)
        model.model.layers[0].mlp.down_proj.weight.mul_(1.5)
        model.model.layers[3].self_attn.q_proj.weight.mul_(1.5)
        model.model.layers[1].mlp.up_proj.weight.mul_(1.5)


@pytest.mark.parametrize(
    "args",
    [["recall", "Aria Nakamura lives in"], ["verify"], ["inject", "Aria Nakamura", "lives in", "Porto"], ["replay", "--until", "head"], ["audit"]],
    ids=lambda a: a[0],
)
def test_a_changed_weight_outside_the_edit_layers_exits_2(store, tiny_dir, capsys, args):  # noqa: F811
    model = make_tiny_llama(seed=0)
    _scale_outside_edit_layers(model)
    model.save_pretrained(tiny_dir)
    try:
        before = _count_events(capsys, store)
        code, data, err = run(capsys, *args, "--store", store, "--format", "json")
        assert code == 2
        message = err if args[0] != "verify" else " ".join(data["problems"])
        assert "fingerprint" in message and "model-sha256:" in message
        assert _count_events(capsys, store) == before
    finally:
        make_tiny_llama(seed=0).save_pretrained(tiny_dir)


def test_new_stores_record_the_whole_model_fingerprint(store, capsys):  # noqa: F811
    code, status, _ = run(capsys, "status", "--store", store, "--format", "json")
    assert code == 0 and is_whole_model(status["fingerprint"])
    code, ver, _ = run(capsys, "verify", "--store", store, "--format", "json")
    assert code == 0 and ver["fingerprint_scope"] == "model" and ver["notes"] == []


def test_cache_is_keyed_by_file_identity(tmp_path, monkeypatch, embedded_tokenizer):
    monkeypatch.setenv("MEMLOG_CACHE", str(tmp_path / "cache"))
    model_dir = tmp_path / "model"
    make_tiny_llama(seed=0).save_pretrained(model_dir)
    embedded_tokenizer.save_pretrained(model_dir)
    lm = load_model(ModelSpec(model=str(model_dir)))
    first = cached_model_fingerprint(lm)
    assert first == model_fingerprint(lm.model)
    cached = list((tmp_path / "cache" / "fingerprints").glob("*.json"))
    assert len(cached) == 1
    # A second call reads the cache: a planted value comes back without hashing.
    data = json.loads(cached[0].read_text())
    data["fingerprint"] = "model-sha256:planted"
    cached[0].write_text(json.dumps(data))
    assert cached_model_fingerprint(lm) == "model-sha256:planted"
    # Rewriting the weights file (same size, new content, new mtime) is a new identity.
    other = make_tiny_llama(seed=0)
    with torch.no_grad():
        other.model.norm.weight.mul_(1.5)
    other.save_pretrained(model_dir)
    weights = next(model_dir.glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000))
    lm2 = load_model(ModelSpec(model=str(model_dir)))
    assert cached_model_fingerprint(lm2) == model_fingerprint(lm2.model) != first


def test_old_style_store_opens_and_verify_says_it_is_narrower(tmp_path, capsys, monkeypatch, tiny):
    """A store whose header holds the edit-layer fingerprint (as memlog wrote before)."""
    import memlog.engine.open as open_module
    from memlog.engine.open import init_memory, open_memory
    from memlog.errors import ModelMismatchError

    monkeypatch.setenv("MEMLOG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(open_module, "cached_model_fingerprint", lambda lm: fingerprint(lm.model, lm.adapter, [1, 2], "tiny-llama"))
    path = tmp_path / "old"
    init_memory(path, ModelSpec(model="tiny-llama"), layers=[1, 2], lm=tiny).close()
    monkeypatch.undo()
    mem = open_memory(path, lm=tiny, writable=False)
    assert not is_whole_model(mem.header.fingerprint) and mem.header.fingerprint.startswith("sha256:")
    mem.close()
    # The narrow fingerprint still catches a change to an edit layer's MLP output weights.
    weight = tiny.model.model.layers[1].mlp.down_proj.weight
    original = weight.detach().clone()
    with torch.no_grad():
        weight.mul_(1.5)
    with pytest.raises(ModelMismatchError):
        open_memory(path, lm=tiny, writable=False)
    with torch.no_grad():
        weight.copy_(original)
    monkeypatch.setattr(open_module, "load_model", lambda spec: tiny)
    code, ver, err = run(capsys, "verify", "--store", path, "--format", "json")
    assert code == 0, err
    assert ver["fingerprint_scope"] == "edit-layers" and "older, narrower" in ver["notes"][0]


def test_real_model_fingerprint_sees_a_weight_outside_the_edit_layers(real_model):
    base = model_fingerprint(real_model.model)
    embed = real_model.model.model.embed_tokens.weight
    with torch.no_grad():
        old = embed[7, 3].item()
        embed[7, 3] = old * 1.5
    try:
        changed = model_fingerprint(real_model.model)
    finally:
        with torch.no_grad():
            embed[7, 3] = old
    assert changed != base and model_fingerprint(real_model.model) == base
    assert is_whole_model(base)
