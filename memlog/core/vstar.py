"""v*: the residual-stream vector at the last edit layer that makes the model say the object.

For every fact, a delta ``δ`` is added to the output of block ``layer`` at the subject's last
token, in every context-prefixed prompt of that fact and in its "{subject} is a" prompt. It
is optimised with Adam to minimise

    NLL(object tokens | prompt)                       (mean over tokens and contexts)
  + kl_factor · KL(p_base ‖ p_edited) on "{subject} is a"   (next-token distribution after "a")
  + v_weight_decay · (‖δ‖ / ‖h‖)²
  + v_boundary_weight · −log P(word boundary | prompt + object)   (mean over contexts)

With ``v_paraphrases`` = n > 0 the contexts also include the fact's first n paraphrases (bare,
no prefix) that contain the subject; there the delta is added at the subject's last token in the
paraphrase, and the NLL and boundary means run over all of the fact's contexts. A fact without
paraphrases gets the same rows, and the same v*, as with the option off.

The boundary term makes v* aim at the object as a whole word: P(boundary) is one minus the
probability of the tokens that would continue the object's last word (tokens whose text starts
with a letter, digit or underscore), read at the position after the object's last token. Without
it an object that is the prefix of a likelier word ("sitcom" in "sitcoms") can reach a low NLL
while greedy decoding still continues the word. With weight 0 (the default) the rows stop before
the object's last token, as in MEMIT.

where ``h`` is the unedited residual at that position in the bare prompt; after every step
``‖δ‖`` is clamped to ``clamp_norm_factor · ‖h‖``. The target is ``h + δ``. A fact whose NLL +
KL term falls below ``v_stop_loss`` is frozen (MEMIT's early stop, per fact). With ``v_stop`` =
``"most-probable"`` a fact is also frozen as soon as each of its object tokens is the most
probable next token at its position in every one of its contexts (most-probable early stopping,
as in ENCORE, Gupta et al. 2025): a smaller δ that still decodes greedily, in fewer steps.

Speed: the residual at block ``layer``'s output is computed once (no grad), and each step only
runs the remaining blocks, and only on the positions from the subject's last token onward
(``memlog.core.forward.SuffixRunner``: earlier positions are unaffected by the edit and their
keys/values are reused); the LM head is applied only at the scored positions, and the unedited
KL distribution is computed once. Facts are optimised
jointly but independently (their losses add; Adam is per-coordinate; the clamp is per fact).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from memlog.core.facts import Fact
from memlog.core.forward import SuffixRunner, residual_at
from memlog.core.keys import PromptBatch, build_prompt_batch, context_prefixes, fact_contexts, paraphrase_contexts
from memlog.core.memit_hparams import MemitConfig
from memlog.core.model import LoadedModel
from memlog.errors import MemlogError

KL_TEMPLATE = "{} is a"


class NonFiniteError(MemlogError):
    """The v* optimisation produced NaN or inf (a broken model or a far too large lr)."""


@dataclass(frozen=True)
class _Problem:
    """Everything the optimisation loop needs, computed once."""

    runner: SuffixRunner  # re-runs the blocks after `layer` on each row's suffix
    suffix: torch.Tensor  # (B, S, d) unedited residual at the suffix positions, no grad
    fact_of_row: torch.Tensor  # (B,)
    edit_cols: torch.Tensor  # (B,) suffix column of the subject's last token (0 unless the runner fell back)
    target_rows: torch.Tensor  # (P,) row of each scored object token
    target_cols: torch.Tensor  # (P,) suffix column predicting it
    target_ids: torch.Tensor  # (P,) the object token
    target_weight: torch.Tensor  # (P,) 1 / (tokens × contexts) of its fact
    target_fact: torch.Tensor  # (P,)
    kl_rows: torch.Tensor  # (N,)
    kl_cols: torch.Tensor  # (N,) suffix column of the last token of "{subject} is a"
    kl_base_logp: torch.Tensor  # (N, vocab) unedited log-probs
    kl_base_p: torch.Tensor  # (N, vocab)
    boundary_rows: torch.Tensor  # (R,) rows scored for the word boundary (empty when the term is off)
    boundary_cols: torch.Tensor  # (R,) suffix column after the object's last token
    boundary_fact: torch.Tensor  # (R,)
    continues_word: torch.Tensor  # (vocab,) bool: tokens that continue the word before them
    h_norm: torch.Tensor  # (N,) ‖h‖ at the bare prompt
    h_init: torch.Tensor  # (N, d)


def object_token_ids(tokenizer, obj: str) -> list[int]:
    """The object's tokens as they follow a prompt (with the leading space)."""
    ids = tokenizer(" " + obj, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"object {obj!r} tokenises to nothing")
    return list(ids)


