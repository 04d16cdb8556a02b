"""The two regularisers against sequential norm growth, on the embedded SmolLM2-135M (marked
``real_model``; weights restored): most-probable early stopping of v* and the MEMIT norm penalty."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from memlog.core import vstar
from memlog.core.fingerprint import cached_model_fingerprint
from memlog.core.memit import MemitConfig, applied, prepare_covariances, solve_layers
from memlog.core.pool import mixed_pool
from memlog.core.recall import audit
from memlog.core.vstar import compute_v_star
from memlog.engine.open import _load_or_compute_covariances

pytestmark = [pytest.mark.real_model]

FACTS = mixed_pool(3, seed=11)


def _greedy_hits(lm, problem, targets) -> list[bool]:
    """Per fact: is every object token the argmax at its scored position in every context,
    with the residual at the subject's last token set to ``targets`` (a fresh pass of the rows)?"""
    delta = (targets.T.to(problem.h_init) - problem.h_init).detach()
    with torch.no_grad():
        normed = problem.runner.run(vstar._edited_suffix(problem, delta))
        greedy = vstar._head(lm, normed[problem.target_rows, problem.target_cols]).argmax(dim=-1)
    hits = greedy == problem.target_ids
    return [bool(hits[problem.target_fact == i].all()) for i in range(problem.h_init.shape[0])]


def test_most_probable_stop_ends_each_fact_as_soon_as_its_object_is_the_greedy_choice(real_model):
    """Each fact's v* stops with its object the greedy choice everywhere (it was not before), on
    a shorter δ than the stop loss gives: the same trajectory, cut earlier."""
    cfg = MemitConfig()
    layer = cfg.layers[-1]
    problem = vstar._prepare(real_model, FACTS, layer, cfg)
    by_loss, _ = compute_v_star(real_model, FACTS, layer, cfg)
    early, _ = compute_v_star(real_model, FACTS, layer, dataclasses.replace(cfg, v_stop="most-probable"))
    assert _greedy_hits(real_model, problem, problem.h_init.T) == [False] * len(FACTS)
    assert _greedy_hits(real_model, problem, early) == [True] * len(FACTS)
    for i in range(len(FACTS)):
        moved_early = float((early[:, i] - problem.h_init[i]).norm())
        assert 0 < moved_early < float((by_loss[:, i] - problem.h_init[i]).norm())


def test_norm_penalty_shrinks_the_first_layer_update_and_the_batch_is_still_recalled(real_model):
    cfg = MemitConfig()
    covs, *_ = _load_or_compute_covariances(real_model, list(cfg.layers), cfg, cached_model_fingerprint(real_model), None, lambda *a: None)
    targets, _ = compute_v_star(real_model, FACTS, cfg.layers[-1], cfg)
    first = cfg.layers[0]
    norms = {}
    for rho in (0.0, 0.3):
        deltas, _ = solve_layers(real_model, FACTS, dataclasses.replace(cfg, norm_penalty=rho), prepare_covariances(covs, norm_penalty=rho), targets)
        norms[rho] = float((deltas[first].u @ deltas[first].v.T).norm())
        with applied(real_model, deltas):
            assert [r.recalled for r in audit(real_model, FACTS)] == [True] * len(FACTS)
    assert norms[0.3] < 0.95 * norms[0.0], norms
