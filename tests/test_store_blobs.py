"""The Zarr blob store: content addressing, corruption detection, gc of orphans and tmp leftovers."""

from __future__ import annotations

import os

import numpy as np
import pytest

from memlog.errors import IntegrityError, UserError
from memlog.store.blobs import BlobStore, content_sha256
from memlog.store.events import FactInjected, StoreCreated
from memlog.store.records import FactRecord, LayerDelta
from memlog.store.store import Store, gc, verify_store

HEADER = StoreCreated(model_id="tiny", model_source="test", fingerprint="sha256:abc", layers=[4], dtype="float32", config={})


@pytest.fixture()
def blobs(tmp_path):
    return BlobStore(tmp_path / "deltas.zarr")


@pytest.fixture()
def store(tmp_path):
    with Store.create(tmp_path / "store", HEADER) as st:
        yield st


def _chunk(blobs: BlobStore, sha: str):
    return blobs.root / "blobs" / sha / "c.0.0"


def _inject(store: Store, edit_id: str, seed: int) -> FactInjected:
    rng = np.random.default_rng(seed)
    delta = LayerDelta(
        layer=4,
        u=store.blobs.put(rng.standard_normal((6, 1)).astype(np.float32)),
        v=store.blobs.put(rng.standard_normal((10, 1)).astype(np.float32)),
        keys=store.blobs.put(rng.standard_normal((10, 1)).astype(np.float32)),
    )
    fact = FactRecord(fact_id=f"f{seed}", subject=f"S{seed}", relation="r", object="o")
    return FactInjected(edit_id=edit_id, version=1, fact=fact, deltas=[delta], v_loss=0.0)


def test_content_addressing(blobs):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    ref = blobs.put(a)
    assert ref.shape == (3, 4) and ref.dtype == "float32" and ref.sha256 == content_sha256(a)
    assert blobs.put(a.copy()) == ref
    assert blobs.put(np.asfortranarray(a)) == ref  # layout does not matter, content does
    assert blobs.list_blobs() == {ref.sha256}
    # dtype and shape are part of the identity
    assert blobs.put(a.astype(np.float64)).sha256 != ref.sha256
    assert blobs.put(a.reshape(4, 3)).sha256 != ref.sha256
    assert len(blobs.list_blobs()) == 3
    back = blobs.get(ref)
    assert back.dtype == np.float32 and back.shape == (3, 4) and np.array_equal(back, a)
    assert blobs.check(ref) is None
    assert blobs.list_tmp() == []


def test_torch_tensors_are_accepted(blobs):
    torch = pytest.importorskip("torch")
    t = torch.arange(6, dtype=torch.float32, requires_grad=True).reshape(2, 3)
    ref = blobs.put(t)
    assert ref == blobs.put(np.arange(6, dtype=np.float32).reshape(2, 3))
    half = blobs.put(torch.ones(2, 2, dtype=torch.bfloat16))
    assert half.dtype == "float32"  # bfloat16 widened exactly
    assert np.array_equal(blobs.get(half), np.ones((2, 2), dtype=np.float32))


def test_write_once(blobs):
    a = np.ones((4, 1), dtype=np.float32)
    ref = blobs.put(a)
    chunk = _chunk(blobs, ref.sha256)
    mtime = chunk.stat().st_mtime_ns
    blobs.put(a)
    assert chunk.stat().st_mtime_ns == mtime


def test_missing_blob(blobs):
    ref = blobs.put(np.ones(3))
    blobs.remove(ref.sha256)
    assert blobs.check(ref).startswith(f"blob {ref.sha256[:12]}… is missing")
    with pytest.raises(IntegrityError, match=ref.sha256):
        blobs.get(ref)


def test_flipped_byte_in_chunk_is_detected(blobs):
    ref = blobs.put(np.random.default_rng(0).standard_normal((64, 1)).astype(np.float32))
    chunk = _chunk(blobs, ref.sha256)
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    chunk.write_bytes(bytes(raw))
    problem = blobs.check(ref)
    assert problem is not None and problem.startswith(f"blob {ref.sha256[:12]}…")
    assert "corrupt" in problem or "unreadable" in problem
    with pytest.raises(IntegrityError, match=ref.sha256):
        blobs.get(ref)


def test_swapped_chunk_is_a_sha_mismatch(blobs):
    """A well-formed chunk with the wrong content decodes fine; only the hash catches it."""
    rng = np.random.default_rng(1)
    a = blobs.put(rng.standard_normal((32, 1)).astype(np.float32))
    b = blobs.put(rng.standard_normal((32, 1)).astype(np.float32))
    _chunk(blobs, a.sha256).write_bytes(_chunk(blobs, b.sha256).read_bytes())
    assert blobs.check(a) == f"blob {a.sha256[:12]}… is corrupt (sha256 mismatch)"
    assert blobs.check(b) is None
    # a deleted chunk reads as the fill value, which also fails the hash
    os.remove(_chunk(blobs, b.sha256))
    assert blobs.check(b) == f"blob {b.sha256[:12]}… is corrupt (sha256 mismatch)"


def test_shape_mismatch_and_bad_metadata(blobs):
    ref = blobs.put(np.zeros((2, 3), dtype=np.float32) + 1)
    wrong = type(ref)(sha256=ref.sha256, shape=(3, 2), dtype="float32")
    assert "expected float32[3, 2]" in blobs.check(wrong)
    (blobs.root / "blobs" / ref.sha256 / "zarr.json").write_text("{not json")
    assert "unreadable" in blobs.check(ref)


def test_verify_names_edit_version_and_layer(store):
    event = _inject(store, "e00003", seed=3)
    store.append([event])
    assert verify_store(store) == []
    v = event.deltas[0].v
    other = store.blobs.put(np.random.default_rng(99).standard_normal((10, 1)).astype(np.float32))
    _chunk(store.blobs, v.sha256).write_bytes(_chunk(store.blobs, other.sha256).read_bytes())
    assert verify_store(store) == [f"edit e00003 v1 layer 4: blob {v.sha256[:12]}… is corrupt (sha256 mismatch) [v, seq 2]"]


def test_gc_removes_orphans_and_tmp_keeps_referenced(store):
    kept = _inject(store, "e00001", seed=1)
    store.append([kept])
    orphan = _inject(store, "e00002", seed=2)  # blobs written, event never committed (a crash)
    store.blobs._write_array("tmp/deadbeef", np.ones(5, dtype=np.float32))  # a half-finished put
    (store.blobs.root / "tmp" / "cafebabe").mkdir()
    referenced = {r.sha256 for d in kept.deltas for r in (d.u, d.v, d.keys)}
    orphans = {r.sha256 for d in orphan.deltas for r in (d.u, d.v, d.keys)}
    assert store.blobs.list_blobs() == referenced | orphans
    assert store.blobs.list_tmp() == ["cafebabe", "deadbeef"]
    assert verify_store(store) == []  # orphans are not problems
    removed = gc(store)
    assert sorted(removed) == sorted([f"blob {s}" for s in orphans] + ["tmp/cafebabe", "tmp/deadbeef"])
    assert store.blobs.list_blobs() == referenced
    assert store.blobs.list_tmp() == []
    assert verify_store(store) == []
    assert gc(store) == []


def test_gc_needs_the_writer_lock(store):
    reader = Store.open(store.path, writable=False)
    with pytest.raises(UserError, match="writable"):
        gc(reader)


def test_covariance_sized_blob(blobs):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 1536)).astype(np.float32)
    cov = x.T @ x / 300
    ref = blobs.put(cov)
    assert np.array_equal(blobs.get(ref), cov)
    assert blobs.check(ref) is None
