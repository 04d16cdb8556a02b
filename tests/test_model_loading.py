"""Model loading and the layer adapter: local paths, errors, GPT-2 and Llama tables, the embedded model."""

from __future__ import annotations

import pytest
import torch

from memlog.core.adapter import ARCHITECTURES, LayerAdapter
from memlog.core.model import ModelSpec, fingerprint, load_model, parse_layers
from memlog.errors import UserError
from tests.conftest import make_tiny_llama


def test_tiny_model_loads_from_a_local_path(tmp_path, embedded_tokenizer):
    model = make_tiny_llama(seed=3)
    model.save_pretrained(tmp_path)
    embedded_tokenizer.save_pretrained(tmp_path)
    lm = load_model(ModelSpec(model=str(tmp_path)))
    assert lm.adapter.model_type == "llama"
    assert lm.source == str(tmp_path)
    for layer in range(4):
        assert torch.equal(lm.adapter.edit_weight_view(lm.model, layer), model.model.layers[layer].mlp.down_proj.weight)
    assert fingerprint(lm.model, lm.adapter, [1, 2], "x") == fingerprint(model, LayerAdapter.for_model(model), [1, 2], "x")
    assert fingerprint(lm.model, lm.adapter, [1, 2], "x") != fingerprint(lm.model, lm.adapter, [1, 3], "x")


def test_adapter_on_llama_and_gpt2_configs():
    from transformers import GPT2Config, GPT2LMHeadModel

    llama = make_tiny_llama(vocab=256)
    a = LayerAdapter.for_model(llama)
    w = a.edit_weight_view(llama, 1)
    assert w.shape == (64, 128)  # (d_out = hidden, d_in = MLP width)
    assert a.mlp_out(llama, 1) is llama.model.layers[1].mlp.down_proj
    assert a.final_norm(llama) is llama.model.norm and a.lm_head(llama) is llama.lm_head

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=128, n_positions=64))
    g = LayerAdapter.for_model(gpt2)
    view = g.edit_weight_view(gpt2, 0)
    assert view.shape == (32, 128)  # Conv1D stores (d_in, d_out); the view is (d_out, d_in)
    assert view.data_ptr() == gpt2.transformer.h[0].mlp.c_proj.weight.data_ptr()
    with torch.no_grad():
        view[0, 0] = 7.0
    assert gpt2.transformer.h[0].mlp.c_proj.weight[0, 0] == 7.0
    assert g.final_norm(gpt2) is gpt2.transformer.ln_f


def test_unsupported_architecture_lists_supported():
    with pytest.raises(UserError) as info:
        LayerAdapter.for_model_type("mamba")
    for name in ARCHITECTURES:
        assert name in str(info.value)


def test_layer_out_of_range_is_a_clear_error():
    llama = make_tiny_llama(vocab=256)
    with pytest.raises(UserError, match="out of range"):
        LayerAdapter.for_model(llama).edit_weight_view(llama, 9)


def test_load_in_4bit_without_cuda_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the error path is for machines without it")
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        load_model(ModelSpec(model=str(tmp_path), load_in_4bit=True))


def test_unknown_model_offline_says_how_to_use_a_local_path(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match="local path"):
        load_model(ModelSpec(model="no-such-org/no-such-model-xyz"))


def test_bad_dtype_and_device():
    with pytest.raises(UserError, match="dtype"):
        load_model(ModelSpec(dtype="int3"))
    with pytest.raises(UserError, match="device"):
        load_model(ModelSpec(device="tpu"))


def test_parse_layers():
    assert parse_layers("2-9") == list(range(2, 10))
    assert parse_layers("3,1,2") == [1, 2, 3]
    for bad in ("9-2", "a-b", ""):
        with pytest.raises(UserError):
            parse_layers(bad)


@pytest.mark.real_model
def test_embedded_model_completes_paris(real_model):
    tok = real_model.tokenizer
    ids = tok("The capital of France is", return_tensors="pt")
    out = real_model.model.generate(**ids, max_new_tokens=3, do_sample=False)
    completion = tok.decode(out[0, ids.input_ids.shape[1]:])
    assert completion.startswith(" Paris"), completion
    assert real_model.adapter.num_layers(real_model.model) == 30
    assert real_model.adapter.edit_weight_view(real_model.model, 4).shape == (576, 1536)
