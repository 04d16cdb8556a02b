"""Text generation for the server: one prompt, token by token, on the serving snapshot.

``generate`` holds the snapshot's lock for the whole generation (one consistent set of
weights) and yields ``Piece``s: the new text of each step, then a final piece with the
finish reason (``stop`` at end-of-sequence or a stop string, ``length`` at ``max_tokens``).
Temperature 0 decodes greedily (deterministic); above 0 it samples, seeded by ``seed`` when
given, with optional nucleus (``top_p``) filtering.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from memlog.core.model import LoadedModel


@dataclass(frozen=True)
class Sampling:
    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class Piece:
    text: str
    finish_reason: str | None = None
    completion_tokens: int = 0


def chat_ids(lm: LoadedModel, messages: list[dict], continue_final: bool = False) -> list[int]:
    """Token ids of a conversation through the tokenizer's chat template (plain role lines without one).

    With ``continue_final`` the last (assistant) message is left open, so the reply continues it.
    """
    tok = lm.tokenizer
    if getattr(tok, "chat_template", None):
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=not continue_final, continue_final_message=continue_final)
        return list(tok(text, add_special_tokens=False)["input_ids"])
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    text = "\n".join(lines) if continue_final else "".join(line + "\n" for line in lines) + "assistant:"
    return list(tok(text)["input_ids"])


def prompt_ids(lm: LoadedModel, prompt: str) -> list[int]:
    return list(lm.tokenizer(prompt)["input_ids"])


def _pick(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None) -> int:
    if sampling.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        ordered, index = torch.sort(probs, descending=True)
        keep = torch.cumsum(ordered, dim=-1) - ordered < sampling.top_p
        probs = torch.zeros_like(probs).scatter(0, index[keep], ordered[keep])
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))


def _cut_at_stop(text: str, stops: tuple[str, ...]) -> int | None:
    cuts = [text.find(s) for s in stops if s and s in text]
    return min(cuts) if cuts else None


@torch.no_grad()
def _tokens(lm: LoadedModel, ids: list[int], sampling: Sampling) -> Iterator[int]:
    model = lm.model
    cache_name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    generator = torch.Generator().manual_seed(sampling.seed) if sampling.seed is not None else None
    step = torch.tensor([ids], dtype=torch.long, device=lm.device)
    cache = None
    for _ in range(sampling.max_tokens):
        out = model(input_ids=step, use_cache=True, **{cache_name: cache})
        cache = out.get("cache", None)
        if cache is None:
            cache = out.get("past_key_values", None)
        token = _pick(out.logits[0, -1], sampling, generator)
        if token == lm.tokenizer.eos_token_id:
            return
        yield token
        step = torch.tensor([[token]], dtype=torch.long, device=lm.device)


def generate(snapshot, ids: list[int], sampling: Sampling) -> Iterator[Piece]:
    """Text pieces of the continuation of ``ids``; the last piece carries the finish reason."""
    tok = snapshot.lm.tokenizer
    tokens: list[int] = []
    sent = ""
    with snapshot.lock:
        for token in _tokens(snapshot.lm, ids, sampling):
            tokens.append(token)
            text = tok.decode(tokens, skip_special_tokens=True)
            cut = _cut_at_stop(text, sampling.stop)
            if cut is not None:
                yield Piece(text[len(sent) : max(cut, len(sent))])
                yield Piece("", "stop", len(tokens))
                return
            if text.endswith("\ufffd"):  # a character split across tokens: wait for the rest
                continue
            if len(text) > len(sent):
                yield Piece(text[len(sent) :])
                sent = text
    reason = "length" if len(tokens) >= sampling.max_tokens else "stop"
    yield Piece("", reason, len(tokens))
