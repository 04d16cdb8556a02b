"""Content-addressed, write-once tensor store on Zarr v3 (``<store>/deltas.zarr``).

Every tensor memlog persists (low-rank delta factors U and V, the keys an edit was solved
for, covariance matrices) is a *blob*: one Zarr v3 array named by the sha256 of its
content. The hash covers the dtype name, the shape and the C-contiguous little-endian
bytes, so equal arrays share one blob and a blob can always be re-verified against its
name.

Layout inside the Zarr root::

    zarr.json              root group
    blobs/<sha256>/        one array per blob (zarr.json + a single chunk file ``c.0.0``)
    tmp/<uuid>/            arrays being written; renamed into blobs/ when complete

A blob is written into ``tmp/`` and then moved into ``blobs/`` with one ``os.rename``,
so a crash leaves at most a ``tmp/`` directory (removed by ``memlog gc``), never a half
written blob under its final name. Each array is a single chunk compressed with zstd at
a fixed level; the blob's identity does not depend on the compressed bytes anyway.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec
from zarr.storage import LocalStore

from memlog.errors import IntegrityError
from memlog.store.records import BlobRef

BLOBS_DIR = "blobs"
TMP_DIR = "tmp"
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_ALLOWED_KINDS = "biufc"  # bool, signed/unsigned int, float, complex
_ZSTD_LEVEL = 3


def short_sha(sha: str) -> str:
    """The first 12 hex digits of a sha256, for messages (``3fa2c1d2e5f6…``)."""
    return sha[:12] + "…"


def to_numpy(array: Any) -> np.ndarray:
    """A numpy view of ``array``; torch tensors are detached and moved to the CPU.

    bfloat16 tensors (which numpy cannot hold) are widened to float32, which is exact.
    """
    if hasattr(array, "detach") and hasattr(array, "cpu"):
        tensor = array.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":
            tensor = tensor.float()
        array = tensor.numpy()
    arr = np.asarray(array)
    if arr.dtype.kind not in _ALLOWED_KINDS:
        raise ValueError(f"cannot store an array of dtype {arr.dtype} as a blob (numeric dtypes only)")
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def content_sha256(arr: np.ndarray) -> str:
    """sha256 over ``"<dtype name>;<d0,d1,...>;"`` followed by the C-contiguous little-endian bytes."""
    arr = to_numpy(arr)
    digest = hashlib.sha256()
    digest.update(f"{arr.dtype.name};{','.join(str(d) for d in arr.shape)};".encode())
    digest.update(memoryview(arr).cast("B") if arr.size else b"")
    return digest.hexdigest()


def _check_sha(sha: str) -> str:
    if not _SHA_RE.match(sha):
        raise ValueError(f"not a sha256 hex digest: {sha!r}")
    return sha


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    """fsync every file under ``path`` and the directories themselves."""
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            _fsync_path(Path(dirpath) / name)
        _fsync_path(Path(dirpath))


class BlobStore:
    """Write-once, content-addressed arrays in a Zarr v3 LocalStore directory.

    ``BlobStore(root)`` creates the root group and its ``blobs``/``tmp`` groups if they
    are missing. Each blob is fsynced before it becomes visible, so a delta is on disk
    before the event that references it is committed.
    """

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self._created: list[str] = []  # blobs this object wrote (not those it found already stored)
        self._ensure_layout()

    def __repr__(self) -> str:
        return f"BlobStore({str(self.root)!r})"

    # ----------------------------------------------------------------- layout

    def _ensure_layout(self) -> None:
        if (self.root / "zarr.json").exists() and (self.root / BLOBS_DIR).is_dir() and (self.root / TMP_DIR).is_dir():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        group = zarr.open_group(LocalStore(self.root), mode="a")
        group.require_group(BLOBS_DIR)
        group.require_group(TMP_DIR)

    def _blob_dir(self, sha: str) -> Path:
        return self.root / BLOBS_DIR / _check_sha(sha)

    def _zarr_store(self) -> LocalStore:
        return LocalStore(self.root)

    # ------------------------------------------------------------------ write

    def put(self, array: Any) -> BlobRef:
        """Store ``array`` (numpy or torch) unless an equal blob exists; return its reference."""
        arr = to_numpy(array)
        ref = BlobRef(sha256=content_sha256(arr), shape=tuple(int(d) for d in arr.shape), dtype=arr.dtype.name)
        final = self._blob_dir(ref.sha256)
        if (final / "zarr.json").exists():
            return ref
        tmp_name = uuid.uuid4().hex
        self._write_array(f"{TMP_DIR}/{tmp_name}", arr)
        self._publish(self.root / TMP_DIR / tmp_name, final)
        self._created.append(ref.sha256)
        return ref

    def mark(self) -> int:
        """A position in this object's write history, for ``created_since``."""
        return len(self._created)

    def created_since(self, mark: int) -> list[str]:
        """The blobs this object wrote after ``mark`` (a unit of work that failed may drop them)."""
        return list(self._created[mark:])

    def _write_array(self, name: str, arr: np.ndarray) -> None:
        chunks = tuple(max(1, d) for d in arr.shape)
        z = zarr.create_array(
            self._zarr_store(),
            name=name,
            shape=arr.shape,
            dtype=arr.dtype,
            chunks=chunks,
            compressors=ZstdCodec(level=_ZSTD_LEVEL, checksum=True),
            chunk_key_encoding={"name": "default", "separator": "."},
            fill_value=0,
            overwrite=False,
        )
        if arr.size:
            z[...] = arr

    def _publish(self, tmp_path: Path, final: Path) -> None:
        """Move a complete array from tmp/ to its final name (atomic rename)."""
        _fsync_tree(tmp_path)
        try:
            os.rename(tmp_path, final)
        except OSError:
            # The same content was published meanwhile (rename onto a non-empty dir fails).
            if (final / "zarr.json").exists():
                shutil.rmtree(tmp_path, ignore_errors=True)
                return
            raise
        _fsync_path(final.parent)

    # ------------------------------------------------------------------- read

    def exists(self, ref: BlobRef | str) -> bool:
        """Cheap existence test (the blob's metadata file is present); no content check."""
        sha = ref if isinstance(ref, str) else ref.sha256
        return (self._blob_dir(sha) / "zarr.json").is_file()

    def _read(self, sha: str) -> np.ndarray:
        z = zarr.open_array(self._zarr_store(), path=f"{BLOBS_DIR}/{sha}", mode="r")
        arr = np.asarray(z[...])
        return arr if arr.flags.c_contiguous else arr.copy(order="C")

    def get(self, ref: BlobRef, verify: bool = True) -> np.ndarray:
        """The blob's array. Raises IntegrityError naming the sha if it is missing, unreadable,
        of the wrong shape/dtype, or (with ``verify``) its content does not hash to its name."""
        arr, problem = self._inspect(ref, verify=verify)
        if problem is not None:
            raise IntegrityError(f"{problem} (blob {ref.sha256} in {self.root})")
        return arr

    def check(self, ref: BlobRef) -> str | None:
        """A description of what is wrong with the blob, or None if it is intact."""
        return self._inspect(ref, verify=True)[1]

    def _inspect(self, ref: BlobRef, verify: bool) -> tuple[np.ndarray | None, str | None]:
        """(array, None) when the blob is intact, else (None, what is wrong)."""
        short = short_sha(ref.sha256)
        if not self.exists(ref):
            return None, f"blob {short} is missing"
        try:
            arr = self._read(ref.sha256)
        except Exception as exc:  # zarr/codec errors: truncated, garbled, bad metadata
            return None, f"blob {short} is unreadable ({type(exc).__name__}: {exc})"
        if tuple(arr.shape) != tuple(ref.shape) or arr.dtype.name != ref.dtype:
            expected = f"{ref.dtype}{list(ref.shape)}"
            return None, f"blob {short} is corrupt (holds {arr.dtype.name}{list(arr.shape)}, expected {expected})"
        if verify and content_sha256(arr) != ref.sha256:
            return None, f"blob {short} is corrupt (sha256 mismatch)"
        return arr, None

    # ------------------------------------------------------------ maintenance

    def list_blobs(self) -> set[str]:
        """The sha256 of every published blob."""
        blobs = self.root / BLOBS_DIR
        if not blobs.is_dir():
            return set()
        return {p.name for p in blobs.iterdir() if p.is_dir() and _SHA_RE.match(p.name)}

    def remove(self, sha: str) -> None:
        """Delete a blob (under the writer lock: ``gc``, or a writer dropping what a failed unit wrote).

        The blob is first renamed into ``tmp/`` (atomic), so an interrupted removal leaves a
        tmp leftover, never a half-deleted blob under its name.
        """
        src = self._blob_dir(sha)
        if not src.exists():
            return
        trash = self.root / TMP_DIR / f"removing-{uuid.uuid4().hex}"
        os.rename(src, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def list_tmp(self) -> list[str]:
        """Names of leftover in-progress writes under ``tmp/``."""
        tmp = self.root / TMP_DIR
        if not tmp.is_dir():
            return []
        return sorted(p.name for p in tmp.iterdir() if p.name != "zarr.json")

    def remove_tmp(self) -> list[str]:
        """Delete every leftover under ``tmp/``; returns their names."""
        removed = []
        for name in self.list_tmp():
            path = self.root / TMP_DIR / name
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(name)
        return removed
