"""Perplexity over the fixed reference slice (``memlog.core.corpus.perplexity_text``).

The slice is tokenised without special tokens, cut to ``max_tokens`` and split into
non-overlapping windows of ``window`` tokens; every token but the first of each window is
scored. Windows of equal length run as one batch (the last, shorter one on its own), the
NLL is summed in float64, and the result is ``exp(mean NLL)`` with the number of scored
tokens. Deterministic for a given model, text and settings.
"""

from __future__ import annotations

import math

import torch

from memlog.core.corpus import perplexity_text
from memlog.core.model import LoadedModel
from memlog.errors import UserError


def _windows(ids: list[int], window: int) -> list[list[int]]:
    chunks = [ids[i : i + window] for i in range(0, len(ids), window)]
    return [c for c in chunks if len(c) >= 2]


def _window_nll(lm: LoadedModel, batch: list[list[int]]) -> float:
    ids = torch.tensor(batch, dtype=torch.long, device=lm.device)
    logits = lm.model(input_ids=ids, use_cache=False).logits[:, :-1].float()
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="sum")
    return float(nll.double())


def perplexity(
    lm: LoadedModel, text: str | None = None, max_tokens: int = 2048, window: int = 512, batch_size: int = 4
) -> tuple[float, int]:
    """(perplexity, scored tokens) of ``text`` (default: the corpus's perplexity slice)."""
    if window < 2 or max_tokens < 2:
        raise UserError("perplexity needs window >= 2 and max_tokens >= 2")
    text = perplexity_text() if text is None else text
    ids = list(lm.tokenizer(text, add_special_tokens=False)["input_ids"])[:max_tokens]
    chunks = _windows(ids, window)
    if not chunks:
        raise UserError("the perplexity text is too short (fewer than 2 tokens)")
    total, count = 0.0, 0
    with torch.no_grad():
        full = [c for c in chunks if len(c) == window]
        for start in range(0, len(full), batch_size):
            total += _window_nll(lm, full[start : start + batch_size])
        for chunk in (c for c in chunks if len(c) != window):
            total += _window_nll(lm, [chunk])
    count = sum(len(c) - 1 for c in chunks)
    return math.exp(total / count), count
