"""Partial forward passes: stop after a layer, or resume from a cached residual.

MEMIT reads activations in the first layers and optimises v* at the last edit layer.
Running the whole model for that wastes most of the work, so this module offers:

* ``forward_until``: run the model with hooks and stop right after block ``stop_layer``
  (any architecture: the stop is an exception raised from a forward hook);
* ``run_blocks`` / ``run_from_layer``: run blocks ``start_layer..end``, the final norm and
  (for ``run_from_layer``) the LM head, starting from a residual-stream tensor that is the
  *input* of block ``start_layer``. Llama-family models run the blocks directly, with
  rotary embeddings from the model's rotary module and a mask built by transformers'
  ``create_causal_mask`` for the model's attention implementation. Other architectures
  fall back to a full forward whose block ``start_layer`` input is replaced by a hook.

Position ids follow the attention mask (``cumsum - 1``), as ``generate`` does, so left-
and right-padded batches give the same numbers as unpadded prompts.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from memlog.core.model import LoadedModel


class _StopForward(Exception):
    """Raised from a hook to end a forward pass early."""


def position_ids_for(attention_mask: torch.Tensor | None, shape: tuple[int, int], device) -> torch.Tensor:
    """Positions that skip padding: ``cumsum(mask) - 1`` (0 on pads), or ``arange`` without a mask."""
    if attention_mask is None:
        return torch.arange(shape[1], device=device).unsqueeze(0).expand(shape[0], -1)
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def _first(output):
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def registered(handles_factory: Callable[[], list]):
    """Register hooks (the factory returns their handles) and remove them on exit."""
    handles = handles_factory()
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def forward_until(
    lm: LoadedModel,
    stop_layer: int,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    pre_hooks: Sequence[tuple[nn.Module, Callable]] = (),
    hooks: Sequence[tuple[nn.Module, Callable]] = (),
) -> None:
    """Run ``lm`` on ``input_ids`` with the given hooks; stop after block ``stop_layer``.

    ``pre_hooks`` are ``(module, fn(module, args))`` forward pre-hooks, ``hooks`` are
    ``(module, fn(module, args, output))`` forward hooks; they observe activations (their
    return value is ignored by convention). Nothing is returned: the hooks collect.
    """
    model = lm.model
    stop_block = lm.adapter.block(model, stop_layer)

    def stop(_module, _args, _output):
        raise _StopForward

    def register() -> list:
        out = [m.register_forward_pre_hook(fn) for m, fn in pre_hooks]
        out += [m.register_forward_hook(fn) for m, fn in hooks]
        out.append(stop_block.register_forward_hook(stop))  # last, so the block's own hooks run first
        return out

    position_ids = position_ids_for(attention_mask, tuple(input_ids.shape), input_ids.device)
    with registered(register):
        try:
            model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
        except _StopForward:
            pass


def residual_at(
    lm: LoadedModel, input_ids: torch.Tensor, layer: int, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The residual stream at the output of block ``layer`` (B, T, d_model)."""
    box: list[torch.Tensor] = []
    block = lm.adapter.block(lm.model, layer)
    forward_until(lm, layer, input_ids, attention_mask, hooks=[(block, lambda m, a, o: box.append(_first(o)))])
    return box[0]


def _causal_mask(model: nn.Module, hidden: torch.Tensor, attention_mask, position_ids):
    """The mask the model's own forward would build, for its attention implementation."""
    try:
        from transformers.masking_utils import create_causal_mask
    except ImportError:  # pragma: no cover - older transformers
        return _additive_mask(hidden, attention_mask)
    params = inspect.signature(create_causal_mask).parameters
    kwargs = {"config": model.config, "attention_mask": attention_mask}
    kwargs["inputs_embeds" if "inputs_embeds" in params else "input_embeds"] = hidden
    for name in ("cache", "past_key_values"):
        if name in params:
            kwargs[name] = None
    if "cache_position" in params:
        kwargs["cache_position"] = torch.arange(hidden.shape[1], device=hidden.device)
    if "position_ids" in params:
        kwargs["position_ids"] = position_ids
    return create_causal_mask(**kwargs)


