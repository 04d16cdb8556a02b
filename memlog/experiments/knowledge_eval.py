"""``memlog eval``: the field's edit metrics on CounterFact / zsRE records, beside live decoding.

Per record (an ``EditCase``: the fact with its paraphrases and neighbours, and the true answer
it replaces), measured on the model as it is when ``measure`` is called:

* teacher forced (ROME/MEMIT/AlphaEdit): ES, P(new) > P(true) on the prompt (mean token NLL
  compared); PS, the same on the paraphrases; NS, each neighbour still prefers its true answer
  over the new object; zsRE-style top-1 token accuracy of the new object on the prompt
  (``efficacy_acc``) and paraphrases (``paraphrase_acc``), and of the neighbour's answer
  (``neighbour_acc``);
* live greedy decoding: the prompt's completion starts with the object at a word boundary
  (``live_efficacy``), the same on the paraphrases (``live_paraphrase``), the neighbour's first
  word unchanged from the unedited model's (``live_neighbour``), and recall through the chat
  template (``chat``).

Protocols: ``single`` edits each record alone into the unedited model and undoes it (the
single-edit setting); ``sequential`` writes every record into a store one after another (the
lifelong setting) and measures all of them at the end. ``known_only`` keeps the records whose
true answer the unedited model gives (greedy, word boundary) and reports how many were dropped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from memlog.core.factfile import EditCase
from memlog.core.memit import applied
from memlog.core.model import LoadedModel
from memlog.core.probes import neighbour_completions, neighbour_unchanged
from memlog.core.recall import chat_audit, complete, is_recalled, object_tokens
from memlog.core.scoring import target_scores
from memlog.progress import ProgressFn, no_progress

METRICS = (
    "ES", "PS", "NS", "efficacy_acc", "paraphrase_acc", "neighbour_acc",
    "live_efficacy", "live_paraphrase", "live_neighbour", "chat",
)  # fmt: skip


def sample_cases(cases: list[EditCase], n: int | None, seed: int) -> list[EditCase]:
    """A seeded random sample of ``n`` cases (all of them, shuffled, when ``n`` is None)."""
    picked = list(cases)
    random.Random(seed).shuffle(picked)
    return picked if n is None else picked[:n]


def known_filter(lm: LoadedModel, cases: list[EditCase]) -> tuple[list[EditCase], int]:
    """The cases whose true answer the unedited model completes greedily, and how many were dropped."""
    with_truth = [c for c in cases if c.true_object]
    done = complete(lm, [c.fact.prompt for c in with_truth], max_new_tokens=max(object_tokens(lm, c.true_object) for c in with_truth) + 2)
    kept = [c for c, text in zip(with_truth, done) if is_recalled(text, c.true_object)]
    return kept, len(cases) - len(kept)


@dataclass(frozen=True)
class Baseline:
    """The unedited model's neighbour completions, per case (the live neighbourhood reference)."""

    neighbours: list[list[str]]


def baseline(lm: LoadedModel, cases: list[EditCase]) -> Baseline:
    prompts = [n.prompt for c in cases for n in c.fact.neighbours]
    done = iter(neighbour_completions(lm, prompts))
    return Baseline([[next(done) for _ in c.fact.neighbours] for c in cases])


def _mean(values) -> float | None:
    values = [float(v) for v in values if v is not None]
    return sum(values) / len(values) if values else None


