"""Bytes on disk per edit per layer: a rank-1 MEMIT delta as stored, against a dense ΔW.

A single-fact MEMIT edit is rank 1 at each layer: memlog stores U (d_out×1), V (d_in×1)
and the keys it was solved for (d_in×1), float32, packed into one content-addressed Zarr
blob per layer (``memlog.store.deltas.write_layer_delta``, schema 2). This script writes
such a blob through ``BlobStore`` into a temporary store and measures it on disk, next to
the three separate blobs of the schema-1 layout, at two shapes:

* SmolLM2-135M (the embedded model): d_out=576, d_in=1536; target ≤ 1/100 of dense float32.
* Llama-3.1-8B: d_out=4096, d_in=14336; target ≤ 1/1000 (also computed from the shapes).

Two on-disk measures are reported: *file bytes* (the sizes of the files in the blob
directories: compressed chunks plus Zarr metadata) and *allocated bytes* (what ``du``
counts: whole filesystem blocks, including the directories themselves). At the 135M
shape the blobs are a few KiB, so block rounding dominates the allocated figure.

    .venv/bin/python bench/storage.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import add_repo_to_path, ratio_line  # noqa: E402

add_repo_to_path()
from memlog.store.blobs import BLOBS_DIR, BlobStore  # noqa: E402
from memlog.store.deltas import write_layer_delta  # noqa: E402

SHAPES = (
    # name, d_out, d_in, target ratio (stored / dense)
    ("SmolLM2-135M", 576, 1536, 1 / 100),
    ("Llama-3.1-8B", 4096, 14336, 1 / 1000),
)
DTYPE_BYTES = 4  # float32


def _disk_usage(paths: list[Path]) -> tuple[int, int, int]:
    """(file bytes, allocated bytes incl. directories, number of files) under ``paths``."""
    file_bytes = allocated = n_files = 0
    for root in paths:
        allocated += os.stat(root).st_blocks * 512
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames:
                allocated += os.stat(Path(dirpath) / name).st_blocks * 512
            for name in filenames:
                st = os.stat(Path(dirpath) / name)
                file_bytes += st.st_size
                allocated += st.st_blocks * 512
                n_files += 1
    return file_bytes, allocated, n_files


def _rank1_factors(d_out: int, d_in: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal((rows, 1)).astype(np.float32) for rows in (d_out, d_in, d_in))


def _write_packed(blobs: BlobStore, d_out: int, d_in: int, seed: int) -> list[Path]:
    """One rank-1 edit at one layer as memlog writes it: one packed blob; return its directory."""
    delta = write_layer_delta(blobs, 0, *_rank1_factors(d_out, d_in, seed))
    return [blobs.root / BLOBS_DIR / ref.sha256 for _, ref in delta.refs()]


def _write_separate(blobs: BlobStore, d_out: int, d_in: int, seed: int) -> list[Path]:
    """The schema-1 layout of the same kind of edit: U, V and keys as three blobs."""
    refs = [blobs.put(f) for f in _rank1_factors(d_out, d_in, seed)]
    return [blobs.root / BLOBS_DIR / ref.sha256 for ref in refs]


def _fmt(n: float) -> str:
    return f"{n:>13,.0f} B"


def _verdict(value: float, target: float) -> str:
    return "PASS" if value <= target else "FAIL"


def bench_shape(blobs: BlobStore, name: str, d_out: int, d_in: int, target: float) -> list[str]:
    dense = d_out * d_in * DTYPE_BYTES
    payload = (d_out + 2 * d_in) * DTYPE_BYTES
    file_bytes, allocated, n_files = _disk_usage(_write_packed(blobs, d_out, d_in, seed=d_out))
    old_file_bytes, old_allocated, old_files = _disk_usage(_write_separate(blobs, d_out, d_in, seed=d_out + 1))
    tag = name.split("-")[-1].lower()
    target_txt = f"target <= 1/{round(1 / target)}"
    print(f"\n{name}  (d_out={d_out}, d_in={d_in}; one edit, one layer)")
    print(f"  payload U+V+keys, from shapes     {_fmt(payload)}   = 1/{dense / payload:,.0f} of dense")
    print(f"  on disk, file bytes               {_fmt(file_bytes)}   = 1/{dense / file_bytes:,.0f} of dense   ({n_files} files in 1 blob)")
    print(f"  on disk, allocated (du)           {_fmt(allocated)}   = 1/{dense / allocated:,.0f} of dense   (incl. its directory)")
    print(f"  schema-1 layout (3 blobs), du     {_fmt(old_allocated)}   = 1/{dense / old_allocated:,.0f} of dense   ({old_files} files)")
    print(f"  dense float32 ΔW (d_out×d_in)     {_fmt(dense)}")
    return [
        ratio_line(f"storage_{tag}_shapes", payload, dense,
                   f"rank-1 U+V+keys over dense float32 ΔW, from shapes; {target_txt}: {_verdict(payload / dense, target)}"),
        ratio_line(f"storage_{tag}_file_bytes", file_bytes, dense,
                   f"file bytes on disk per edit per layer over dense float32 ΔW; {target_txt}: {_verdict(file_bytes / dense, target)}"),
        ratio_line(f"storage_{tag}_allocated", allocated, dense,
                   f"allocated bytes (du) per edit per layer over dense float32 ΔW; {target_txt}: {_verdict(allocated / dense, target)}"),
        ratio_line(f"storage_{tag}_packed_vs_separate", allocated, old_allocated,
                   f"allocated bytes, one packed blob over the schema-1 three blobs (file bytes {file_bytes / old_file_bytes:.2f})"),
    ]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="memlog-bench-storage-") as tmp:
        blobs = BlobStore(Path(tmp) / "deltas.zarr")
        block = os.statvfs(tmp).f_bsize
        print("memlog storage: bytes on disk per edit per layer for a rank-1 MEMIT delta")
        print(f"(U d_out×1, V d_in×1, keys d_in×1, float32, packed into one blob; BlobStore = Zarr v3, one zstd chunk per blob; "
              f"written to {tmp}, filesystem block {block} B)")
        ratios = []
        for name, d_out, d_in, target in SHAPES:
            ratios += bench_shape(blobs, name, d_out, d_in, target)
    print()
    for line in ratios:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