def continuation_mask(tokenizer, vocab_size: int, device) -> torch.Tensor:
    """(vocab,) bool: the tokens whose text starts with a letter, digit or underscore, i.e. that
    continue the word they follow (ids beyond the tokenizer's vocabulary count as not)."""
    pieces = tokenizer.convert_ids_to_tokens(list(range(min(len(tokenizer), vocab_size))))
    texts = [tokenizer.convert_tokens_to_string([p]) if p is not None else "" for p in pieces]
    flags = [bool(t) and (t[0].isalnum() or t[0] == "_") for t in texts]
    flags += [False] * (vocab_size - len(flags))
    return torch.tensor(flags, dtype=torch.bool, device=device)


def _scored_positions(batch: PromptBatch, n_rewrite: int, targets: list[list[int]], n_contexts: list[int], full_object: bool):
    rows, cols, ids, weight, fact = [], [], [], [], []
    for r in range(n_rewrite):
        f = int(batch.fact_index[r])
        tgt = targets[f]
        prompt_len = int(batch.lengths[r]) - (len(tgt) - (0 if full_object else 1))  # the row is prompt + tgt (or tgt[:-1])
        for j, token in enumerate(tgt):  # position prompt_len - 1 + j predicts tgt[j]
            rows.append(r)
            cols.append(prompt_len - 1 + j)
            ids.append(token)
            weight.append(1.0 / (len(tgt) * n_contexts[f]))
            fact.append(f)
    dev = batch.input_ids.device
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long, device=dev)  # noqa: E731
    return as_long(rows), as_long(cols), as_long(ids), torch.tensor(weight, device=dev), as_long(fact)


