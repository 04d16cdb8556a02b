"""MEMIT math on small shapes and the tiny Llama, in float64.

Convention under test (docs/MEMIT.md): W is (d_out, d_in) with out = W @ k; K (d_in × N),
R (d_out × N), C (d_in × d_in); ΔW = R Kᵀ (K Kᵀ + λC)⁻¹ = U Vᵀ with V = (λC)⁻¹K and
U = R (I + KᵀV)⁻¹; with constraint keys K_h, ΔW K_h = 0.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from memlog.core.facts import Fact
from memlog.core.covariance import compute_covariance
from memlog.core.keys import compute_keys
from memlog.core.memit import applied, memit_edit, prepare_covariances, solve_layers
from memlog.core.memit_hparams import MemitConfig
from memlog.core.solve import CovarianceFactor, NullSpaceError, constraint_basis, dense_constrained_update, dense_update, held_subspace, room_at, solve_update, whitened_basis
from memlog.core.vstar import compute_v_star, solve_v_star
from memlog.errors import UserError

F64 = torch.float64


def _problem(d_in=48, d_out=32, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    K = torch.randn(d_in, n, generator=g, dtype=F64)
    R = torch.randn(d_out, n, generator=g, dtype=F64)
    X = torch.randn(d_in, 4 * d_in, generator=g, dtype=F64)
    C = X @ X.T / X.shape[1]
    return K, R, C


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("lam", [0.1, 10.0, 1e4])
@pytest.mark.parametrize("n", [1, 4])
def test_factored_update_equals_dense_closed_form(lam, n):
    K, R, C = _problem(n=n)
    U, V = solve_update(K, R, C, lam, out_dtype=F64)
    assert U.shape == (R.shape[0], n) and V.shape == (K.shape[0], n)
    assert _rel(U @ V.T, dense_update(K, R, C, lam)) < 1e-9


def test_update_minimises_the_objective():
    K, R, C = _problem()
    lam = 2.0
    U, V = solve_update(K, R, C, lam, out_dtype=F64)
    best = U @ V.T

    def objective(D):
        return float(((D @ K - R) ** 2).sum() + lam * torch.trace(D @ C @ D.T))

    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        assert objective(best) <= objective(best + 1e-3 * torch.randn(best.shape, generator=g, dtype=F64))


def test_constrained_update_protects_every_constraint_key():
    K, R, C = _problem(n=2)
    K_h = torch.randn(K.shape[0], 10, generator=torch.Generator().manual_seed(3), dtype=F64)
    U, V = solve_update(K, R, C, 1.0, K_h, out_dtype=F64)
    delta = U @ V.T
    for j in range(K_h.shape[1]):
        k = K_h[:, j]
        assert (delta @ k).norm() <= 1e-4 * delta.norm() * k.norm()
    assert _rel(delta, dense_constrained_update(K, R, C, 1.0, K_h)) < 1e-9
    assert (delta @ K).norm() > 0.1 * R.norm()  # it still edits


def test_constrained_in_float32_keys_still_protects():
    K, R, C = _problem(n=1)
    K_h = torch.randn(K.shape[0], 30, generator=torch.Generator().manual_seed(4), dtype=F64)
    U, V = solve_update(K.float(), R.float(), C.float(), 10.0, K_h.float())
    delta = (U @ V.T).double()
    assert float((delta @ K_h).norm(dim=0).max()) <= 1e-4 * float(delta.norm()) * float(K_h.norm(dim=0).min())


def test_rank_deficient_constraints_are_reduced():
    K_h = torch.randn(20, 3, dtype=F64)
    K_h = torch.cat([K_h, K_h[:, :1] * 2.0, K_h[:, 1:2] + K_h[:, 2:3]], dim=1)
    assert constraint_basis(K_h).shape == (20, 3)


def test_full_rank_constraint_raises():
    K, R, C = _problem(d_in=16, n=1)
    K_h = torch.randn(16, 20, dtype=F64)
    with pytest.raises(NullSpaceError, match="span all 16"):
        solve_update(K, R, C, 1.0, K_h)


def test_key_inside_the_protected_span_raises():
    K, R, C = _problem(d_in=16, n=2)
    K_h = torch.cat([K[:, 1:2] * 3.0, torch.randn(16, 2, dtype=F64)], dim=1)
    with pytest.raises(NullSpaceError, match=r"new key\(s\) \[1\]"):
        solve_update(K, R, C, 1.0, K_h)
    assert isinstance(NullSpaceError("x"), UserError)


def _clustered_keys(d_in=40, m=24, strong=4, seed=5):
    """``m`` keys near ``strong`` directions (small noise): most of their energy in a few dimensions."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(d_in, strong, generator=g, dtype=F64)
    return centres[:, torch.arange(m) % strong] + 0.05 * torch.randn(d_in, m, generator=g, dtype=F64)