def _additive_mask(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """A (B, 1, T, T) additive causal + padding mask (0 where allowed, dtype-min where not)."""
    batch, length = hidden.shape[:2]
    allowed = torch.ones(length, length, dtype=torch.bool, device=hidden.device).tril()
    allowed = allowed.expand(batch, 1, length, length)
    if attention_mask is not None:
        allowed = allowed & attention_mask.bool()[:, None, None, :]
    mask = torch.zeros(allowed.shape, dtype=hidden.dtype, device=hidden.device)
    return mask.masked_fill(~allowed, torch.finfo(hidden.dtype).min)


def _cache_kwarg(block: nn.Module) -> str | None:
    """The name under which this transformers version passes a KV cache to a decoder block."""
    params = inspect.signature(type(block).forward).parameters
    for name in ("cache", "past_key_values", "past_key_value"):
        if name in params:
            return name
    return None


def _call_blocks(lm, hidden, start_layer, mask, position_ids, cache=None):
    """Run blocks ``start_layer..end`` with a prepared mask (and optional duck-typed KV cache)."""
    model = lm.model
    blocks = lm.adapter.layers(model)
    position_embeddings = lm.adapter.rotary(model)(hidden, position_ids)
    for block in blocks[start_layer:]:
        extra = {}
        if cache is not None:
            extra[_cache_kwarg(block)] = cache
        hidden = _first(
            block(hidden, attention_mask=mask, position_ids=position_ids, position_embeddings=position_embeddings, **extra)
        )
    return lm.adapter.final_norm(model)(hidden)


def run_span(lm: LoadedModel, hidden: torch.Tensor, start_layer: int, stop_layer: int) -> torch.Tensor:
    """Blocks ``start_layer..stop_layer`` (inclusive) on a right-padded, unmasked batch whose
    ``hidden`` is the input of block ``start_layer``; returns block ``stop_layer``'s output.
    Llama family only (``adapter.supports_partial_forward()``); module hooks fire as usual."""
    model = lm.model
    position_ids = position_ids_for(None, tuple(hidden.shape[:2]), hidden.device)
    position_embeddings = lm.adapter.rotary(model)(hidden, position_ids)
    mask = _causal_mask(model, hidden, None, position_ids)
    for block in lm.adapter.layers(model)[start_layer : stop_layer + 1]:
        hidden = _first(block(hidden, attention_mask=mask, position_ids=position_ids, position_embeddings=position_embeddings))
    return hidden


def _run_blocks_llama(lm, hidden, start_layer, attention_mask, position_ids, cache=None):
    mask = _causal_mask(lm.model, hidden, attention_mask, position_ids)
    return _call_blocks(lm, hidden, start_layer, mask, position_ids, cache)


def _run_blocks_fallback(lm, hidden, start_layer, attention_mask, position_ids):
    """Full forward on dummy ids whose block ``start_layer`` input is replaced by ``hidden``."""
    model = lm.model
    box: list[torch.Tensor] = []

    def replace(_module, args, kwargs):
        if args:
            return (hidden, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": hidden}

    def capture(_module, _args, output):
        box.append(_first(output))
        raise _StopForward

    block = lm.adapter.block(model, start_layer)
    norm = lm.adapter.final_norm(model)
    dummy = torch.zeros(hidden.shape[:2], dtype=torch.long, device=hidden.device)
    with registered(lambda: [block.register_forward_pre_hook(replace, with_kwargs=True), norm.register_forward_hook(capture)]):
        try:
            model(input_ids=dummy, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
        except _StopForward:
            pass
    return box[0]


def run_blocks(
    lm: LoadedModel,
    hidden_states: torch.Tensor,
    start_layer: int,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Final-normed hidden states after running blocks ``start_layer..end`` on ``hidden_states``.

    ``hidden_states`` (B, T, d_model) is the input of block ``start_layer`` (the output of
    block ``start_layer - 1``); ``start_layer == num_layers`` applies only the final norm.
    """
    if position_ids is None:
        position_ids = position_ids_for(attention_mask, tuple(hidden_states.shape[:2]), hidden_states.device)
    if start_layer >= lm.adapter.num_layers(lm.model):
        return lm.adapter.final_norm(lm.model)(hidden_states)
    if lm.adapter.supports_partial_forward():
        return _run_blocks_llama(lm, hidden_states, start_layer, attention_mask, position_ids)
    return _run_blocks_fallback(lm, hidden_states, start_layer, attention_mask, position_ids)


def run_from_layer(
    lm: LoadedModel,
    hidden_states: torch.Tensor,
    start_layer: int,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits (B, T, vocab) of running blocks ``start_layer..end`` + final norm + LM head."""
    normed = run_blocks(lm, hidden_states, start_layer, attention_mask, position_ids)
    return lm.adapter.lm_head(lm.model)(normed)


class _PrefixKV:
    """A duck-typed KV cache for one pass: it records every block's keys/values (``record``) or
    serves the recorded ones in front of the new ones (``serve``); it never grows."""

    def __init__(self) -> None:
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}
        self.serving = False

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        if not self.serving:
            self.keys[layer_idx], self.values[layer_idx] = key_states.detach(), value_states.detach()
            return key_states, value_states
        keys = torch.cat([self.keys[layer_idx], key_states], dim=-2)
        return keys, torch.cat([self.values[layer_idx], value_states], dim=-2)


def _suffix_supported(lm: LoadedModel) -> bool:
    block = lm.adapter.block(lm.model, 0)
    implementation = getattr(lm.model.config, "_attn_implementation", None)
    return lm.adapter.supports_partial_forward() and implementation in ("sdpa", "eager") and _cache_kwarg(block) is not None


class SuffixRunner:
    """Re-run blocks ``start_layer..end`` on the tail of each row only.

    When a residual edit touches row ``r`` at position ``split[r]`` and later, earlier positions
    are unchanged at every later block, so only positions ``split[r]..lengths[r]-1`` (the
    *suffix*, right-padded to ``S``) need recomputing; their attention reads the earlier
    positions' keys/values recorded once from the unedited pass. Rows must be right-padded
    and need no attention mask (pads only follow real tokens).

    Where that is not possible (non-Llama blocks, flash/flex attention, or a transformers
    version whose blocks do not take a cache) or does not reproduce the unedited pass, the
    runner falls back to ``split = 0``: the suffix is the whole row and ``run`` is a plain
    ``run_blocks``. ``full_normed`` is the unedited output either way.
    """

    def __init__(self, lm: LoadedModel, hidden: torch.Tensor, start_layer: int, split: torch.Tensor, lengths: torch.Tensor):
        self.lm, self.start_layer = lm, start_layer
        batch, length = hidden.shape[:2]
        self._kv = _PrefixKV()
        partial = start_layer < lm.adapter.num_layers(lm.model) and _suffix_supported(lm)
        with torch.no_grad():
            position_ids = position_ids_for(None, (batch, length), hidden.device)
            if partial:
                self.full_normed = _run_blocks_llama(lm, hidden, start_layer, None, position_ids, cache=self._kv)
            else:
                self.full_normed = run_blocks(lm, hidden, start_layer)
        self.split = split if partial else torch.zeros_like(split)
        self._setup(hidden, lengths, length)
        if partial and not self._reproduces(hidden):
            self.split = torch.zeros_like(split)
            self._setup(hidden, lengths, length)

    def _setup(self, hidden: torch.Tensor, lengths: torch.Tensor, length: int) -> None:
        device = hidden.device
        self.partial = bool(self.split.any())
        width = int((lengths - self.split).max())
        offsets = torch.arange(width, device=device)
        self.cols = (self.split[:, None] + offsets[None, :]).clamp(max=length - 1)  # (B, S) absolute positions
        self.rows = torch.arange(hidden.shape[0], device=device)[:, None].expand_as(self.cols)
        self.valid = offsets[None, :] < (lengths - self.split)[:, None]  # (B, S) real suffix tokens
        if not self.partial:
            return
        self.position_ids = self.split[:, None] + offsets[None, :]
        prefix_ok = torch.arange(length, device=device)[None, None, :] < self.split[:, None, None]  # (B, 1, T)
        suffix_ok = (offsets[None, :] <= offsets[:, None])[None]  # (1, S, S) causal within the suffix
        allowed = torch.cat([prefix_ok.expand(-1, width, -1), suffix_ok.expand(hidden.shape[0], -1, -1)], dim=-1)
        mask = torch.zeros(allowed.shape, dtype=hidden.dtype, device=device)
        self.mask = mask.masked_fill(~allowed, torch.finfo(hidden.dtype).min)[:, None]  # (B, 1, S, T + S)

    def _reproduces(self, hidden: torch.Tensor) -> bool:
        with torch.no_grad():
            suffix = self.run(self.gather(hidden))
        reference = self.full_normed[self.rows, self.cols][self.valid]
        scale = reference.abs().max().clamp_min(1.0)
        tolerance = 1e-4 if reference.dtype in (torch.float32, torch.float64) else 5e-2
        return bool(((suffix[self.valid] - reference).abs().max() / scale) < tolerance)

    def gather(self, hidden: torch.Tensor) -> torch.Tensor:
        """The suffix positions (B, S, d) of a full (B, T, d) tensor."""
        return hidden[self.rows, self.cols]

    def suffix_col(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Map absolute positions (at or after each row's split) to suffix columns."""
        return cols - self.split[rows]

    def run(self, suffix_hidden: torch.Tensor) -> torch.Tensor:
        """Final-normed hidden states (B, S, d) of the suffix positions."""
        if not self.partial:
            return run_blocks(self.lm, suffix_hidden, self.start_layer)
        self._kv.serving = True
        try:
            return _call_blocks(self.lm, suffix_hidden, self.start_layer, self.mask, self.position_ids, self._kv)
        finally:
            self._kv.serving = False
