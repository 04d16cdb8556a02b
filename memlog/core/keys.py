"""MEMIT keys: the MLP output projection's input at the subject's last token.

The subject's last token is found wherever the subject stands in the prompt (a template such
as "The mother tongue of {} is" puts it mid-prompt) from the tokenizer's character offsets.

Each fact is read in a few contexts: the bare prompt plus short fixed prefixes (MEMIT used
short generated ones; fixed ones keep memlog deterministic and save a generation pass).
The key of a fact at a layer is the mean over those contexts. All facts and contexts go
through the model in one right-padded batch that stops after the deepest layer needed;
right padding with a plain causal mask leaves every real token's activations unchanged.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from memlog.core.facts import Fact
from memlog.core.forward import forward_until, registered, residual_at, run_span
from memlog.core.memit_hparams import MemitConfig
from memlog.core.model import LoadedModel

CONTEXT_PREFIXES: tuple[str, ...] = (
    "The following is a fact. ",
    "Here is what I know. ",
    "I heard this yesterday. ",
    "Note: ",
    "Fun fact: ",
    "As everyone knows, ",
    "To be precise, ",
    "It is true that ",
    "Just so you know, ",
    "Yesterday, I learned something new. ",
    "Let me tell you about someone. ",
    "This is from my notes. ",
)


def context_prefixes(n_prefixes: int, seed: int = 0) -> list[str]:
    """``n_prefixes`` contexts: the bare prompt (``""``) first, then fixed prefixes.

    Seed 0 takes the prefixes in their listed order; another seed samples them reproducibly.
    """
    if not 1 <= n_prefixes <= len(CONTEXT_PREFIXES) + 1:
        raise ValueError(f"n_prefixes must be in 1..{len(CONTEXT_PREFIXES) + 1}, got {n_prefixes}")
    pool = list(CONTEXT_PREFIXES)
    if seed:
        random.Random(seed).shuffle(pool)
    return [""] + pool[: n_prefixes - 1]


@dataclass(frozen=True)
class PromptBatch:
    """Right-padded token ids with, per row, the subject's last token and the row's fact."""

    input_ids: torch.Tensor  # (B, T)
    lengths: torch.Tensor  # (B,) real tokens per row
    subject_last: torch.Tensor  # (B,) position of the subject's last token
    fact_index: torch.Tensor  # (B,) which fact the row belongs to


def subject_last_index(tokenizer, text: str, subject_end: int) -> tuple[list[int], int]:
    """Token ids of ``text`` and the index of the token holding character ``subject_end - 1``."""
    try:
        enc = tokenizer(text, return_offsets_mapping=True)
    except (NotImplementedError, ValueError):  # slow tokenizers have no offsets
        ids = tokenizer(text)["input_ids"]
        return ids, len(tokenizer(text[:subject_end])["input_ids"]) - 1
    target = subject_end - 1
    for index, (start, end) in enumerate(enc["offset_mapping"]):
        if start <= target < end:
            return enc["input_ids"], index
    raise ValueError(f"could not locate the subject's last token in {text!r}")


def pad_right(rows: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ids padded on the right, and each row's length."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return ids.to(device), torch.tensor([len(r) for r in rows], device=device)


def pad_id_of(tokenizer) -> int:
    pad = tokenizer.pad_token_id
    return int(pad if pad is not None else (tokenizer.eos_token_id or 0))


def build_prompt_batch(lm: LoadedModel, texts_and_subject_ends: list[tuple[str, int, int]], suffixes=None) -> PromptBatch:
    """Tokenise ``(text, subject_end_char, fact_index)`` rows; optionally append token ``suffixes``."""
    rows, last, owner = [], [], []
    for i, (text, subject_end, fact) in enumerate(texts_and_subject_ends):
        ids, index = subject_last_index(lm.tokenizer, text, subject_end)
        rows.append(list(ids) + (list(suffixes[i]) if suffixes is not None else []))
        last.append(index)
        owner.append(fact)
    ids, lengths = pad_right(rows, pad_id_of(lm.tokenizer), lm.device)
    return PromptBatch(ids, lengths, torch.tensor(last, device=lm.device), torch.tensor(owner, device=lm.device))


def fact_contexts(facts: list[Fact], prefixes: list[str]) -> list[tuple[str, int, int]]:
    """Rows ``(prefix + prompt, subject end char, fact index)``, fact-major, prefix-minor.

    The subject may stand anywhere in the prompt (``Fact.subject_span``); its end is shifted by
    the prefix."""
    return [(p + f.prompt, len(p) + f.subject_span[1], i) for i, f in enumerate(facts) for p in prefixes]


def subject_in(text: str, subject: str) -> int | None:
    """End character of ``subject``'s first occurrence in ``text`` (an exact match, else a
    case-insensitive one), or None when it does not occur."""
    start = text.find(subject)
    if start < 0:
        start = text.casefold().find(subject.casefold())
        if start < 0 or len(text.casefold()) != len(text):  # casefolding changed the offsets
            return None
    return start + len(subject)


def paraphrase_contexts(facts: list[Fact], n_paraphrases: int) -> list[tuple[str, int, int]]:
    """Rows ``(paraphrase, subject end char, fact index)`` for the first ``n_paraphrases`` of each
    fact's paraphrases that contain its subject (the others are skipped), fact-major."""
    rows = []
    for i, fact in enumerate(facts):
        for text in fact.paraphrases[:n_paraphrases]:
            end = subject_in(text, fact.subject)
            if end is not None:
                rows.append((text, end, i))
    return rows


