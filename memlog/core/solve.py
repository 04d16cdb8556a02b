"""The MEMIT least-squares update in factored (Woodbury) form, optionally null-space constrained.

Convention (see docs/MEMIT.md): the edited weight is ``W`` (d_out × d_in) with ``out = W @ k``.
``K`` (d_in × N) holds the new keys as columns, ``R`` (d_out × N) the wanted change of the
outputs at those keys, ``C`` (d_in × d_in) the mean of ``k kᵀ`` over reference tokens.
The update minimises ``‖ΔW K − R‖² + λ·tr(ΔW C ΔWᵀ)``, whose solution is

    ΔW = R Kᵀ (K Kᵀ + λC)⁻¹ = U Vᵀ,  V = (λC)⁻¹ K,  U = R (I + Kᵀ V)⁻¹      (Woodbury)

With constraint keys ``K_h`` (d_in × M) the same objective is minimised subject to
``ΔW K_h = 0``. With ``Q`` an orthonormal basis of span(K_h) and ``S = (λC)⁻¹``:

    S_P = S − S Q (Qᵀ S Q)⁻¹ Qᵀ S,  V = S_P K,  U = R (I + Kᵀ S_P K)⁻¹,  ΔW = U Vᵀ

so ``Vᵀ K_h = 0``. No dense d_out × d_in matrix is formed.

``method="whitened"`` computes the same ``S_P K`` without an SVD: with ``λC = L Lᵀ``,
``S_P = L⁻ᵀ (I − Q̃Q̃ᵀ) L⁻¹`` where ``Q̃`` is an orthonormal basis of span(L⁻¹K_h), taken from
a Householder QR of the column-normalised whitened keys (columns whose QR diagonal falls
below ``rank_rtol`` × the largest are dropped). Two triangular solves and one QR of
d_in × M, about half the work of the SVD path at M = 1,000, and ``Vᵀ K_h = K̃_Pᵀ L⁻¹K_h``
vanishes to rounding because ``K̃_P`` is projected off the same orthonormal ``Q̃``.

**Norm penalty** (``norm_penalty`` ρ > 0): the objective also charges the update's Frobenius norm,
``+ λρc̄·‖ΔW‖²_F`` with ``c̄ = tr(C)/d_in`` the mean eigenvalue of C. That is the same solve with C
replaced by ``C + ρc̄·I`` (``penalised_covariance``), so every formula above holds unchanged,
the constraint stays exact, and a prepared ``CovarianceFactor`` carries its ρ.

**Held energy** (``held_energy`` < 1, whitened only): ``Q̃`` spans only the leading left singular
vectors of the column-normalised whitened keys that carry that share of their squared length.
The constraint then costs fewer key dimensions (rank) and is no longer exact: the mean over the
protected keys of the unheld part ``‖(I − Q̃Q̃ᵀ) k̃‖² / ‖k̃‖²`` is at most ``1 − held_energy``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from memlog.errors import UserError

RANK_RTOL = 1e-6  # singular values of the (column-normalised) constraint keys below this × max are dropped
SPAN_TOL = 1e-5  # a new key whose component outside span(K_h) is below this × its norm cannot be edited


class NullSpaceError(UserError):
    """The null-space constraint leaves no room for the requested edit."""


def _cholesky(A: torch.Tensor, what: str) -> torch.Tensor:
    """Cholesky factor of a symmetric PSD matrix, adding a tiny jitter if it is singular."""
    factor, info = torch.linalg.cholesky_ex(A)
    if int(info) == 0:
        return factor
    scale = (A.diagonal().abs().mean() or A.new_tensor(1.0)).item()
    for eps in (1e-12, 1e-10, 1e-8, 1e-6):
        eye = torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
        factor, info = torch.linalg.cholesky_ex(A + eps * scale * eye)
        if int(info) == 0:
            return factor
    raise UserError(f"{what} is not positive definite (is the covariance computed from enough tokens, and λ > 0?)")


def penalised_covariance(C: torch.Tensor, norm_penalty: float) -> torch.Tensor:
    """``C + ρ·(tr C / d_in)·I``: solving with it adds ``λρ·(tr C / d_in)·‖ΔW‖²_F`` to the objective."""
    if not (norm_penalty >= 0 and math.isfinite(norm_penalty)):
        raise ValueError(f"the norm penalty must be finite and >= 0, got {norm_penalty}")
    if norm_penalty == 0:
        return C
    mean_eigenvalue = C.diagonal().sum() / C.shape[0]
    return C + norm_penalty * mean_eigenvalue * torch.eye(C.shape[0], dtype=C.dtype, device=C.device)


@dataclass(frozen=True)
class CovarianceFactor:
    """A layer's C with its Cholesky factor, prepared once so that each edit skips the O(d_in³)
    factorisation (``chol(λC) = √λ · chol(C)``). Pass it wherever a covariance tensor is accepted.
    ``norm_penalty`` ρ: the factor is of ``penalised_covariance(C, ρ)``; a solve asked for another ρ refuses it."""

    cov: torch.Tensor  # (d_in, d_in), as given (without the penalty)
    chol: torch.Tensor  # lower Cholesky factor of the penalised C, in the solve dtype and device
    norm_penalty: float = 0.0

    @classmethod
    def of(cls, cov: torch.Tensor, device=None, dtype: torch.dtype = torch.float64, norm_penalty: float = 0.0) -> "CovarianceFactor":
        device = device if device is not None else cov.device
        penalised = penalised_covariance(cov.to(device, dtype), norm_penalty)
        return cls(cov=cov, chol=_cholesky(penalised, "the covariance C"), norm_penalty=float(norm_penalty))

    @property
    def shape(self) -> torch.Size:
        return self.cov.shape


def _scaled_factor(C, lam: float, device, dtype, norm_penalty: float = 0.0) -> torch.Tensor:
    """Cholesky factor of λ·(C + ρc̄I), reusing a prepared ``CovarianceFactor`` when given one."""
    if isinstance(C, CovarianceFactor):
        if C.norm_penalty != norm_penalty:
            raise ValueError(f"the covariance factor was prepared for norm penalty {C.norm_penalty}, not {norm_penalty}")
        return math.sqrt(lam) * C.chol.to(device, dtype)
    return _cholesky(lam * penalised_covariance(C.to(device, dtype), norm_penalty), "λ·C")


def constraint_basis(constraint_keys: torch.Tensor, rtol: float = RANK_RTOL) -> torch.Tensor:
    """An orthonormal basis (d_in × r) of span(K_h); directions below ``rtol`` are dropped.

    Columns are normalised first so that the tolerance is per key, not dominated by large keys.
    """
    norms = constraint_keys.norm(dim=0)
    keep = norms > 0
    if not bool(keep.any()):
        return constraint_keys.new_zeros(constraint_keys.shape[0], 0)
    unit = constraint_keys[:, keep] / norms[keep]
    basis, singular, _ = torch.linalg.svd(unit, full_matrices=False)
    rank = int((singular > rtol * singular[0]).sum())
    return basis[:, :rank]


def _check_room(K: torch.Tensor, Q: torch.Tensor, span_tol: float) -> None:
    d_in, rank = Q.shape
    if rank >= d_in:
        raise NullSpaceError(
            f"the constraint keys span all {d_in} key dimensions; a constrained edit would be a no-op. "
            "Protect fewer edits (or edit more layers)."
        )
    outside = (K - Q @ (Q.T @ K)).norm(dim=0) / K.norm(dim=0).clamp_min(torch.finfo(K.dtype).tiny)
    inside = [i for i, frac in enumerate(outside.tolist()) if frac < span_tol]
    if inside:
        raise NullSpaceError(
            f"new key(s) {inside} lie inside the span of the protected keys (rank {rank}); the constraint "
            "leaves no room to edit them. This happens when a protected fact has the same subject."
        )


def _projected_inverse_times(L: torch.Tensor, K: torch.Tensor, Q: torch.Tensor, what: str) -> torch.Tensor:
    """S_P K with S = (L Lᵀ)⁻¹, without forming S_P; then project out Q to clean rounding."""
    SK = torch.cholesky_solve(K, L)
    SQ = torch.cholesky_solve(Q, L)
    QSQ = Q.T @ SQ
    QSQ = (QSQ + QSQ.T) / 2
    coef = torch.cholesky_solve(Q.T @ SK, _cholesky(QSQ, what))
    V = SK - SQ @ coef
    return V - Q @ (Q.T @ V)


def whitened_basis(L: torch.Tensor, K_h: torch.Tensor, rtol: float = RANK_RTOL, energy: float = 1.0) -> torch.Tensor:
    """An orthonormal basis of span(L⁻¹K_h) (d_in × r), r the rank of ``K_h`` (see the module doc).
    More than d_in keys span at most d_in dimensions: then the basis is the full space.

    ``energy`` < 1 keeps only the leading directions: the fewest left singular vectors of the
    column-normalised whitened keys whose squared singular values reach ``energy`` of their sum
    (``held_subspace``)."""
    d_in = K_h.shape[0]
    H = torch.linalg.solve_triangular(L, K_h, upper=False)
    norms = H.norm(dim=0)
    H = H[:, norms > 0] / norms[norms > 0]
    if H.shape[1] == 0:
        return H
    if energy < 1.0:
        return held_subspace(H, energy)
    if H.shape[1] >= d_in:
        return torch.eye(d_in, dtype=H.dtype, device=H.device)
    Q, R = torch.linalg.qr(H, mode="reduced")
    diag = R.diagonal().abs()
    return Q[:, diag > rtol * diag.max()]


def held_subspace(H: torch.Tensor, energy: float) -> torch.Tensor:
    """The leading left singular vectors of the unit columns ``H`` (d_in × M) holding ``energy``
    of their total squared length: with ``Q`` the result, the mean over the columns of
    ``‖(I − QQᵀ) h‖²`` is at most ``1 − energy`` (it is the dropped singular values' share)."""
    if not 0.0 < energy <= 1.0:
        raise ValueError(f"the held energy must be in (0, 1], got {energy}")
    # from the eigendecomposition of the smaller Gram matrix (σ² and the singular vectors;
    # about half the time of an SVD of d_in × M at M ~ 1,000 on the CPU)
    wide = H.shape[1] > H.shape[0]
    squares, vectors = torch.linalg.eigh(H @ H.T if wide else H.T @ H)
    squares, vectors = squares.flip(0).clamp_min(0), vectors.flip(1)
    share = squares.cumsum(0) / squares.sum()
    rank = min(int((share < energy - 1e-12).sum()) + 1, squares.numel())
    if wide:
        return vectors[:, :rank]
    U = H @ vectors[:, :rank] / squares[:rank].sqrt().clamp_min(torch.finfo(H.dtype).tiny)
    return torch.linalg.qr(U, mode="reduced")[0]  # orthonormal to rounding


def constraint_rank(K_h: torch.Tensor, C: "torch.Tensor | CovarianceFactor", lam: float, rtol: float = RANK_RTOL, energy: float = 1.0, norm_penalty: float = 0.0) -> int:
    """The rank ``solve_update(method="whitened", held_energy=energy)`` would count for the constraint keys ``K_h``."""
    L = _scaled_factor(C, lam, K_h.device, torch.float64, norm_penalty)
    return int(whitened_basis(L, K_h.to(torch.float64), rtol, energy).shape[1])


def whitened_projected(L: torch.Tensor, K: torch.Tensor, K_h: torch.Tensor, rtol: float, span_tol: float, energy: float = 1.0) -> tuple[torch.Tensor, int]:
    """``S_P K`` (the ``whitened`` method of the module doc) and the rank of ``K_h`` (of its held part)."""
    d_in = K.shape[0]
    Q = whitened_basis(L, K_h, rtol, energy)
    if Q.shape[1] == 0:
        return torch.cholesky_solve(K, L), 0
    if Q.shape[1] >= d_in:
        raise NullSpaceError(
            f"the constraint keys span all {d_in} key dimensions; a constrained edit would be a no-op. "
            "Protect fewer edits (or edit more layers)."
        )
    Kt = torch.linalg.solve_triangular(L, K, upper=False)
    Kp = Kt - Q @ (Q.T @ Kt)
    outside = Kp.norm(dim=0) / Kt.norm(dim=0).clamp_min(torch.finfo(K.dtype).tiny)
    inside = [i for i, frac in enumerate(outside.tolist()) if frac < span_tol]
    if inside:
        raise NullSpaceError(
            f"new key(s) {inside} lie inside the span of the protected keys (rank {Q.shape[1]}); the constraint "
            "leaves no room to edit them. This happens when a protected fact has the same subject."
        )
    return torch.linalg.solve_triangular(L.T, Kp, upper=True), int(Q.shape[1])


def room_at(
    K: torch.Tensor, C: "torch.Tensor | CovarianceFactor", lam: float, K_h: torch.Tensor | None = None, energy: float = 1.0, norm_penalty: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """How much a solve holding ``K_h`` (``energy`` of it) can still write at each column of ``K``.

    Returns ``(free, q)`` per column: ``free = ‖(I − Q̃Q̃ᵀ) k̃‖² / ‖k̃‖²``, the share of the whitened
    key (``k̃ = L⁻¹k``, ``λC = L Lᵀ``) outside the held keys' whitened span, and ``q = kᵀ S_P k =
    ‖(I − Q̃Q̃ᵀ) k̃‖²``. A solve of that key alone (``solve_update``) moves its output by
    ``q / (1 + q)`` of the residual asked for: its reach. Computed in float64."""
    L = _scaled_factor(C, lam, K.device, torch.float64, norm_penalty)
    Kt = torch.linalg.solve_triangular(L, K.to(torch.float64), upper=False)
    Kp = Kt
    if K_h is not None and K_h.numel():
        Q = whitened_basis(L, K_h.to(K.device, torch.float64), energy=energy)
        Kp = Kt - Q @ (Q.T @ Kt)
    q = Kp.square().sum(dim=0)
    return q / Kt.square().sum(dim=0).clamp_min(torch.finfo(torch.float64).tiny), q


def solve_update(
    K: torch.Tensor,
    R: torch.Tensor,
    C: "torch.Tensor | CovarianceFactor",
    lam: float,
    constraint_keys: torch.Tensor | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    out_dtype: torch.dtype = torch.float32,
    rank_rtol: float = RANK_RTOL,
    span_tol: float = SPAN_TOL,
    method: str = "svd",
    info: dict | None = None,
    held_energy: float = 1.0,
    norm_penalty: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors ``(U, V)`` (d_out × N, d_in × N) with ``ΔW = U Vᵀ``; see the module doc.

    Computed in ``dtype`` (float64 by default) on ``K``'s device, returned as ``out_dtype``. ``C``
    may be a prepared ``CovarianceFactor`` (same result, without re-factorising C). Raises ``NullSpaceError`` when
    the constraint leaves no room for the new keys. ``method`` is ``"svd"`` or ``"whitened"``
    (see the module doc); ``info``, when given, receives ``"rank"``: the rank of the constraint keys,
    and ``"reach"``: per new key, ``q/(1+q)`` with ``q = kᵀ S_P k`` (``room_at``).
    ``held_energy`` < 1 (``"whitened"`` only) holds the leading directions of the whitened constraint
    keys that carry that share of their energy instead of their whole span (``held_subspace``).
    ``norm_penalty`` ρ adds ``λρ·(tr C / d_in)·‖ΔW‖²_F`` to the objective (a prepared ``C`` must carry the same ρ).
    """
    if lam <= 0:
        raise UserError(f"λ must be positive, got {lam}")
    if held_energy < 1.0 and method != "whitened":
        raise ValueError("held_energy below 1 needs method='whitened'")
    d_in, n = K.shape
    if R.shape[1] != n or C.shape != (d_in, d_in):
        raise ValueError(f"shape mismatch: K {tuple(K.shape)}, R {tuple(R.shape)}, C {tuple(C.shape)}")
    device = K.device
    K64, R64 = K.to(device, dtype), R.to(device, dtype)
    L = _scaled_factor(C, lam, device, dtype, norm_penalty)
    rank = 0
    if constraint_keys is None or constraint_keys.numel() == 0:
        V = torch.cholesky_solve(K64, L)
    elif method == "whitened":
        V, rank = whitened_projected(L, K64, constraint_keys.to(device, dtype), rank_rtol, span_tol, held_energy)
        free = (K64 * V).sum(0) / (K64 * torch.cholesky_solve(K64, L)).sum(0)
        if bool((free <= 1e-10).any()):
            raise NullSpaceError("the constraint leaves (numerically) no room for the new keys: Kᵀ S_P K ≈ 0")
    else:
        Q = constraint_basis(constraint_keys.to(device, dtype), rank_rtol)
        rank = int(Q.shape[1])
        _check_room(K64, Q, span_tol)
        V = _projected_inverse_times(L, K64, Q, "Qᵀ(λC)⁻¹Q") if Q.shape[1] else torch.cholesky_solve(K64, L)
        free = (K64 * V).sum(0) / (K64 * torch.cholesky_solve(K64, L)).sum(0)
        if bool((free <= 1e-10).any()):
            raise NullSpaceError("the constraint leaves (numerically) no room for the new keys: Kᵀ S_P K ≈ 0")
    G = K64.T @ V
    G = (G + G.T) / 2
    if info is not None:
        info["rank"] = rank
        q = G.diagonal()
        info["reach"] = (q / (1 + q)).tolist()  # per key: the share of its residual a solve of it alone writes
    eye = torch.eye(n, dtype=dtype, device=device)
    U = torch.cholesky_solve(R64.T, _cholesky(eye + G, "I + KᵀV")).T
    return U.to(out_dtype), V.to(out_dtype)


def dense_update(K: torch.Tensor, R: torch.Tensor, C: torch.Tensor, lam: float) -> torch.Tensor:
    """The dense closed form ``R Kᵀ (K Kᵀ + λC)⁻¹`` (for tests; never used to edit)."""
    A = K @ K.T + lam * C
    return torch.linalg.solve(A, (R @ K.T).T).T


def dense_constrained_update(K: torch.Tensor, R: torch.Tensor, C: torch.Tensor, lam: float, constraint_keys: torch.Tensor) -> torch.Tensor:
    """The dense Lagrangian solution of the constrained problem (for tests; never used to edit).

    ``ΔW = R Kᵀ [M⁻¹ − M⁻¹Q(QᵀM⁻¹Q)⁻¹QᵀM⁻¹]`` with ``M = K Kᵀ + λC`` and ``Q`` a basis of span(K_h).
    """
    Q = constraint_basis(constraint_keys)
    M_inv = torch.linalg.inv(K @ K.T + lam * C)
    MQ = M_inv @ Q
    projected = M_inv - MQ @ torch.linalg.solve(Q.T @ MQ, MQ.T)
    return R @ K.T @ projected