@pytest.mark.parametrize("energy", [0.9, 0.99, 0.999])
def test_held_subspace_keeps_the_fewest_directions_that_hold_the_energy(energy):
    H = _clustered_keys()
    H = H / H.norm(dim=0)
    Q = held_subspace(H, energy)
    assert torch.allclose(Q.T @ Q, torch.eye(Q.shape[1], dtype=F64), atol=1e-10)
    unheld = ((H - Q @ (Q.T @ H)).norm(dim=0) ** 2).mean()
    assert float(unheld) <= 1 - energy + 1e-12
    fewer = Q[:, :-1]  # one direction less no longer holds the energy
    assert float(((H - fewer @ (fewer.T @ H)).norm(dim=0) ** 2).mean()) > 1 - energy
    assert Q.shape[1] < H.shape[1]
    with pytest.raises(ValueError, match="held energy"):
        held_subspace(H, 0.0)


def test_held_energy_trades_exactness_for_rank():
    """``held_energy=1`` is the exact null space; below 1 the constraint costs fewer dimensions and
    leaves the protected keys' outputs nearly, not exactly, unchanged."""
    K, R, C = _problem(n=2)
    K_h = _clustered_keys(d_in=K.shape[0])
    exact, loose = {}, {}
    U, V = solve_update(K, R, C, 1.0, K_h, method="whitened", out_dtype=F64, info=exact)
    assert _rel(U @ V.T, dense_constrained_update(K, R, C, 1.0, K_h)) < 1e-8
    U2, V2 = solve_update(K, R, C, 1.0, K_h, method="whitened", out_dtype=F64, info=loose, held_energy=0.99)
    assert exact["rank"] == K_h.shape[1] and loose["rank"] < exact["rank"]
    L = torch.linalg.cholesky(C)
    assert loose["rank"] == whitened_basis(L, K_h, energy=0.99).shape[1]
    # ΔW k = U K̃ᵀ (I − QQᵀ) k̃ with k̃ = L⁻¹k (λC = L Lᵀ): the mean of ‖ΔW k‖² / ‖k̃‖² over the
    # protected keys is at most ‖U K̃ᵀ‖² (1 − energy), and it is not zero
    whitened = torch.linalg.solve_triangular(L, K_h, upper=False).norm(dim=0)
    moved = (((U2 @ V2.T) @ K_h).norm(dim=0) / whitened) ** 2
    gain = torch.linalg.matrix_norm(U2 @ torch.linalg.solve_triangular(L, K, upper=False).T, ord=2)
    assert 1e-12 < float(moved.mean()) <= float(gain**2) * 0.01
    assert float(((U @ V.T) @ K_h).norm(dim=0).max()) <= 1e-9 * float((U @ V.T).norm() * K_h.norm(dim=0).max())
    with pytest.raises(ValueError, match="needs method='whitened'"):
        solve_update(K, R, C, 1.0, K_h, held_energy=0.99)