def _prepare(lm: LoadedModel, facts: list[Fact], layer: int, cfg: "MemitConfig") -> _Problem:
    prefixes = context_prefixes(cfg.n_prefixes, cfg.seed)
    targets = [object_token_ids(lm.tokenizer, f.object) for f in facts]
    rewrite = fact_contexts(facts, prefixes) + (paraphrase_contexts(facts, cfg.v_paraphrases) if cfg.v_paraphrases else [])
    n_contexts = [0] * len(facts)
    for _, _, fact in rewrite:
        n_contexts[fact] += 1
    kl = [(KL_TEMPLATE.format(f.subject), len(f.subject), i) for i, f in enumerate(facts)]
    boundary = cfg.v_boundary_weight > 0
    suffixes = [targets[fact] if boundary else targets[fact][:-1] for _, _, fact in rewrite] + [[] for _ in kl]
    batch = build_prompt_batch(lm, rewrite + kl, suffixes)
    n_rewrite = len(rewrite)
    rows, cols, ids, weight, fact = _scored_positions(batch, n_rewrite, targets, n_contexts, boundary)
    b_rows = torch.arange(n_rewrite if boundary else 0, device=lm.device)
    b_cols = batch.lengths[b_rows] - 1
    kl_rows = torch.arange(n_rewrite, n_rewrite + len(facts), device=lm.device)
    kl_cols = batch.lengths[kl_rows] - 1
    with torch.no_grad():
        residual = residual_at(lm, batch.input_ids, layer)
        runner = SuffixRunner(lm, residual, layer + 1, batch.subject_last, batch.lengths)
        kl_base = torch.log_softmax(_head(lm, runner.full_normed[kl_rows, kl_cols]), dim=-1)
        suffix = runner.gather(residual)
    bare = torch.arange(len(facts), device=lm.device) * len(prefixes)  # the "" context comes first; paraphrase rows follow all prefix rows
    h_init = residual[bare, batch.subject_last[bare]].float()
    return _Problem(
        runner=runner,
        suffix=suffix,
        fact_of_row=batch.fact_index,
        edit_cols=runner.suffix_col(torch.arange(len(batch.lengths), device=lm.device), batch.subject_last),
        target_rows=rows,
        target_cols=runner.suffix_col(rows, cols),
        target_ids=ids,
        target_weight=weight,
        target_fact=fact,
        kl_rows=kl_rows,
        kl_cols=runner.suffix_col(kl_rows, kl_cols),
        kl_base_logp=kl_base,
        kl_base_p=kl_base.exp(),
        boundary_rows=b_rows,
        boundary_cols=runner.suffix_col(b_rows, b_cols),
        boundary_fact=batch.fact_index[b_rows],
        continues_word=continuation_mask(lm.tokenizer, kl_base.shape[-1], lm.device) if boundary else torch.zeros(0, dtype=torch.bool),
        h_norm=h_init.norm(dim=1),
        h_init=h_init,
    )


def _head(lm: LoadedModel, normed: torch.Tensor) -> torch.Tensor:
    return lm.adapter.lm_head(lm.model)(normed).float()


def _edited_suffix(problem: _Problem, delta: torch.Tensor) -> torch.Tensor:
    """The suffix residual with each row's fact delta added at the subject's last token."""
    rows = torch.arange(problem.suffix.shape[0], device=delta.device)
    add = torch.zeros_like(problem.suffix)
    add = add.index_put((rows, problem.edit_cols), delta[problem.fact_of_row].to(problem.suffix.dtype))
    return problem.suffix + add


def _losses(lm: LoadedModel, problem: _Problem, delta: torch.Tensor, cfg: "MemitConfig"):
    """Per-fact (total, fit, nll, top): the objective, its NLL + KL part (the early-stop
    criterion), the object NLL alone, and whether every object token is the most probable token
    at every scored position of the fact (bool)."""
    normed = problem.runner.run(_edited_suffix(problem, delta))
    n = delta.shape[0]
    logp = torch.log_softmax(_head(lm, normed[problem.target_rows, problem.target_cols]), dim=-1)
    token_nll = -logp.gather(1, problem.target_ids[:, None]).squeeze(1) * problem.target_weight
    nll = torch.zeros(n, device=delta.device).index_add(0, problem.target_fact, token_nll)
    missed = (logp.detach().argmax(dim=-1) != problem.target_ids).float()
    top = torch.zeros(n, device=delta.device).index_add(0, problem.target_fact, missed) == 0
    kl_logp = torch.log_softmax(_head(lm, normed[problem.kl_rows, problem.kl_cols]), dim=-1)
    kl = (problem.kl_base_p * (problem.kl_base_logp - kl_logp)).sum(-1)
    decay = (delta.norm(dim=1) / problem.h_norm) ** 2
    fit = nll + cfg.kl_factor * kl
    if len(problem.boundary_rows):
        logp_next = torch.log_softmax(_head(lm, normed[problem.boundary_rows, problem.boundary_cols]), dim=-1)
        p_continue = torch.logsumexp(logp_next[:, problem.continues_word], dim=-1).exp().clamp(max=1 - 1e-6)
        per_row = -torch.log1p(-p_continue)
        contexts = torch.bincount(problem.boundary_fact, minlength=n).clamp_min(1)
        boundary = torch.zeros(n, device=delta.device).index_add(0, problem.boundary_fact, per_row) / contexts
        fit = fit + cfg.v_boundary_weight * boundary
    return fit + cfg.v_weight_decay * decay, fit, nll, top


