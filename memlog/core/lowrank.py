"""The SVD of a product of tall factors, U Vᵀ, without forming it.

``factored_svd(U, V)`` (U: d_out × R, V: d_in × R) returns ``(L, σ, Rt)`` with
``U Vᵀ = L diag(σ) Rt`` and σ descending: a thin QR of each factor, then the SVD of the small
core ``R_u R_vᵀ`` (at most min(d_out, R) × min(d_in, R)), in float64. It is the shared step of
truncating a memory to a LoRA rank (``memlog.adapters.lowrank``) and of consolidating the
applied edits (``memlog.engine.consolidate``).
"""

from __future__ import annotations

import torch


def factored_svd(u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L, σ, Rt) with ``u @ v.T == L @ diag(σ) @ Rt`` (float64, σ descending)."""
    if u.ndim != 2 or v.ndim != 2 or u.shape[1] != v.shape[1]:
        raise ValueError(f"factors do not fit together: U {tuple(u.shape)}, V {tuple(v.shape)}")
    qu, ru = torch.linalg.qr(u.to(torch.float64))
    qv, rv = torch.linalg.qr(v.to(torch.float64))
    p, sigma, vh = torch.linalg.svd(ru @ rv.T)
    return qu @ p, sigma, vh @ qv.T