@pytest.mark.parametrize("energy", [1.0, 0.99])
@pytest.mark.parametrize("lam", [0.5, 50.0])
def test_room_at_gives_the_reach_of_a_one_key_solve(lam, energy):
    """A solve of one key alone moves its output by q / (1 + q) of the residual, q from ``room_at``;
    holding keys takes away the share of the whitened key in their span."""
    K, R, C = _problem(n=1)
    K_h = torch.cat([_clustered_keys(d_in=K.shape[0]), K + 0.3 * torch.randn(K.shape, generator=torch.Generator().manual_seed(5), dtype=F64)], dim=1)
    free, q = room_at(K, C, lam, K_h, energy=energy)
    info: dict = {}
    U, V = solve_update(K, R, C, lam, K_h, method="whitened", out_dtype=F64, held_energy=energy, info=info)
    assert _rel((U @ V.T) @ K, R * (q / (1 + q))) < 1e-9
    assert info["reach"] == pytest.approx((q / (1 + q)).tolist(), rel=1e-9)  # what the solve reports of itself
    free_alone, q_alone = room_at(K, C, lam)
    assert float(free_alone) == pytest.approx(1.0) and 0.0 < float(free) < 0.9
    assert float(q) == pytest.approx(float(free * q_alone), rel=1e-9)
    U0, V0 = solve_update(K, R, C, lam, out_dtype=F64)
    assert _rel((U0 @ V0.T) @ K, R * (q_alone / (1 + q_alone))) < 1e-9


@pytest.mark.parametrize("constrained", [False, True])
def test_norm_penalty_minimises_the_objective_with_the_frobenius_term(constrained):
    """ρ adds λρ·(tr C/d_in)·‖ΔW‖²_F: the solve equals the least-squares solution of the stacked
    system [K, √λ·C^½, √(λρc̄)·I] (an independent derivation), its norm falls as ρ grows, and a
    constrained solve still holds the protected keys exactly."""
    K, R, C = _problem(n=3)
    d_in, lam = K.shape[0], 2.0
    mean_eigenvalue = float(torch.trace(C)) / d_in
    K_h = torch.randn(d_in, 6, generator=torch.Generator().manual_seed(5), dtype=F64) if constrained else None
    norms = []
    for rho in (0.0, 0.1, 1.0, 10.0):
        U, V = solve_update(K, R, C, lam, K_h, out_dtype=F64, method="whitened" if constrained else "svd", norm_penalty=rho)
        delta = U @ V.T
        norms.append(float(delta.norm()))
        if not constrained:
            A = torch.cat([K, lam**0.5 * torch.linalg.cholesky(C), (lam * rho * mean_eigenvalue) ** 0.5 * torch.eye(d_in, dtype=F64)], dim=1)
            B = torch.cat([R, torch.zeros(R.shape[0], A.shape[1] - K.shape[1], dtype=F64)], dim=1)
            stacked = torch.linalg.lstsq(A.T, B.T).solution.T  # min ‖D A − B‖
            assert _rel(delta, stacked) < 1e-8
        else:
            assert float((delta @ K_h).norm()) <= 1e-9 * float(delta.norm() * K_h.norm())
        prepared = solve_update(K, R, CovarianceFactor.of(C, norm_penalty=rho), lam, K_h, out_dtype=F64, method="whitened" if constrained else "svd", norm_penalty=rho)
        assert _rel(prepared[0] @ prepared[1].T, delta) < 1e-9
    assert all(a > b for a, b in zip(norms, norms[1:])), norms
    with pytest.raises(ValueError, match="prepared for norm penalty 0.0"):
        solve_update(K, R, CovarianceFactor.of(C), lam, norm_penalty=0.5)
    with pytest.raises(ValueError, match=">= 0"):
        solve_update(K, R, C, lam, norm_penalty=-1.0)


def test_bad_lambda_raises():
    K, R, C = _problem()
    with pytest.raises(UserError):
        solve_update(K, R, C, 0.0)


# --------------------------------------------------------------------------- on the tiny Llama


