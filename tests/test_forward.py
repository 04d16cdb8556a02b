"""Partial forwards (memlog.core.forward) agree with the model's own full forward."""

from __future__ import annotations

import pytest
import torch

from memlog.core.forward import forward_until, position_ids_for, residual_at, run_from_layer


def _batch(tokenizer, texts, side):
    tokenizer.padding_side = side
    try:
        enc = tokenizer(texts, return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = "right"
    return enc["input_ids"], enc["attention_mask"]


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("start_layer", [0, 1, 3, 4])
def test_run_from_layer_matches_full_forward(tiny, side, start_layer):
    ids, mask = _batch(tiny.tokenizer, ["Aria Nakamura lives in", "The capital of France is a city that"], side)
    pos = position_ids_for(mask, tuple(ids.shape), ids.device)
    with torch.no_grad():
        full = tiny.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        if start_layer == 0:
            hidden = tiny.model.model.embed_tokens(ids)
        else:
            hidden = residual_at(tiny, ids, start_layer - 1, mask)
        partial = run_from_layer(tiny, hidden, start_layer, mask, pos)
    real = mask.bool()
    assert torch.allclose(partial[real], full[real], atol=1e-5, rtol=1e-5)


def test_run_from_layer_without_mask(tiny):
    ids = tiny.tokenizer(["Aria Nakamura lives in Thessaloniki"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        full = tiny.model(input_ids=ids).logits
        partial = run_from_layer(tiny, residual_at(tiny, ids, 1), 2)
    assert (partial - full).abs().max().item() < 1e-5


def test_fallback_path_matches(tiny, monkeypatch):
    """The hook-based fallback (for architectures without partial-forward support) agrees too."""
    ids, mask = _batch(tiny.tokenizer, ["Aria Nakamura lives in", "Hello"], "left")
    pos = position_ids_for(mask, tuple(ids.shape), ids.device)
    with torch.no_grad():
        full = tiny.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        hidden = residual_at(tiny, ids, 1, mask)
        monkeypatch.setattr(type(tiny.adapter), "supports_partial_forward", lambda self: False)
        partial = run_from_layer(tiny, hidden, 2, mask, pos)
    real = mask.bool()
    assert torch.allclose(partial[real], full[real], atol=1e-5, rtol=1e-5)


def test_forward_until_stops_early(tiny):
    seen: list[int] = []
    blocks = tiny.adapter.layers(tiny.model)
    hooks = [(block, lambda m, a, o, i=i: seen.append(i)) for i, block in enumerate(blocks)]
    ids = tiny.tokenizer(["a b c"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        forward_until(tiny, 1, ids, hooks=hooks)
    assert seen == [0, 1]


def test_gradients_flow_through_partial_forward(tiny):
    ids = tiny.tokenizer(["Aria Nakamura lives in"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hidden = residual_at(tiny, ids, 1)
    delta = torch.zeros(hidden.shape[-1], requires_grad=True)
    edited = hidden.clone()
    edited[0, 2] = edited[0, 2] + delta
    run_from_layer(tiny, edited, 2)[0, -1].logsumexp(-1).backward()
    assert delta.grad is not None and torch.isfinite(delta.grad).all() and delta.grad.abs().sum() > 0


def _right_padded(tiny, texts):
    ids, mask = _batch(tiny.tokenizer, texts, "right")
    return ids, mask.sum(1)


@pytest.mark.parametrize("force_full", [False, True])
def test_suffix_runner_matches_full_pass_with_an_edit(tiny, monkeypatch, force_full):
    """Editing the residual at each row's split and re-running only the suffix equals a full re-run."""
    from memlog.core import forward

    if force_full:
        monkeypatch.setattr(forward, "_suffix_supported", lambda lm: False)
    ids, lengths = _right_padded(tiny, ["Aria Nakamura lives in Thessaloniki", "Hi there", "The capital of France is a"])
    split = torch.tensor([2, 1, 4])
    with torch.no_grad():
        hidden = residual_at(tiny, ids, 1)
        runner = forward.SuffixRunner(tiny, hidden, 2, split, lengths)
        assert runner.partial is not force_full
        delta = torch.randn(3, hidden.shape[-1])
        edited = hidden.clone()
        edited[torch.arange(3), split] += delta
        full = forward.run_blocks(tiny, edited, 2)
        suffix_hidden = runner.gather(hidden)
        suffix_hidden[torch.arange(3), runner.suffix_col(torch.arange(3), split)] += delta
        out = runner.run(suffix_hidden)
    got = out[runner.valid]
    want = full[runner.rows, runner.cols][runner.valid]
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
