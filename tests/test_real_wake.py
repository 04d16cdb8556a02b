"""Constrained wake on the embedded SmolLM2-135M: the exact key-space guarantee, the protected
facts' greedy completions, and two facts about one subject (marked ``real_model``; the
weights are restored)."""

from __future__ import annotations

import pytest
import torch

from memlog.core.facts import Fact
from memlog.core.fingerprint import cached_model_fingerprint
from memlog.core.keys import KeyReader, bare_prompt_batch
from memlog.core.memit import MemitConfig, Protection, applied, memit_edit, prepare_covariances
from memlog.core.pool import mixed_pool
from memlog.core.recall import audit, object_tokens
from memlog.engine.open import _load_or_compute_covariances

pytestmark = [
    pytest.mark.real_model,
]


@pytest.fixture(scope="module")
def setup(real_model):
    cfg = MemitConfig()
    covs, *_ = _load_or_compute_covariances(real_model, list(cfg.layers), cfg, cached_model_fingerprint(real_model), None, lambda *a: None)
    return cfg, prepare_covariances(covs)


def _stack(lm, cfg, covs, facts):
    """Each fact edited in turn (unconstrained) onto the weights; returns the combined deltas."""
    from memlog.core.memit import LayerFactors

    total = {}
    for fact in facts:
        with applied(lm, total):
            deltas = memit_edit(lm, [fact], cfg, covs).deltas
        for layer, f in deltas.items():
            old = total.get(layer)
            total[layer] = f if old is None else LayerFactors(u=torch.cat([old.u, f.u], 1), v=torch.cat([old.v, f.v], 1), keys=torch.cat([old.keys, f.keys], 1))
    return total


def _residuals(lm, deltas, facts) -> list[float]:
    batch, rows, cols = bare_prompt_batch(lm, facts)
    reader = KeyReader(lm, batch.input_ids, rows, cols)
    out = []
    for layer in sorted(deltas):
        k = reader.read(layer).double()
        dw = deltas[layer].u.double() @ deltas[layer].v.double().T
        out += ((dw @ k).norm(dim=0) / (dw.norm() * k.norm(dim=0))).tolist()
    return out


def _merge(a, b):
    from memlog.core.memit import LayerFactors

    return {layer: LayerFactors(u=torch.cat([a[layer].u, b[layer].u], 1), v=torch.cat([a[layer].v, b[layer].v], 1), keys=torch.cat([a[layer].keys, b[layer].keys], 1)) for layer in a}


def test_constrained_edit_keeps_protected_keys_and_completions(real_model, setup):
    cfg, covs = setup
    pool = mixed_pool(4, seed=3)
    old, new = pool[:3], pool[3]
    base = _stack(real_model, cfg, covs, old)
    with applied(real_model, base):
        n = max(object_tokens(real_model, f.object) for f in old)
        before = audit(real_model, old, max_new_tokens=n)
        edit = memit_edit(real_model, [new], cfg, covs, protect=Protection(tuple(old)))
    with applied(real_model, _merge(base, edit.deltas)):
        after = audit(real_model, old + [new], max_new_tokens=n)
        worst = max(_residuals(real_model, edit.deltas, old))
    assert all(b.recalled for b in before), before
    assert worst <= 1e-4
    assert [a.completion for a in after[:-1]] == [b.completion for b in before]
    assert after[-1].recalled, after[-1]


def test_two_facts_about_one_subject_both_survive(real_model, setup):
    cfg, covs = setup
    lives, works = Fact("Aria Nakamura", "lives in", "Oslo"), Fact("Aria Nakamura", "works as a", "pilot")
    base = _stack(real_model, cfg, covs, [lives])
    with applied(real_model, base):
        assert audit(real_model, [lives])[0].recalled
        joint = memit_edit(real_model, [works, lives], cfg, covs, protect=Protection(()))  # what the constrained wake does
    with applied(real_model, _merge(base, joint.deltas)):
        got = audit(real_model, [lives, works])
    assert all(r.recalled for r in got), got