def _cfg(**kw):
    base = MemitConfig(layers=(1, 2), v_steps=8, v_lr=0.5, n_prefixes=3, cov_samples=24, cov_seq_len=16, lam=1.0)
    return dataclasses.replace(base, **kw)


FACTS = [Fact("Aria Nakamura", "lives in", "Thessaloniki"), Fact("Lars Olsen", "works as a", "baker")]


@pytest.fixture(scope="module")
def tiny64(embedded_tokenizer):
    """The tiny random Llama in float64, shared by this module (tests restore what they change)."""
    from conftest import make_tiny_llama

    from memlog.core.adapter import LayerAdapter
    from memlog.core.model import LoadedModel, ModelSpec

    model = make_tiny_llama(dtype=F64)
    return LoadedModel(model, embedded_tokenizer, LayerAdapter.for_model(model), "tiny-llama-f64", "test", ModelSpec(model="tiny"))


@pytest.fixture(scope="module")
def covs64(tiny64):
    cfg = _cfg()
    result = compute_covariance(tiny64, cfg.layers, cfg)
    assert result.n_tokens == 24 * 15 and result.corpus_sha256.startswith("sha256:")
    for layer, C in result.covs.items():
        assert C.dtype == torch.float32 and C.device.type == "cpu" and torch.allclose(C, C.T)
    return result.covs


def _weights(lm, layers):
    return {layer: lm.adapter.edit_weight_view(lm.model, layer).detach().clone() for layer in layers}


def test_memit_edit_restores_weights_bit_identically(tiny64, covs64):
    cfg = _cfg()
    before = {name: p.detach().clone() for name, p in tiny64.model.named_parameters()}
    result = memit_edit(tiny64, FACTS, cfg, covs64)
    for name, p in tiny64.model.named_parameters():
        assert torch.equal(p, before[name]), name
    assert set(result.deltas) == {1, 2}
    for layer, f in result.deltas.items():
        assert f.u.shape == (64, 2) and f.v.shape == (128, 2) and f.keys.shape == (128, 2)
        assert f.u.dtype == f.v.dtype == torch.float32 and f.u.device.type == "cpu"
    assert set(result.timings) >= {"v_star", "keys", "solve"} and result.seconds > 0
    assert len(result.v_losses) == len(result.v_norms) == 2


def test_weights_are_restored_when_a_layer_fails(tiny64, covs64):
    cfg = _cfg()
    before = _weights(tiny64, cfg.layers)
    constraint = {2: torch.randn(128, 200, dtype=F64)}  # layer 2 has no room left, after layer 1 was applied
    with pytest.raises(NullSpaceError):
        memit_edit(tiny64, FACTS[:1], cfg, covs64, constraint_keys=constraint)
    for layer, w in before.items():
        assert torch.equal(tiny64.adapter.edit_weight_view(tiny64.model, layer), w)


def test_edit_moves_the_last_layer_residual_to_its_target(tiny64, covs64):
    """With a small λ the layer updates together reach z* at the last edit layer."""
    from memlog.core.forward import residual_at
    from memlog.core.keys import build_prompt_batch, fact_contexts

    cfg = _cfg(lam=1e-4, n_prefixes=1)
    targets, _ = compute_v_star(tiny64, FACTS, cfg.layers[-1], cfg)
    deltas, _ = solve_layers(tiny64, FACTS, cfg, covs64, targets)
    batch = build_prompt_batch(tiny64, fact_contexts(FACTS, [""]))
    rows = torch.arange(2)

    def z():
        with torch.no_grad():
            return residual_at(tiny64, batch.input_ids, cfg.layers[-1])[rows, batch.subject_last].T.float()

    before = z()
    with applied(tiny64, deltas):
        after = z()
    assert (after - targets).norm() < 0.05 * (targets - before).norm()


