"""Packed layer deltas (schema 2) and the separate-blob layout of schema 1: same weights, both readable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memlog.core.adapter import LayerAdapter
from memlog.projections.ledger import Ledger
from memlog.projections.weights import WeightProjector
from memlog.store.blobs import BlobStore
from memlog.store.deltas import pack_factors, read_uv, split_packed, write_layer_delta
from memlog.store.events import EventSchemaError, FactInjected, decode_event, encode_event
from memlog.store.records import FactRecord, LayerDelta
from tests.conftest import make_tiny_llama

LAYERS = [0, 1]


@pytest.fixture()
def blobs(tmp_path):
    return BlobStore(tmp_path / "deltas.zarr")


def _factors(rng, d_out: int, d_in: int, n: int):
    return tuple(rng.standard_normal(shape).astype(np.float32) for shape in ((d_out, n), (d_in, n), (d_in, n)))


def test_packed_round_trip_is_exact_and_one_blob(blobs):
    u, v, keys = _factors(np.random.default_rng(0), 7, 5, 2)
    delta = write_layer_delta(blobs, 3, torch.from_numpy(u), v, keys)
    assert [name for name, _ in delta.refs()] == ["packed"] and delta.packed.shape == (17, 2) and delta.d_out == 7
    assert [p.name for p in (blobs.root / "blobs").iterdir() if p.is_dir()] == [delta.packed.sha256]
    got_u, got_v, got_keys = split_packed(delta, blobs.get(delta.packed))
    assert np.array_equal(got_u, u) and np.array_equal(got_v, v) and np.array_equal(got_keys, keys)
    ru, rv = read_uv(delta, blobs.get)
    assert np.array_equal(ru, u) and np.array_equal(rv, v)


def test_mismatched_factors_are_refused(blobs):
    u, v, keys = _factors(np.random.default_rng(1), 7, 5, 2)
    with pytest.raises(ValueError, match="do not fit"):
        pack_factors(u, v, keys[:, :1])
    with pytest.raises(ValueError, match="do not fit"):
        pack_factors(u, v, keys[:4])


def test_layer_delta_needs_exactly_one_layout(blobs):
    u, v, keys = (blobs.put(x) for x in _factors(np.random.default_rng(2), 7, 5, 1))
    packed = write_layer_delta(blobs, 0, *_factors(np.random.default_rng(2), 7, 5, 1)).packed
    with pytest.raises(ValueError, match="either packed or all"):
        LayerDelta(layer=0, u=u, v=v)
    with pytest.raises(ValueError, match="both packed and separate"):
        LayerDelta(layer=0, u=u, v=v, keys=keys, packed=packed, d_out=7)
    with pytest.raises(ValueError, match="does not split"):
        LayerDelta(layer=0, packed=packed, d_out=8)


def _event(deltas: list[LayerDelta]) -> FactInjected:
    return FactInjected(edit_id="e00001", version=1, fact=FactRecord("f-1", "Aria", "lives in", "Porto"), deltas=deltas, v_loss=0.1)


def test_a_malformed_packed_delta_in_the_log_is_a_schema_error(blobs):
    packed = write_layer_delta(blobs, 0, *_factors(np.random.default_rng(3), 7, 5, 1))
    raw = encode_event(_event([packed])).decode().replace('"d_out":7', '"d_out":8')
    with pytest.raises(EventSchemaError, match="malformed FactInjected"):
        decode_event(raw)


def test_schema_1_and_packed_deltas_project_to_identical_weights(blobs):
    """A schema-1 event (three blobs per layer) and a packed one with the same factors give the same bits."""
    model = make_tiny_llama(vocab=512)
    adapter = LayerAdapter.for_model(model)
    d_out, d_in = adapter.edit_weight_view(model, 0).shape
    rng = np.random.default_rng(4)
    factors = {layer: _factors(rng, d_out, d_in, 2) for layer in LAYERS}
    legacy = [
        LayerDelta(layer=layer, u=blobs.put(u), v=blobs.put(v), keys=blobs.put(k)) for layer, (u, v, k) in factors.items()
    ]
    raw = encode_event(_event(legacy)).decode().replace('"schema":2', '"schema":1')
    assert '"schema":1' in raw and '"packed"' not in raw
    old = decode_event(raw)
    new = _event([write_layer_delta(blobs, layer, *f) for layer, f in factors.items()])
    projector = WeightProjector(model, adapter, LAYERS, blobs.get)
    sha_old = projector.project(Ledger.fold([(2, old)]).applied_entries())
    bytes_old = [adapter.edit_weight_view(model, layer).detach().numpy().tobytes() for layer in LAYERS]
    sha_new = projector.project(Ledger.fold([(2, new)]).applied_entries())
    bytes_new = [adapter.edit_weight_view(model, layer).detach().numpy().tobytes() for layer in LAYERS]
    assert sha_old == sha_new and bytes_old == bytes_new
    base = projector.project([])
    assert base != sha_new
