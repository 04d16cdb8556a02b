"""Layer deltas as blobs: write one packed blob per layer, read either on-disk layout.

``write_layer_delta`` stores an edit's factors at one layer as a single array, [U; V; keys]
stacked by rows, and returns the ``LayerDelta`` that names it. ``read_uv`` returns (U, V) for a
``LayerDelta`` of either layout: packed (schema 2) or three separate blobs (schema 1), and
``read_factors`` all three. ``write_consolidated_layer`` / ``read_ab`` do the same for a
consolidation's factor pair, [A; B] stacked by rows (no keys).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from memlog.store.blobs import to_numpy
from memlog.store.events import ConsolidatedLayer
from memlog.store.records import BlobRef, LayerDelta

BlobLoader = Callable[[BlobRef], np.ndarray]


def pack_factors(u: Any, v: Any, keys: Any) -> np.ndarray:
    """[U; V; keys] stacked by rows, float32: (d_out + 2·d_in) × N."""
    u, v, keys = (to_numpy(x).astype(np.float32, copy=False) for x in (u, v, keys))
    if u.ndim != 2 or v.ndim != 2 or keys.ndim != 2:
        raise ValueError(f"factors must be matrices, got U {u.shape}, V {v.shape}, keys {keys.shape}")
    if not (u.shape[1] == v.shape[1] == keys.shape[1]) or v.shape[0] != keys.shape[0]:
        raise ValueError(f"factor shapes do not fit together: U {u.shape}, V {v.shape}, keys {keys.shape}")
    return np.concatenate([u, v, keys], axis=0)


def write_layer_delta(blobs, layer: int, u: Any, v: Any, keys: Any) -> LayerDelta:
    """Store the packed factors (content-addressed) and return the delta that names them."""
    packed = blobs.put(pack_factors(u, v, keys))
    return LayerDelta(layer=layer, packed=packed, d_out=int(u.shape[0]))


def split_packed(delta: LayerDelta, array: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U, V, keys) views of a packed array."""
    d_in = (array.shape[0] - delta.d_out) // 2
    return array[: delta.d_out], array[delta.d_out : delta.d_out + d_in], array[delta.d_out + d_in :]


def read_factors(delta: LayerDelta, load: BlobLoader) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U, V, keys) of the delta, whichever layout it was written in."""
    if delta.packed is not None:
        return split_packed(delta, load(delta.packed))
    return load(delta.u), load(delta.v), load(delta.keys)


def read_uv(delta: LayerDelta, load: BlobLoader) -> tuple[np.ndarray, np.ndarray]:
    """(U, V) of the delta, whichever layout it was written in."""
    if delta.packed is not None:
        u, v, _ = split_packed(delta, load(delta.packed))
        return u, v
    return load(delta.u), load(delta.v)


def write_target(blobs, targets: Any, column: int) -> BlobRef | None:
    """Store column ``column`` of v*'s targets (d_model × N) as a float32 vector; None without targets."""
    if targets is None:
        return None
    return blobs.put(np.ascontiguousarray(to_numpy(targets)[:, column], dtype=np.float32))


def write_consolidated_layer(blobs, layer: int, a: Any, b: Any) -> ConsolidatedLayer:
    """Store a consolidation's factors at one layer as one blob [A; B] (float32)."""
    a, b = (to_numpy(x).astype(np.float32, copy=False) for x in (a, b))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.shape[1] < 1:
        raise ValueError(f"consolidated factors do not fit together: A {a.shape}, B {b.shape}")
    return ConsolidatedLayer(layer=layer, factors=blobs.put(np.concatenate([a, b], axis=0)), d_out=int(a.shape[0]))


def read_ab(layer: ConsolidatedLayer, load: BlobLoader) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) of a consolidation's layer: ΔW ≈ A Bᵀ."""
    array = load(layer.factors)
    return array[: layer.d_out], array[layer.d_out :]
