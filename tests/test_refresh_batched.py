"""Sleep's batched refresh (``memlog.engine.refresh_batch``): the math, and the engine on the tiny model.

- the batch's constrained least-squares solve equals its dense closed form for any keys;
- it equals the per-fact path (each refresh constrained by the healthy keys and the keys
  refreshed before it) when the refreshed keys are orthogonal in the constrained metric
  ``S_P`` (``k_iᵀ S_P k_j = 0``), to 1e-6; and it differs when they are not;
- on the tiny Llama with real MEMIT, a batched sleep logs one revert and one refresh per
  degraded fact, each refresh holding one column (``correct``: no revert, each refresh its
  injected column and its column of the correction), and the log replays to the live weights.
"""

from __future__ import annotations

import pytest
import torch

from memlog.core.adapter import LayerAdapter
from memlog.core.memit import MemitConfig
from memlog.core.model import LoadedModel, ModelSpec
from memlog.core.pool import fact_pool
from memlog.core.solve import constraint_basis, dense_constrained_update, solve_update
from memlog.engine.config import EngineConfig
from memlog.engine.open import init_memory, open_memory
from memlog.store.events import EditRefreshed, EditReverted, RecallAudited
from tests.conftest import make_tiny_llama

F64 = torch.float64


def _problem(d_in=40, d_out=24, n=4, m=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    K = torch.randn(d_in, n, generator=g, dtype=F64)
    R = torch.randn(d_out, n, generator=g, dtype=F64)
    X = torch.randn(d_in, 4 * d_in, generator=g, dtype=F64)
    K_h = torch.randn(d_in, m, generator=g, dtype=F64)
    return K, R, X @ X.T / X.shape[1], K_h


def _projected_inverse(C, lam, K_h):
    S = torch.linalg.inv(lam * C)
    Q = constraint_basis(K_h)
    return S - S @ Q @ torch.linalg.solve(Q.T @ S @ Q, Q.T @ S)


def _sp_orthogonal(K, S_P):
    """Gram-Schmidt of K's columns in the inner product <a, b> = aᵀ S_P b (the span changes, the first key stays)."""
    cols = []
    for j in range(K.shape[1]):
        k = K[:, j].clone()
        for q in cols:
            k = k - (q @ S_P @ k) / (q @ S_P @ q) * q
        cols.append(k)
    return torch.stack(cols, dim=1)


def _sequential(K, R, C, lam, K_h):
    total = torch.zeros(R.shape[0], K.shape[0], dtype=F64)
    constraints = K_h
    for j in range(K.shape[1]):
        U, V = solve_update(K[:, j : j + 1], R[:, j : j + 1], C, lam, constraints, out_dtype=F64)
        total += U @ V.T
        constraints = torch.cat([constraints, K[:, j : j + 1]], dim=1)
    return total


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def test_batched_constrained_solve_equals_its_dense_closed_form():
    K, R, C, K_h = _problem()
    U, V = solve_update(K, R, C, 2.0, K_h, out_dtype=F64)
    assert _rel(U @ V.T, dense_constrained_update(K, R, C, 2.0, K_h)) < 1e-9


def test_batched_equals_sequential_when_keys_are_orthogonal_in_the_constrained_metric():
    K, R, C, K_h = _problem()
    lam = 2.0
    K = _sp_orthogonal(K, _projected_inverse(C, lam, K_h))
    U, V = solve_update(K, R, C, lam, K_h, out_dtype=F64)
    assert _rel(U @ V.T, _sequential(K, R, C, lam, K_h)) < 1e-6


def test_batched_and_sequential_differ_for_general_keys():
    K, R, C, K_h = _problem(seed=1)
    U, V = solve_update(K, R, C, 2.0, K_h, out_dtype=F64)
    assert _rel(U @ V.T, _sequential(K, R, C, 2.0, K_h)) > 1e-3


CHEAP = MemitConfig(layers=(1, 2), cov_samples=24, v_steps=10)


def _tiny(tokenizer) -> LoadedModel:
    model = make_tiny_llama(seed=0)
    return LoadedModel(model=model, tokenizer=tokenizer, adapter=LayerAdapter.for_model(model), model_id="tiny-llama", source="test", spec=ModelSpec(model="tiny-llama"))


def _weights(lm) -> list[bytes]:
    return [lm.adapter.edit_weight_view(lm.model, layer).detach().numpy().tobytes() for layer in CHEAP.layers]


@pytest.mark.parametrize("strategy", ["reinject", "correct"])
def test_batched_sleep_on_the_tiny_model_logs_one_pair_per_fact_and_replays(tmp_path, embedded_tokenizer, monkeypatch, strategy):
    monkeypatch.setenv("MEMLOG_CACHE", str(tmp_path / "cache"))
    lm = _tiny(embedded_tokenizer)
    engine = EngineConfig(wake="unconstrained", ppl_bound=None, cap=50, batch_refresh=True, stale_after=None, refresh_strategy=strategy)
    mem = init_memory(tmp_path / "s", ModelSpec(model="tiny-llama"), lm=lm, memit=CHEAP, engine=engine)
    try:
        mem.inject(fact_pool(6, seed=3), batch_size=6)
        degraded = [r.fact_id for r in mem.ledger.last_audit.results if not r.recalled]
        assert len(degraded) >= 2, "a random tiny model should not recall most facts"
        mem.sleep(cycles=1)
        pre = next(e.event for e in mem.logged if isinstance(e.event, RecallAudited) and e.event.phase == "sleep-pre")
        degraded = [r.fact_id for r in pre.results if not r.recalled]
        refreshed = [i.event for i in mem.logged if isinstance(i.event, EditRefreshed)]
        reverted = [i.event for i in mem.logged if isinstance(i.event, EditReverted)]
        assert [mem.ledger.entries[e.edit_id].fact_id for e in refreshed] == degraded
        assert all(e.n_constraint_keys == 6 - len(degraded) for e in refreshed)
        if strategy == "reinject":  # reverted, then its column of the batch
            assert [e.edit_id for e in reverted] == [e.edit_id for e in refreshed]
            assert all(d.packed.shape[1] == 1 for e in refreshed for d in e.deltas)
        else:  # kept: its injected column, then its column of the correction
            assert reverted == []
            assert all(d.packed.shape[1] == 2 for e in refreshed for d in e.deltas)
        live, head = _weights(lm), mem.ledger.last_weights_sha256
    finally:
        mem.close()
    again = _tiny(embedded_tokenizer)
    ro = open_memory(tmp_path / "s", lm=again, writable=False)
    try:
        assert _weights(again) == live and ro.project() == head
    finally:
        ro.close()
