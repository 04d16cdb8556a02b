"""The weight projection: the one module that writes model tensors.

For every edit layer ``l``::

    W_l = cast( W_base,l  +  Σ_{applied entries, in creation order}  s_i · U_i,l V_i,lᵀ )

computed from float32 master copies of the base weights taken when the projector is
built (before any edit is applied), with one torch thread and deterministic kernels
(``memlog.core.determinism.pinned``), whatever the caller's settings. The sum is one matmul over the concatenated factors
in a fixed order, so the same ledger always gives bit-identical tensors: a revert or a
prune is a rebuild from the sum, never a subtraction, and replay equals the live model.

A consolidation (``memlog.projections.consolidation``) replaces its members' factors in the
sum by its own, minus the stored factors of members no longer in it; the sum is then over
those terms, still one matmul in a fixed order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

from memlog.core.adapter import LayerAdapter
from memlog.core.determinism import pinned
from memlog.projections.consolidation import projection_terms
from memlog.projections.ledger import LedgerEntry
from memlog.store.deltas import BlobLoader, read_ab, read_uv
from memlog.store.events import ConsolidatedLayer
from memlog.store.records import LayerDelta



class WeightProjector:
    """Holds base-weight master copies and writes ``W_base + Σ s·U Vᵀ`` into the model."""

    def __init__(self, model: torch.nn.Module, adapter: LayerAdapter, layers: Sequence[int], load_blob: BlobLoader):
        self.model = model
        self.adapter = adapter
        self.layers = list(layers)
        self._load_blob = load_blob
        self._factor_cache: dict[tuple[str, ...], tuple[torch.Tensor, torch.Tensor]] = {}  # per instance: blob shas -> (U, V) on the weight's device
        self._base: dict[int, torch.Tensor] = {}
        for layer in self.layers:
            view = adapter.edit_weight_view(model, layer)
            self._base[layer] = view.detach().to(torch.float32).clone()

    def base_weight(self, layer: int) -> torch.Tensor:
        return self._base[layer]

    def _factors(self, delta: LayerDelta | ConsolidatedLayer, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        consolidated = isinstance(delta, ConsolidatedLayer)
        key = (delta.factors.sha256,) if consolidated else tuple(ref.sha256 for _, ref in delta.refs())
        cached = self._factor_cache.get(key)
        if cached is None:
            arrays = read_ab(delta, self._load_blob) if consolidated else read_uv(delta, self._load_blob)
            cached = tuple(torch.from_numpy(np.ascontiguousarray(f)).to(device=device, dtype=torch.float32) for f in arrays)
            self._factor_cache[key] = cached
        return cached

    def layer_sum(self, layer: int, entries: Sequence[LedgerEntry]) -> torch.Tensor:
        """``W_base + Σ s·U Vᵀ`` for one layer in float32 (not written anywhere)."""
        base = self._base[layer]
        us, vs = [], []
        for term in projection_terms(entries):
            for delta in term.factors:
                if delta.layer != layer:
                    continue
                u, v = self._factors(delta, base.device)
                us.append(u * term.coef)
                vs.append(v)
        if not us:
            return base.clone()
        return torch.addmm(base, torch.cat(us, dim=1), torch.cat(vs, dim=1).T)

    @torch.no_grad()
    def project(self, entries: Sequence[LedgerEntry], layers: Sequence[int] | None = None) -> str:
        """Write the projection for ``entries`` (in the given order) into the model; return the weights hash.

        Runs under ``pinned()``: one thread and deterministic kernels, whatever the caller set.
        """
        with pinned():
            for layer in layers if layers is not None else self.layers:
                target = self.adapter.edit_weight_view(self.model, layer)
                target.copy_(self.layer_sum(layer, entries).to(target.dtype))
        return self.weights_sha256()

    @torch.no_grad()
    def write(self, weights: dict[int, torch.Tensor]) -> str:
        """Write given edit-layer weights (d_out × d_in, e.g. a truncated projection or tensors saved
        earlier) into the model, cast to its dtype; return the weights hash."""
        for layer, weight in weights.items():
            target = self.adapter.edit_weight_view(self.model, layer)
            target.copy_(weight.to(device=target.device, dtype=target.dtype))
        return self.weights_sha256()

    @torch.no_grad()
    def weights_sha256(self) -> str:
        """sha256 of the edit layers' current weights, exactly as stored in the model."""
        return weights_sha256(self.model, self.adapter, self.layers)


def weights_sha256(model: torch.nn.Module, adapter: LayerAdapter, layers: Sequence[int]) -> str:
    h = hashlib.sha256()
    for layer in layers:
        w = adapter.edit_weight_view(model, layer).detach()
        raw = w.to("cpu").contiguous()
        if raw.dtype == torch.bfloat16:
            raw = raw.view(torch.int16)
        h.update(str(layer).encode())
        h.update(raw.numpy().tobytes())
    return h.hexdigest()
