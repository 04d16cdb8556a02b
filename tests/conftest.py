"""Shared fixtures: a tiny random Llama (milliseconds) and the real embedded model (one per session)."""

from __future__ import annotations

import os

import pytest
import torch

from memlog.core.adapter import LayerAdapter
from memlog.core.model import EMBEDDED, LoadedModel, ModelSpec, ensure_embedded_cache, load_model

torch.set_num_threads(min(2, os.cpu_count() or 1))


def make_tiny_llama(seed: int = 0, layers: int = 4, hidden: int = 64, intermediate: int = 128, vocab: int | None = None, dtype=torch.float32):
    """A randomly initialised Llama with the embedded tokenizer's vocabulary."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab or 49152,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    model = LlamaForCausalLM(config).to(dtype)
    model.eval()
    model.requires_grad_(False)
    return model


def save_tiny_model_dir(root, tokenizer, seed: int = 0):
    """A tiny random Llama saved with the embedded tokenizer under ``root/model``, loadable by
    ``ModelSpec(model=str(path))``; returns the directory."""
    model_dir = root / "model"
    make_tiny_llama(seed=seed).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir


@pytest.fixture(scope="session")
def embedded_tokenizer():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(ensure_embedded_cache()))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


@pytest.fixture()
def tiny(embedded_tokenizer) -> LoadedModel:
    model = make_tiny_llama()
    return LoadedModel(
        model=model,
        tokenizer=embedded_tokenizer,
        adapter=LayerAdapter.for_model(model),
        model_id="tiny-llama",
        source="test",
        spec=ModelSpec(model="tiny-llama"),
    )


@pytest.fixture(scope="session")
def real_model() -> LoadedModel:
    """The embedded SmolLM2-135M, loaded once per test session. Tests must restore any weights they change."""
    return load_model(ModelSpec(model=EMBEDDED))
