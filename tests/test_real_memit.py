"""MEMIT on the embedded SmolLM2-135M (slower; marked ``real_model``). Every test restores the weights."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from memlog.core.covariance import compute_covariance
from memlog.core.memit import applied, memit_edit, solve_layers
from memlog.core.memit_hparams import MemitConfig
from memlog.core.pool import fact_pool
from memlog.core.recall import audit, complete, is_recalled
from memlog.core.vstar import compute_v_star

pytestmark = pytest.mark.real_model

PARIS = "The capital of France is"


@pytest.fixture(scope="module")
def cfg() -> MemitConfig:
    return dataclasses.replace(MemitConfig(), cov_samples=100)  # half the samples keeps the suite quick


@pytest.fixture(scope="module")
def covs(real_model, cfg):
    return compute_covariance(real_model, cfg.layers, cfg).covs


def _snapshot(lm, layers):
    return {layer: lm.adapter.edit_weight_view(lm.model, layer).detach().clone() for layer in layers}


def test_base_model_knows_paris(real_model):
    assert complete(real_model, [PARIS], max_new_tokens=2)[0].startswith(" Paris")


def test_single_fact_efficacy(real_model, cfg, covs):
    """Five pool facts, each injected alone into the base model, are recalled; Paris is kept."""
    facts = fact_pool(5)
    assert not any(r.recalled for r in audit(real_model, facts))
    before = _snapshot(real_model, cfg.layers)
    targets, _ = compute_v_star(real_model, facts, cfg.layers[-1], cfg)  # per-fact early stop: same v* as alone
    for i, fact in enumerate(facts):
        deltas, _ = solve_layers(real_model, [fact], cfg, covs, targets[:, i : i + 1])
        with applied(real_model, deltas):
            got = complete(real_model, [fact.prompt, PARIS], max_new_tokens=5)
        assert is_recalled(got[0], fact.object), (str(fact), got[0])
        assert is_recalled(got[1], "Paris"), got[1]
    for layer, w in before.items():
        assert torch.equal(real_model.adapter.edit_weight_view(real_model.model, layer), w)


def test_constrained_edit_is_recalled_and_protects_keys(real_model, cfg, covs):
    first, second = fact_pool(7)[5:7]
    before = _snapshot(real_model, cfg.layers)
    edit_a = memit_edit(real_model, [first], cfg, covs)
    assert all(torch.equal(real_model.adapter.edit_weight_view(real_model.model, layer), w) for layer, w in before.items())
    with applied(real_model, edit_a.deltas):
        protected = {layer: f.keys for layer, f in edit_a.deltas.items()}
        edit_b = memit_edit(real_model, [second], cfg, covs, constraint_keys=protected)
        for layer, f in edit_b.deltas.items():
            delta = f.u.double() @ f.v.double().T
            k = protected[layer][:, 0].double()
            assert (delta @ k).norm() <= 1e-4 * delta.norm() * k.norm(), layer
        with applied(real_model, edit_b.deltas):
            results = audit(real_model, [first, second])
    assert [r.recalled for r in results] == [True, True], results
    for layer, w in before.items():
        assert torch.equal(real_model.adapter.edit_weight_view(real_model.model, layer), w)