def _mean_per_fact(rows: torch.Tensor, owner: torch.Tensor, n_facts: int) -> torch.Tensor:
    sums = torch.zeros(n_facts, rows.shape[1], dtype=torch.float32, device=rows.device)
    sums.index_add_(0, owner, rows.float())
    counts = torch.bincount(owner, minlength=n_facts).clamp_min(1).unsqueeze(1)
    return sums / counts


def keys_and_residual(
    lm: LoadedModel, batch: PromptBatch, n_facts: int, key_layers: list[int], residual_layer: int | None = None
) -> tuple[dict[int, torch.Tensor], torch.Tensor | None]:
    """Per-fact mean keys (d_in × N) at ``key_layers`` and, optionally, the residual at the output of
    ``residual_layer`` at the subject's last token of each row (B × d_model), in one stopped pass."""
    adapter, model = lm.adapter, lm.model
    rows = torch.arange(batch.input_ids.shape[0], device=lm.device)
    picked: dict[int, torch.Tensor] = {}
    residual: list[torch.Tensor] = []

    def key_hook(layer):
        return lambda _m, args: picked.__setitem__(layer, args[0][rows, batch.subject_last].detach())

    pre_hooks = [(adapter.mlp_out(model, layer), key_hook(layer)) for layer in key_layers]
    hooks = []
    if residual_layer is not None:
        block = adapter.block(model, residual_layer)
        hooks.append((block, lambda _m, _a, out: residual.append((out[0] if isinstance(out, tuple) else out)[rows, batch.subject_last].detach())))
    stop = max(key_layers + ([residual_layer] if residual_layer is not None else []))
    with torch.no_grad():
        forward_until(lm, stop, batch.input_ids, None, pre_hooks=pre_hooks, hooks=hooks)
    keys = {layer: _mean_per_fact(picked[layer], batch.fact_index, n_facts).T.contiguous() for layer in key_layers}
    return keys, (residual[0].float() if residual else None)


