"""Recall: batched greedy completion and the word-boundary check of paper §4.5.

``complete`` is a deterministic greedy decoder over left-padded batches with a KV cache
(position ids follow the padding, the first step keeps only the last position's logits).
``is_recalled`` accepts a completion when, after surrounding whitespace, it starts with the
object at a word boundary, ignoring case and accents: " Porto" is not "Portohema" (nor the
reverse), "thessaloníki" counts as "Thessaloniki". Raw completion is the paper's measure;
``chat_audit`` asks through the chat template and accepts the object anywhere in the reply
at word boundaries.
"""

from __future__ import annotations

import inspect
import re
import unicodedata
from dataclasses import dataclass

import torch

from memlog.core.facts import Fact
from memlog.core.model import LoadedModel

CHAT_TEMPLATE = "Complete: {prompt}"
_JOINERS = "-'\u2019"  # a hyphen or apostrophe followed by a letter continues the word
_POSSESSIVE = re.compile(r"^['\u2019]s(?!\w)")


@dataclass(frozen=True)
class RecallResult:
    recalled: bool
    completion: str


def fold(text: str) -> str:
    """Case-, accent- and whitespace-insensitive form used for matching."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


def _ends_word(rest: str) -> bool:
    """Whether the text after a match starts at a word boundary."""
    if not rest:
        return True
    if _POSSESSIVE.match(rest):
        return True
    first = rest[0]
    if first.isalnum() or first == "_":
        return False
    return not (first in _JOINERS and len(rest) > 1 and rest[1].isalnum())


def is_recalled(completion: str, obj: str) -> bool:
    """True when ``completion`` starts with ``obj`` at a word boundary (case, accents and
    surrounding whitespace ignored)."""
    text, target = fold(completion), fold(obj)
    return bool(target) and text.startswith(target) and _ends_word(text[len(target) :])


def mentions(text: str, obj: str) -> bool:
    """True when ``obj`` occurs anywhere in ``text`` as whole words (same folding)."""
    folded, target = fold(text), fold(obj)
    if not target:
        return False
    start = folded.find(target)
    while start >= 0:
        before_ok = start == 0 or not (folded[start - 1].isalnum() or folded[start - 1] == "_")
        if before_ok and _ends_word(folded[start + len(target) :]):
            return True
        start = folded.find(target, start + 1)
    return False


def _cache_kwarg(model) -> str:
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _left_pad(rows: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids.to(device), mask.to(device)


def _greedy(lm: LoadedModel, rows: list[list[int]], max_new_tokens: int) -> list[list[int]]:
    """Greedy continuation of already-tokenised prompts (one left-padded batch)."""
    model, tok = lm.model, lm.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    ids, mask = _left_pad(rows, pad_id, lm.device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache_name, cache = _cache_kwarg(model), None
    generated = []
    done = torch.zeros(len(rows), dtype=torch.bool, device=lm.device)
    step_ids = ids
    for _ in range(max_new_tokens):
        out = model(input_ids=step_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1, **{cache_name: cache})
        cache = out.get("cache", None)
        if cache is None:
            cache = out.get("past_key_values", None)
        token = out.logits[:, -1].argmax(-1)
        if tok.eos_token_id is not None:
            token = torch.where(done, torch.full_like(token, pad_id), token)
            done |= token == tok.eos_token_id
        generated.append(token)
        if bool(done.all()):
            break
        step_ids = token[:, None]
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        positions = positions[:, -1:] + 1
    return torch.stack(generated, dim=1).tolist()


def _decode(tok, tokens: list[int]) -> str:
    if tok.eos_token_id is not None and tok.eos_token_id in tokens:
        tokens = tokens[: tokens.index(tok.eos_token_id)]
    return tok.decode(tokens, skip_special_tokens=True)


def _complete_ids(lm: LoadedModel, rows: list[list[int]], max_new_tokens: int, batch_size: int) -> list[str]:
    """Decode greedy continuations; prompts are batched by length (the result keeps input order)."""
    order = sorted(range(len(rows)), key=lambda i: (len(rows[i]), i))
    texts: list[str | None] = [None] * len(rows)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            outputs = _greedy(lm, [rows[i] for i in chunk], max_new_tokens)
            for i, tokens in zip(chunk, outputs):
                texts[i] = _decode(lm.tokenizer, tokens)
    return texts  # type: ignore[return-value]


def complete(lm: LoadedModel, prompts: list[str], max_new_tokens: int = 8, batch_size: int = 64) -> list[str]:
    """Greedy raw completions of ``prompts`` (deterministic; special tokens dropped)."""
    if not prompts:
        return []
    if max_new_tokens < 1:
        return [""] * len(prompts)
    rows = [list(lm.tokenizer(p)["input_ids"]) for p in prompts]
    return _complete_ids(lm, rows, max_new_tokens, batch_size)


def object_tokens(lm: LoadedModel, obj: str) -> int:
    return len(lm.tokenizer(" " + obj, add_special_tokens=False)["input_ids"])


def audit(lm: LoadedModel, facts: list[Fact], max_new_tokens: int | None = None, batch_size: int = 64) -> list[RecallResult]:
    """Raw-completion recall of each fact (paper §4.5); ``max_new_tokens`` defaults to the longest
    object's token count + 2."""
    if not facts:
        return []
    if max_new_tokens is None:
        max_new_tokens = max(object_tokens(lm, f.object) for f in facts) + 2
    completions = complete(lm, [f.prompt for f in facts], max_new_tokens, batch_size)
    return [RecallResult(is_recalled(c, f.object), c) for f, c in zip(facts, completions)]


def chat_prompt(lm: LoadedModel, prompt: str) -> list[int]:
    """Token ids of ``prompt`` asked through the tokenizer's chat template."""
    messages = [{"role": "user", "content": CHAT_TEMPLATE.format(prompt=prompt)}]
    text = lm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return list(lm.tokenizer(text, add_special_tokens=False)["input_ids"])


def chat_complete(lm: LoadedModel, prompts: list[str], max_new_tokens: int = 24, batch_size: int = 32) -> list[str]:
    """Greedy replies when each prompt is asked as "Complete: {prompt}" through the chat template."""
    if not prompts:
        return []
    if max_new_tokens < 1:
        return [""] * len(prompts)
    return _complete_ids(lm, [chat_prompt(lm, p) for p in prompts], max_new_tokens, batch_size)


def chat_audit(lm: LoadedModel, facts: list[Fact], max_new_tokens: int = 24, batch_size: int = 32) -> list[RecallResult]:
    """Chat-template recall: the reply mentions the object as whole words."""
    replies = chat_complete(lm, [f.prompt for f in facts], max_new_tokens, batch_size)
    return [RecallResult(mentions(r, f.object), r) for f, r in zip(facts, replies)]