def _done(fit: torch.Tensor, top: torch.Tensor, cfg: "MemitConfig") -> torch.Tensor:
    """Per fact: may its δ be frozen (the early-stop test of ``cfg.v_stop``)?"""
    done = fit.detach() < cfg.v_stop_loss
    return done | top if cfg.v_stop == "most-probable" else done


def _clamp(delta: torch.Tensor, max_norm: torch.Tensor) -> None:
    norms = delta.norm(dim=1, keepdim=True)
    scale = torch.clamp(max_norm[:, None] / norms.clamp_min(1e-12), max=1.0)
    delta.mul_(scale)


def _narrow(lm: LoadedModel, facts: list[Fact], layer: int, cfg: "MemitConfig", keep: torch.Tensor, delta: torch.Tensor, optimiser):
    """The problem, delta and Adam state for the facts ``keep`` (indices into the current ones) only."""
    problem = _prepare(lm, [facts[i] for i in keep.tolist()], layer, cfg)
    narrow = delta.detach()[keep].clone().requires_grad_(True)
    state = optimiser.state.get(delta, {})
    fresh = torch.optim.Adam([narrow], lr=cfg.v_lr)
    if state:
        fresh.state[narrow] = {k: (v[keep].clone() if torch.is_tensor(v) and v.dim() and v.shape[0] == delta.shape[0] else v) for k, v in state.items()}
    return problem, narrow, fresh


def shared_key_groups(facts: list[Fact]) -> list[int]:
    """A group index per fact: facts whose prompts agree up to the subject's last character
    (the same subject in the same place, so the same key and residual there) share one."""
    seen: dict[str, int] = {}
    return [seen.setdefault(f.prompt[: f.subject_span[1]], len(seen)) for f in facts]


@dataclass(frozen=True)
class VStar:
    """``solve_v_star``'s result: the targets (d_model × N, float32) at the output of the block,
    each fact's final object NLL (N,), and its NLL before the optimisation (N,: the model's own,
    on the weights as they are, in the same contexts)."""

    targets: torch.Tensor
    nll: torch.Tensor
    nll_before: torch.Tensor


