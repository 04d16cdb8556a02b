"""A layer's memory as one pair of low-rank factors, and its SVD truncation.

The projection writes ``W = W_base + Σ s_i U_i V_iᵀ`` per edit layer. Stacking the factors
column-wise gives ``ΔW = B A`` with ``B = [s_1 U_1 | s_2 U_2 | …]`` (d_out × R) and
``A = [V_1 | V_2 | …]ᵀ`` (R × d_in): exactly a LoRA pair with scaling 1.

``truncate(B, A, rank)`` keeps the ``rank`` largest singular directions of ``B A`` without
forming it (``memlog.core.lowrank.factored_svd``: QR of both factors, then the SVD of the small
core). The relative error
``‖ΔW − ΔW_r‖_F / ‖ΔW‖_F`` follows from the dropped singular values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from memlog.core.lowrank import factored_svd
from memlog.projections.consolidation import projection_terms
from memlog.projections.ledger import LedgerEntry
from memlog.store.deltas import BlobLoader, read_ab, read_uv
from memlog.store.events import ConsolidatedLayer



@dataclass
class LayerFactors:
    """``ΔW = b @ a`` for one layer: ``b`` (d_out × r), ``a`` (r × d_in), float32."""

    layer: int
    b: torch.Tensor
    a: torch.Tensor
    relative_error: float = 0.0  # of ΔW, after truncation

    @property
    def rank(self) -> int:
        return int(self.b.shape[1])

    def delta(self) -> torch.Tensor:
        return self.b @ self.a


def stacked_factors(entries: Sequence[LedgerEntry], layer: int, load_blob: BlobLoader) -> LayerFactors | None:
    """The factors the projection of ``entries`` stacks at ``layer``, in its order (None if no edit
    touches it): each applied edit's (s·U, V), or a consolidation's (A, B) standing for its members
    (``memlog.projections.consolidation.projection_terms``, the same terms the live weights use)."""
    us, vs = [], []
    for term in projection_terms(entries):
        for delta in term.factors:
            if delta.layer != layer:
                continue
            u, v = read_ab(delta, load_blob) if isinstance(delta, ConsolidatedLayer) else read_uv(delta, load_blob)
            us.append(torch.from_numpy(np.ascontiguousarray(u, dtype=np.float32)) * term.coef)
            vs.append(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)))
    if not us:
        return None
    return LayerFactors(layer=layer, b=torch.cat(us, dim=1), a=torch.cat(vs, dim=1).T.contiguous())


def truncate(factors: LayerFactors, rank: int) -> LayerFactors:
    """The best rank-``rank`` approximation of ``b @ a`` (Frobenius norm), in factored form."""
    if rank < 1:
        raise ValueError(f"rank must be at least 1, got {rank}")
    left, s, right = factored_svd(factors.b, factors.a.T)
    keep = min(rank, int(s.shape[0]))
    total = float(torch.sum(s**2))
    dropped = float(torch.sum(s[keep:] ** 2))
    new_b = left[:, :keep] * s[:keep]
    new_a = right[:keep]
    error = (dropped / total) ** 0.5 if total > 0 else 0.0
    return LayerFactors(layer=factors.layer, b=new_b.to(torch.float32), a=new_a.to(torch.float32).contiguous(), relative_error=error)