def test_constrained_edit_protects_keys_on_the_model(tiny64, covs64):
    cfg = _cfg()
    protected = [Fact("Mei Tanaka", "lives in", "Oslo"), Fact("Omar Haddad", "lives in", "Lima")]
    constraint = compute_keys(tiny64, protected, cfg.layers, cfg)
    result = memit_edit(tiny64, FACTS[:1], cfg, covs64, constraint_keys=constraint)
    for layer, f in result.deltas.items():
        delta = (f.u @ f.v.T).double()
        for j in range(constraint[layer].shape[1]):
            k = constraint[layer][:, j].double()
            assert (delta @ k).norm() <= 1e-4 * delta.norm() * k.norm()


def test_v_star_lowers_the_object_loss(tiny64):
    cfg = _cfg(v_stop_loss=0.0, clamp_norm_factor=100.0, v_steps=10)  # a random model needs a large delta
    _, untrained = compute_v_star(tiny64, FACTS, 2, dataclasses.replace(cfg, v_steps=0))
    solved = solve_v_star(tiny64, FACTS, 2, cfg)
    trained = solved.nll
    assert (trained < untrained - 0.02).all(), (trained, untrained)  # logits of a random model barely move
    assert torch.allclose(solved.nll_before, untrained, atol=1e-6)  # the NLL before is the unedited model's
    grouped = solve_v_star(tiny64, [FACTS[0], FACTS[0], FACTS[1]], 2, cfg, groups=[0, 0, 1])  # the joint path records it too
    assert torch.allclose(grouped.nll_before, untrained[[0, 0, 1]], atol=1e-6)


def test_batched_and_single_edits_share_the_code_path(tiny64, covs64):
    """A batch gives each fact the v* and keys it gets alone; the solve then spans all N keys."""
    cfg = _cfg(v_steps=4)
    batch_targets, batch_nll = compute_v_star(tiny64, FACTS, 2, cfg)
    batch_keys = compute_keys(tiny64, FACTS, cfg.layers, cfg)
    for i, fact in enumerate(FACTS):
        targets, nll = compute_v_star(tiny64, [fact], 2, cfg)
        assert torch.allclose(targets[:, 0], batch_targets[:, i], atol=1e-4, rtol=1e-4)
        assert abs(float(nll[0]) - float(batch_nll[i])) < 1e-4
        keys = compute_keys(tiny64, [fact], cfg.layers, cfg)
        for layer in cfg.layers:
            assert torch.allclose(keys[layer][:, 0], batch_keys[layer][:, i], atol=1e-5)
    single = memit_edit(tiny64, FACTS[:1], cfg, covs64)
    batched = memit_edit(tiny64, FACTS, cfg, covs64)
    assert all(f.u.shape[1] == 1 for f in single.deltas.values())
    assert all(f.u.shape[1] == 2 for f in batched.deltas.values())


def test_config_validation():
    with pytest.raises(UserError):
        MemitConfig(layers=())
    for bad in (0, -1.0, float("nan"), float("inf"), True):
        with pytest.raises(UserError, match="--lam must be a positive, finite number"):
            MemitConfig(lam=bad)
    for bad in (-0.1, float("nan"), float("inf"), 1e7):
        with pytest.raises(UserError, match="--norm-penalty must be >= 0"):
            MemitConfig(norm_penalty=bad)
    with pytest.raises(UserError, match="unknown v\\* stop 'sometimes'"):
        MemitConfig(v_stop="sometimes")
    assert MemitConfig(layers=(5, 3, 3)).layers == (3, 5)


def test_memit_edit_input_checks(tiny64, covs64):
    with pytest.raises(UserError, match="at least one fact"):
        memit_edit(tiny64, [], _cfg(), covs64)
    with pytest.raises(UserError, match="no covariance"):
        memit_edit(tiny64, FACTS, _cfg(layers=(0, 1)), covs64)
    with pytest.raises(UserError, match="out of range"):
        memit_edit(tiny64, FACTS, _cfg(layers=(1, 9)), covs64)