class LayerwiseReader:
    """Keys at successive edit layers and the residual at the last one, while the layers are edited.

    MEMIT reads layer l's keys after the layers before l were edited. Each ``read(l)`` also keeps
    the input of block l, so the next read (after only layer l's weight changed) resumes there
    instead of re-running the blocks below it. Valid when, between two reads, only weights of
    the previously read layer or later ones change, and layers are read in ascending order.
    Architectures without partial-forward support re-run from the embeddings each time.
    """

    def __init__(self, lm: LoadedModel, batch: PromptBatch, n_facts: int, residual_layer: int):
        self.lm, self.batch, self.n_facts, self.residual_layer = lm, batch, n_facts, residual_layer
        self._resume: tuple[int, torch.Tensor] | None = None
        self._rows = torch.arange(batch.input_ids.shape[0], device=lm.device)

    def read(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(keys d_in × N at ``layer``, residual rows B × d_model at the output of ``residual_layer``)."""
        lm, batch, rows = self.lm, self.batch, self._rows
        if not lm.adapter.supports_partial_forward():
            keys, residual = keys_and_residual(lm, batch, self.n_facts, [layer], self.residual_layer)
            return keys[layer], residual
        box: dict[str, torch.Tensor] = {}

        def keep_input(_m, args):
            box["input"] = args[0].detach()

        def keep_key(_m, args):
            box["key"] = args[0][rows, batch.subject_last].detach()

        def register() -> list:
            return [
                lm.adapter.block(lm.model, layer).register_forward_pre_hook(keep_input),
                lm.adapter.mlp_out(lm.model, layer).register_forward_pre_hook(keep_key),
            ]

        with torch.no_grad(), registered(register):
            if self._resume is None:
                hidden = residual_at(lm, batch.input_ids, self.residual_layer)
            else:
                start, cached = self._resume
                hidden = run_span(lm, cached, start, self.residual_layer)
        self._resume = (layer, box["input"])
        keys = _mean_per_fact(box["key"], batch.fact_index, self.n_facts).T.contiguous()
        return keys, hidden[rows, batch.subject_last].float()


PHRASINGS = "+paraphrases"  # suffix of ``positions``: read the fact's paraphrases as well


def bare_prompt_batch(lm: LoadedModel, facts: list[Fact], positions: str = "subject") -> tuple[PromptBatch, torch.Tensor, torch.Tensor]:
    """The audit prompts of ``facts`` (no prefix) and which of their positions to read.

    ``positions``: ``"subject"`` reads each prompt at its subject's last token only (the rows
    are cut there: later tokens cannot change it); ``"object"`` appends the object's tokens
    (``" " + object``, as v* and the audit see them) and also reads the positions that predict
    them and the word boundary after them: the prompt's last token and every object token;
    ``"first"`` reads the subject's last token and the prompt's last (the position that predicts
    the object's first token; later object tokens are not held); ``"prompt"`` reads every token
    of the full prompt; ``"all"`` every token of the prompt and of the object appended to it
    (the whole teacher-forced sequence the audit's greedy decoding reads when it recalls the
    fact). With the suffix ``"+paraphrases"`` (e.g. ``"subject+paraphrases"``) each of the fact's paraphrases that contains its subject
    is one more row, read at the same kind of positions (the subject's last token where it
    first occurs in the paraphrase). Returns the batch (one row per phrasing; ``fact_index``
    names its fact) and the (row, column) of every key to read, in fact order.
    """
    base = positions.removesuffix(PHRASINGS)
    with_paraphrases = base != positions
    if base not in ("subject", "object", "first", "prompt", "all"):
        raise ValueError(f"positions must be 'subject', 'object', 'first', 'prompt' or 'all' (optionally with {PHRASINGS!r}), got {positions!r}")
    phrasings = []  # (fact index, text, character just past the subject)
    for i, fact in enumerate(facts):
        phrasings.append((i, fact.prompt, fact.subject_span[1]))
        for text in fact.paraphrases if with_paraphrases else ():
            at = text.find(fact.subject)
            if at >= 0:
                phrasings.append((i, text, at + len(fact.subject)))
    rows, last, owners, pick_rows, pick_cols = [], [], [], [], []
    for row, (i, text, subject_end) in enumerate(phrasings):
        ids, index = subject_last_index(lm.tokenizer, text, subject_end)
        ids = list(ids)
        if base == "subject":
            ids, cols = ids[: index + 1], [index]
        elif base == "first":
            cols = sorted({index, len(ids) - 1})
        elif base in ("object", "all"):
            answer = lm.tokenizer(" " + facts[i].object, add_special_tokens=False)["input_ids"]
            first = 0 if base == "all" else len(ids) - 1
            cols = sorted({index, *range(first, len(ids) + len(answer))})
            ids = ids + list(answer)
        else:
            cols = list(range(len(ids)))
        rows.append(ids)
        last.append(index)
        owners.append(i)
        pick_rows += [row] * len(cols)
        pick_cols += cols
    ids, lengths = pad_right(rows, pad_id_of(lm.tokenizer), lm.device)
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long, device=lm.device)  # noqa: E731
    batch = PromptBatch(ids, lengths, as_long(last), as_long(owners))
    return batch, as_long(pick_rows), as_long(pick_cols)


class KeyReader:
    """Keys at chosen (row, column) positions at successive layers, while those layers are edited.

    Like ``LayerwiseReader`` but it stops at the layer read (no residual further on) and reads
    any positions, one key per position (no averaging). Each read resumes from the input of the
    previously read layer, so the blocks below the first read run once per edit.
    """

    def __init__(self, lm: LoadedModel, input_ids: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor):
        self.lm, self.input_ids, self.rows, self.cols = lm, input_ids, rows, cols
        self._resume: tuple[int, torch.Tensor] | None = None

    def read(self, layer: int) -> torch.Tensor:
        """Keys (d_in × P, float32) at ``layer`` with the weights as they are now."""
        lm, box = self.lm, {}

        def keep_input(_m, args):
            box["input"] = args[0].detach()

        def keep_key(_m, args):
            box["key"] = args[0][self.rows, self.cols].detach()

        def register() -> list:
            return [
                lm.adapter.block(lm.model, layer).register_forward_pre_hook(keep_input),
                lm.adapter.mlp_out(lm.model, layer).register_forward_pre_hook(keep_key),
            ]

        with torch.no_grad(), registered(register):
            if self._resume is None or not lm.adapter.supports_partial_forward():
                forward_until(lm, layer, self.input_ids)
            else:
                run_span(lm, self._resume[1], self._resume[0], layer)
        self._resume = (layer, box["input"])
        return box["key"].float().T.contiguous()


def compute_keys(lm: LoadedModel, facts: list[Fact], layers, cfg: "MemitConfig") -> dict[int, torch.Tensor]:
    """Keys (d_in × N, float32, on the model's device) of ``facts`` at each of ``layers``,
    averaged over ``cfg.n_prefixes`` contexts; one forward pass for all facts and contexts."""
    prefixes = context_prefixes(cfg.n_prefixes, cfg.seed)
    batch = build_prompt_batch(lm, fact_contexts(facts, prefixes))
    keys, _ = keys_and_residual(lm, batch, len(facts), sorted(layers))
    return keys