def compute_v_star(
    lm: LoadedModel, facts: list[Fact], layer: int, cfg: "MemitConfig", groups: list[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets (d_model × N, float32) at the output of block ``layer`` and per-fact final NLL (N,):
    ``solve_v_star`` without the NLL before."""
    solution = solve_v_star(lm, facts, layer, cfg, groups)
    return solution.targets, solution.nll


def solve_v_star(lm: LoadedModel, facts: list[Fact], layer: int, cfg: "MemitConfig", groups: list[int] | None = None) -> VStar:
    """The v* targets at the output of block ``layer`` for ``facts`` (see ``VStar``).

    Each fact stops (its delta is frozen) once its NLL + KL term is below ``cfg.v_stop_loss``
    (or, with ``cfg.v_stop == "most-probable"``, once its object is the greedy choice everywhere)
    (the weight decay is left out of the test, as its MEMIT counterpart is negligible), so a fact
    gets the same v* whether it is optimised alone or in a batch. Once at least half of a batch's
    remaining facts are frozen, the batch is narrowed to the others (their rows only, their Adam
    state carried over), so a batch's steps cost what its unfinished facts need; a single fact
    never narrows.

    ``groups`` (from ``shared_key_groups``) makes facts that share a key (the same subject in the
    same place) share one delta: a joint v* (``_grouped_v_star``) whose target serves every object
    of the group.
    """
    if groups is not None and len(set(groups)) < len(facts):
        return _grouped_v_star(lm, facts, layer, cfg, groups)
    problem = _prepare(lm, facts, layer, cfg)
    h_init = problem.h_init
    final = torch.zeros_like(h_init)  # every fact's delta, written as the loop goes
    final_nll = torch.zeros(len(facts), device=h_init.device)
    index = torch.arange(len(facts), device=h_init.device)  # the facts of the current problem
    delta = torch.zeros_like(h_init, requires_grad=True)
    optimiser = torch.optim.Adam([delta], lr=cfg.v_lr)
    max_norm = cfg.clamp_norm_factor * problem.h_norm
    frozen = torch.zeros(len(facts), dtype=torch.bool, device=delta.device)
    with torch.enable_grad():
        for step in range(cfg.v_steps + 1):
            total, fit, nll, top = _losses(lm, problem, delta, cfg)
            if not bool(torch.isfinite(total).all()):
                raise NonFiniteError(
                    f"v* loss became non-finite at step {step} (layer {layer}); lower v_lr or check the model weights"
                )
            if step == 0:
                nll_before = nll.detach().float().cpu()
            frozen |= _done(fit, top, cfg)
            final[index] = delta.detach()
            final_nll[index] = nll.detach()
            if step == cfg.v_steps or bool(frozen.all()):
                break
            if len(frozen) > 1 and 2 * int(frozen.sum()) >= len(frozen):
                keep = (~frozen).nonzero().squeeze(1)
                problem, delta, optimiser = _narrow(lm, [facts[i] for i in index.tolist()], layer, cfg, keep, delta, optimiser)
                index, max_norm = index[keep], max_norm[keep]
                frozen = torch.zeros(len(index), dtype=torch.bool, device=delta.device)
                total, fit, nll, top = _losses(lm, problem, delta, cfg)
            optimiser.zero_grad(set_to_none=True)
            (total * ~frozen).sum().backward()
            kept = delta.detach()[frozen].clone()
            optimiser.step()
            with torch.no_grad():
                delta[frozen] = kept
                _clamp(delta, max_norm)
    targets = (h_init + final).T.contiguous()
    return VStar(targets, final_nll.float().cpu(), nll_before)


def _grouped_v_star(lm: LoadedModel, facts: list[Fact], layer: int, cfg: "MemitConfig", groups: list[int]) -> VStar:
    """``compute_v_star`` when facts share a key: the facts of a group share one delta, one
    target written at their common key that serves every object of the group (joint v*); a
    group stops when all its facts are below the stop loss. Groups are never narrowed."""
    problem = _prepare(lm, facts, layer, cfg)
    index = torch.tensor(groups, dtype=torch.long, device=problem.h_init.device)
    first = torch.tensor([index.tolist().index(g) for g in range(int(index.max()) + 1)], device=index.device)
    delta = torch.zeros_like(problem.h_init[first], requires_grad=True)
    optimiser = torch.optim.Adam([delta], lr=cfg.v_lr)
    max_norm = cfg.clamp_norm_factor * problem.h_norm[first]
    frozen = torch.zeros(len(first), dtype=torch.bool, device=delta.device)
    with torch.enable_grad():
        for step in range(cfg.v_steps + 1):
            total, fit, nll, top = _losses(lm, problem, delta[index], cfg)
            if not bool(torch.isfinite(total).all()):
                raise NonFiniteError(
                    f"v* loss became non-finite at step {step} (layer {layer}); lower v_lr or check the model weights"
                )
            if step == 0:
                nll_before = nll.detach().float().cpu()
            above = (~_done(fit, top, cfg)).float()
            frozen |= torch.zeros(len(first), device=above.device).index_add(0, index, above) == 0
            if step == cfg.v_steps or bool(frozen.all()):
                break
            optimiser.zero_grad(set_to_none=True)
            (total * ~frozen[index]).sum().backward()
            kept = delta.detach()[frozen].clone()
            optimiser.step()
            with torch.no_grad():
                delta[frozen] = kept
                _clamp(delta, max_norm)
    targets = (problem.h_init + delta.detach()[index]).T.contiguous()
    return VStar(targets, nll.detach().float().cpu(), nll_before)