def test_prepared_covariance_gives_the_same_update():
    K, R, C = _problem(n=2)
    K_h = torch.randn(K.shape[0], 5, dtype=F64)
    for constraint in (None, K_h):
        plain = solve_update(K, R, C, 7.0, constraint, out_dtype=F64)
        prepared = solve_update(K, R, CovarianceFactor.of(C), 7.0, constraint, out_dtype=F64)
        assert _rel(prepared[0] @ prepared[1].T, plain[0] @ plain[1].T) < 1e-9


def test_norm_penalty_shrinks_every_layer_update_on_the_model(tiny64, covs64):
    plain = memit_edit(tiny64, FACTS, _cfg(), prepare_covariances(covs64))
    penalised = memit_edit(tiny64, FACTS, _cfg(norm_penalty=1.0), prepare_covariances(covs64, norm_penalty=1.0))
    assert plain.v_losses == penalised.v_losses  # v* does not depend on the penalty
    first = _cfg().layers[0]
    norm = {name: float((r.deltas[first].u @ r.deltas[first].v.T).norm()) for name, r in (("plain", plain), ("penalised", penalised))}
    assert 0 < norm["penalised"] < norm["plain"]
    with pytest.raises(ValueError, match="prepared for norm penalty 0.0, not 1.0"):
        memit_edit(tiny64, FACTS, _cfg(norm_penalty=1.0), prepare_covariances(covs64))


def test_memit_edit_accepts_prepared_covariances(tiny64, covs64):
    cfg = _cfg()
    plain = memit_edit(tiny64, FACTS[:1], cfg, covs64)
    prepared = memit_edit(tiny64, FACTS[:1], cfg, prepare_covariances(covs64))
    for layer in cfg.layers:
        a, b = plain.deltas[layer], prepared.deltas[layer]
        assert torch.allclose(a.u @ a.v.T, b.u @ b.v.T, rtol=1e-4, atol=1e-7)


def test_layerwise_reader_matches_full_passes(tiny64):
    """Resuming from a cached block input gives the same keys/residuals as re-running everything."""
    from memlog.core.keys import LayerwiseReader, build_prompt_batch, fact_contexts, keys_and_residual

    batch = build_prompt_batch(tiny64, fact_contexts(FACTS, ["", "Note: "]))
    reader = LayerwiseReader(tiny64, batch, 2, 3)
    g = torch.Generator().manual_seed(0)
    before = _weights(tiny64, [1, 2, 3])
    try:
        for layer in (1, 2, 3):
            keys, residual = reader.read(layer)
            full_keys, full_residual = keys_and_residual(tiny64, batch, 2, [layer], 3)
            assert torch.allclose(keys, full_keys[layer], atol=1e-10)
            assert torch.allclose(residual, full_residual, atol=1e-10)
            weight = tiny64.adapter.edit_weight_view(tiny64.model, layer)
            weight += 0.1 * torch.randn(weight.shape, generator=g, dtype=weight.dtype)
    finally:
        for layer, w in before.items():
            tiny64.adapter.edit_weight_view(tiny64.model, layer).copy_(w)


def test_v_star_scores_each_object_token_at_the_position_that_predicts_it(tiny):
    """Position p predicts token p + 1: the last prompt token predicts the object's first token."""
    from memlog.core import vstar

    cfg = _cfg()
    facts = [Fact("Aria Nakamura", "lives in", "Thessaloniki"), Fact("Lars Olsen", "lives in", "Oslo")]
    problem = vstar._prepare(tiny, facts, 2, cfg)
    runner = problem.runner
    cols = problem.target_cols + runner.split[problem.target_rows]  # back to absolute positions
    prompt_ids = [tiny.tokenizer(p + f.prompt)["input_ids"] for f in facts for p in vstar.context_prefixes(cfg.n_prefixes, 0)]
    for row, col, token, fact in zip(problem.target_rows.tolist(), cols.tolist(), problem.target_ids.tolist(), problem.target_fact.tolist()):
        target = vstar.object_token_ids(tiny.tokenizer, facts[fact].object)
        j = col - (len(prompt_ids[row]) - 1)
        assert 0 <= j < len(target) and target[j] == token
    assert problem.target_ids.numel() == sum(len(vstar.object_token_ids(tiny.tokenizer, f.object)) for f in facts) * cfg.n_prefixes


