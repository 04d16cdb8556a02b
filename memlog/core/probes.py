"""Probe audits: how a fact generalises and what it leaves alone, by live greedy decoding.

For each fact with probes (``Fact.paraphrases``, ``Fact.neighbours``):

* paraphrase: the fraction of its paraphrase prompts whose greedy completion starts with the
  object at a word boundary (the exact-prompt rule of ``memlog.core.recall``);
* neighbours: the fraction of its neighbourhood prompts whose answer is *unchanged*: the first
  word of the greedy completion now equals (case- and accent-folded) the first word of the
  completion recorded just before the fact's edit. When no completion was recorded, the
  neighbour counts as unchanged when the completion starts with its true answer. (Comparing
  with the model's own earlier answer, not the data set's label, measures what the edit
  changed, whether or not the model knew the answer.)
* chat: recall through the tokenizer's chat template (``chat_audit``: the reply mentions the
  object as whole words); every fact, probes or not.

A measure a fact has no probe for is None.
"""

from __future__ import annotations

from dataclasses import dataclass

from memlog.core.facts import Fact
from memlog.core.model import LoadedModel
from memlog.core.recall import chat_audit, complete, fold, is_recalled, object_tokens

NEIGHBOUR_TOKENS = 6  # greedy tokens read for a neighbour's answer


@dataclass(frozen=True)
class ProbeResult:
    paraphrase: float | None
    neighbours: float | None
    chat: bool | None


def first_word(text: str) -> str:
    """The first whitespace-separated word, folded, without trailing punctuation."""
    words = fold(text).split()
    return words[0].rstrip(".,;:!?\"')") if words else ""


def neighbour_unchanged(now: str, before: str, answer: str) -> bool:
    """Whether a neighbour's completion ``now`` keeps its answer (see the module doc)."""
    if before:
        return first_word(now) == first_word(before)
    return is_recalled(now, answer)


def neighbour_completions(lm: LoadedModel, prompts: list[str]) -> list[str]:
    """Greedy completions of neighbourhood prompts (the reference recorded before an edit)."""
    return complete(lm, prompts, max_new_tokens=NEIGHBOUR_TOKENS)


def probe_audit(lm: LoadedModel, facts: list[Fact], befores: list[list[str]] | None = None, chat: bool = True) -> list[ProbeResult]:
    """Paraphrase, neighbourhood and chat measures of ``facts`` in three batched greedy passes.

    ``befores[i]`` are the completions of fact i's neighbours recorded before its edit."""
    if not facts:
        return []
    befores = befores or [[] for _ in facts]
    para = [(i, p) for i, f in enumerate(facts) for p in f.paraphrases]
    neigh = [(i, j, n) for i, f in enumerate(facts) for j, n in enumerate(f.neighbours)]
    longest = max(object_tokens(lm, f.object) for f in facts) + 2
    para_done = complete(lm, [p for _, p in para], max_new_tokens=longest)
    neigh_done = neighbour_completions(lm, [n.prompt for _, _, n in neigh])
    chats = chat_audit(lm, facts) if chat else None
    hits = [[0, 0] for _ in facts]
    for (i, _), text in zip(para, para_done):
        hits[i][0] += is_recalled(text, facts[i].object)
        hits[i][1] += 1
    kept = [[0, 0] for _ in facts]
    for (i, j, n), text in zip(neigh, neigh_done):
        before = befores[i][j] if j < len(befores[i]) else ""
        kept[i][0] += neighbour_unchanged(text, before, n.answer)
        kept[i][1] += 1
    return [
        ProbeResult(
            paraphrase=hits[i][0] / hits[i][1] if hits[i][1] else None,
            neighbours=kept[i][0] / kept[i][1] if kept[i][1] else None,
            chat=chats[i].recalled if chats is not None else None,
        )
        for i in range(len(facts))
    ]
