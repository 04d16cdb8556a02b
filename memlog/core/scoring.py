"""Teacher-forced scores of target continuations: the field's standard edit metrics.

``target_scores(lm, pairs)`` runs each ``(prompt, target)`` with the target's tokens appended
(one right-padded batch per chunk) and returns, per pair, the target's mean token NLL and
whether every target token is the model's top-1 prediction at its position (zsRE's token
accuracy is the mean of the per-token hits, also returned).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from memlog.core.keys import pad_id_of, pad_right
from memlog.core.model import LoadedModel
from memlog.core.vstar import object_token_ids


@dataclass(frozen=True)
class TargetScore:
    mean_nll: float  # mean over the target's tokens
    token_accuracy: float  # fraction of target tokens that are the top-1 prediction


def target_scores(lm: LoadedModel, pairs: list[tuple[str, str]], batch_size: int = 16) -> list[TargetScore]:
    """Mean NLL and top-1 token accuracy of each target after its prompt (teacher forcing)."""
    out: list[TargetScore] = []
    tok = lm.tokenizer
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        prompts = [list(tok(p)["input_ids"]) for p, _ in chunk]
        targets = [object_token_ids(tok, t) for _, t in chunk]
        ids, _ = pad_right([p + t for p, t in zip(prompts, targets)], pad_id_of(tok), lm.device)
        with torch.no_grad():
            logits = lm.model(input_ids=ids).logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        for row, (p, t) in enumerate(zip(prompts, targets)):
            cols = torch.arange(len(p) - 1, len(p) - 1 + len(t), device=logits.device)
            wanted = torch.tensor(t, device=logits.device)
            nll = -logp[row, cols, wanted]
            hits = logits[row, cols].argmax(-1) == wanted
            out.append(TargetScore(float(nll.mean()), float(hits.float().mean())))
    return out