def test_a_batch_narrowed_to_its_unfinished_facts_gives_each_the_v_star_it_gets_alone(tiny64, monkeypatch):
    """With a stop loss between the two facts' starting losses, one fact is frozen at step 0 and
    the batch narrows to the other (its rows only); both still get their single-fact v*."""
    _, start = compute_v_star(tiny64, FACTS, 2, _cfg(v_steps=0, v_stop_loss=0.0))
    cfg = _cfg(v_steps=6, v_stop_loss=float(start.mean()), clamp_norm_factor=100.0)
    easy = int(start.argmin())
    from memlog.core import vstar

    narrowed = []
    real_narrow = vstar._narrow
    monkeypatch.setattr(vstar, "_narrow", lambda *a: narrowed.append(a[4].tolist()) or real_narrow(*a))
    batch_targets, batch_nll = compute_v_star(tiny64, FACTS, 2, cfg)
    assert narrowed == [[1 - easy]]
    for i, fact in enumerate(FACTS):
        targets, nll = compute_v_star(tiny64, [fact], 2, cfg)
        assert torch.allclose(targets[:, 0], batch_targets[:, i], atol=1e-4, rtol=1e-4)
        assert abs(float(nll[0]) - float(batch_nll[i])) < 1e-4
    unmoved, _ = compute_v_star(tiny64, [FACTS[easy]], 2, _cfg(v_steps=0))
    assert torch.equal(batch_targets[:, easy], unmoved[:, 0])  # frozen at step 0: the unedited residual
    assert not torch.allclose(batch_targets[:, 1 - easy], compute_v_star(tiny64, [FACTS[1 - easy]], 2, _cfg(v_steps=0))[0][:, 0])


def test_c_is_the_mean_of_its_keys_outer_products_so_their_mean_q_is_the_key_dimension(tiny):
    """The premise of a constrained store's default λ (``store_lam``: 2 × the key dimension):
    C is the mean of k kᵀ over the reference keys it was computed from, so those keys' mean
    q = kᵀC⁻¹k is tr(C⁻¹C) = d_in. A change to C's normalisation (a sum, a centred covariance)
    would change what λ = 2 d_in means, and fails here."""
    from memlog.core.memit_hparams import CONSTRAINED_LAM_PER_KEY_DIM, UNCONSTRAINED_LAM, store_lam

    cfg = MemitConfig(layers=(1,), cov_samples=24, cov_seq_len=16)
    seen: list[torch.Tensor] = []
    hook = tiny.adapter.mlp_out(tiny.model, 1).register_forward_pre_hook(lambda _m, args: seen.append(args[0][:, 1:].reshape(-1, args[0].shape[-1]).double()))
    try:
        result = compute_covariance(tiny, [1], cfg)
    finally:
        hook.remove()
    keys = torch.cat(seen)  # every key C was estimated from: position 0 of each window left out, as in C
    d = keys.shape[1]
    assert keys.shape[0] == result.n_tokens > d
    C = result.covs[1].double()
    assert torch.allclose(C, keys.T @ keys / keys.shape[0], rtol=1e-4, atol=1e-6)
    q = (keys * torch.linalg.solve(C, keys.T).T).sum(dim=1)
    assert q.mean().item() == pytest.approx(d, rel=1e-3)
    assert store_lam(d, True) == CONSTRAINED_LAM_PER_KEY_DIM * d == 256.0 and store_lam(d, False) == UNCONSTRAINED_LAM
    assert MemitConfig().lam is None and MemitConfig().solve_lam == UNCONSTRAINED_LAM and MemitConfig(lam=3000).solve_lam == 3000.0