def measure(lm: LoadedModel, cases: list[EditCase], base: Baseline, chat: bool = True) -> list[dict]:
    """Per-case metrics (see the module doc) on the model's current weights."""
    facts = [c.fact for c in cases]
    pairs, owners = [], []
    for i, c in enumerate(cases):
        prompts = [("prompt", c.fact.prompt)] + [("para", p) for p in c.fact.paraphrases]
        for kind, prompt in prompts:
            pairs.append((prompt, c.fact.object)); owners.append((i, kind, "new"))  # noqa: E702
            if c.true_object:
                pairs.append((prompt, c.true_object)); owners.append((i, kind, "true"))  # noqa: E702
        for j, n in enumerate(c.fact.neighbours):
            pairs.append((n.prompt, n.answer)); owners.append((i, f"n{j}", "true"))  # noqa: E702
            pairs.append((n.prompt, c.fact.object)); owners.append((i, f"n{j}", "new"))  # noqa: E702
    scores: dict[tuple, list] = {}
    for key, score in zip(owners, target_scores(lm, pairs)):
        scores.setdefault(key, []).append(score)
    longest = max(object_tokens(lm, f.object) for f in facts) + 2
    live = complete(lm, [f.prompt for f in facts], max_new_tokens=longest)
    para_prompts = [(i, p) for i, f in enumerate(facts) for p in f.paraphrases]
    para_live = complete(lm, [p for _, p in para_prompts], max_new_tokens=longest)
    neigh = [(i, j, n) for i, f in enumerate(facts) for j, n in enumerate(f.neighbours)]
    neigh_live = neighbour_completions(lm, [n.prompt for _, _, n in neigh])
    chats = chat_audit(lm, facts) if chat else [None] * len(facts)
    rows = []
    for i, c in enumerate(cases):
        new_p, true_p = scores[(i, "prompt", "new")], scores.get((i, "prompt", "true"))
        new_para, true_para = scores.get((i, "para", "new"), []), scores.get((i, "para", "true"), [])
        neighbours = [(scores[(i, f"n{j}", "true")][0], scores[(i, f"n{j}", "new")][0]) for j in range(len(c.fact.neighbours))]
        rows.append(
            {
                "case_id": c.case_id,
                "prompt": c.fact.prompt,
                "object": c.fact.object,
                "subject_first": c.fact.subject_span[0] == 0,
                "ES": float(new_p[0].mean_nll < true_p[0].mean_nll) if true_p else None,
                "PS": _mean(n.mean_nll < t.mean_nll for n, t in zip(new_para, true_para)),
                "NS": _mean(t.mean_nll < n.mean_nll for t, n in neighbours),
                "efficacy_acc": new_p[0].token_accuracy,
                "paraphrase_acc": _mean(s.token_accuracy for s in new_para),
                "neighbour_acc": _mean(t.token_accuracy for t, _ in neighbours),
                "live_efficacy": float(is_recalled(live[i], c.fact.object)),
                "completion": live[i],
                "live_paraphrase": _mean(is_recalled(t, facts[k].object) for (k, _), t in zip(para_prompts, para_live) if k == i),
                "live_neighbour": _mean(
                    neighbour_unchanged(t, base.neighbours[k][j], n.answer) for (k, j, n), t in zip(neigh, neigh_live) if k == i
                ),
                "chat": float(chats[i].recalled) if chats[i] is not None else None,
            }
        )
    return rows


def summarise(rows: list[dict]) -> dict:
    """Mean of each metric over the rows that have it, overall and by subject position."""

    def block(subset):
        return {"n": len(subset), **{m: _mean(r[m] for r in subset) for m in METRICS}}

    return {
        "all": block(rows),
        "subject_first": block([r for r in rows if r["subject_first"]]),
        "subject_inside": block([r for r in rows if not r["subject_first"]]),
    }


def eval_single(
    editor, cases: list[EditCase], base: Baseline, progress: ProgressFn = no_progress, ppl: bool = False, chat: bool = True
) -> list[dict]:
    """Each case edited alone into the unedited weights, measured, and undone (bit for bit).

    Each row also holds the edit's v* NLL, its v* norm (relative to ‖h‖; equal to the clamp
    when clamped) and its wall seconds; ``ppl`` adds the perplexity with the edit applied;
    ``chat=False`` skips the chat-template measure."""
    rows = []
    for i, case in enumerate(cases):
        progress("eval", i, len(cases))
        result = editor.edit([case.fact])
        with applied(editor.lm, result.deltas):
            row = measure(editor.lm, [case], Baseline([base.neighbours[i]]), chat=chat)[0]
            row.update(v_nll=result.v_losses[0], v_norm=result.v_norms[0], edit_seconds=result.seconds)
            if ppl:
                row["ppl"] = editor.perplexity()
            rows.append(row)
    progress("eval", len(cases), len(cases))
    return rows


def eval_sequential(mem, cases: list[EditCase], progress: ProgressFn = no_progress) -> None:
    """Write every case into the store ``mem``, one edit after another (no audits in between)."""
    mem.inject([c.fact for c in cases], audit=False, progress=progress)


def run_eval(
    mem,
    cases: list[EditCase],
    sequential: bool = False,
    known_only: bool = False,
    chat: bool = True,
    progress: ProgressFn = no_progress,
) -> dict:
    """Measure ``cases`` before and after editing them into ``mem``'s model (see the module doc).

    ``single`` leaves the store untouched; ``sequential`` writes the edits into it."""
    lm = mem.editor.lm
    filtered = 0
    if known_only:
        cases, filtered = known_filter(lm, cases)
    if not cases:
        return {"protocol": "sequential" if sequential else "single", "n": 0, "filtered_unknown": filtered}
    base = baseline(lm, cases)
    before = measure(lm, cases, base, chat=chat)
    ppl_before = mem.editor.perplexity()
    if sequential:
        eval_sequential(mem, cases, progress)
        after = measure(lm, cases, base, chat=chat)
        ppl_after = mem.editor.perplexity()
    else:
        after = eval_single(mem.editor, cases, base, progress)
        ppl_after = None
    return {
        "protocol": "sequential" if sequential else "single",
        "n": len(cases),
        "filtered_unknown": filtered,
        "before": summarise(before),
        "after": summarise(after),
        "ppl_before": ppl_before,
        "ppl_after": ppl_after,
        "rows": after,
        "base_neighbours": base.neighbours,
    }
