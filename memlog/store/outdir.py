"""A new directory written all or nothing: built hidden beside its final name, renamed into place.

``written_atomically(out, store_path)`` yields a hidden temporary directory beside ``out`` and
renames it to ``out`` when the block succeeds (removing it when the block fails), so a crash
never leaves a half-written directory under the final name. ``check_out`` refuses a target that
is a file, a non-empty directory, or inside a store (where ``gc`` could delete it). Used by the
exports (``memlog export``) and by ``memlog fork``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

from memlog.errors import UserError


def check_out(out: Path, store_path: Path | None = None, label: str = "--out") -> None:
    """Refuse an ``out`` inside the store (where it would mix with the store's files; under the
    blob store's tmp/ ``gc`` would delete it), a file, or a non-empty directory."""
    out = Path(out)
    if store_path is not None:
        store = Path(store_path).resolve()
        target = out.resolve()
        if target == store or store in target.parents:
            raise UserError(f"{label} {out} is inside the store {store_path}; pass a directory outside the store (nothing was written)")
    if out.exists() and not out.is_dir():
        raise UserError(f"{label} {out} is a file; pass a new directory")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"{label} {out} is not empty; pass a new or empty directory (nothing was written)")


@contextmanager
def written_atomically(out: Path, store_path: Path | None = None, label: str = "--out"):
    """Yield a hidden temporary directory beside ``out``; rename it to ``out`` when the block succeeds."""
    check_out(out, store_path, label)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.writing-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        check_out(out, store_path, label)  # nothing appeared there meanwhile
        if out.is_dir():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
