"""The base-model fingerprint a store records at creation and checks at every open.

``model_fingerprint`` is a streaming sha256 over *every* tensor of the model's state dict
(embeddings, attention, MLPs, norms, head: name, dtype, shape and raw bytes, in name order;
a tensor that shares its storage with an earlier one, as tied embeddings do, is hashed as a
reference to it), prefixed ``model-sha256:``. Any change to any weight changes it.

Hashing a 135M-parameter model takes about a second, so ``cached_model_fingerprint``
keeps the result in a small JSON file under ``$MEMLOG_CACHE/fingerprints/``, keyed by the
identity of the files the weights were loaded from (each file's path, size and mtime, plus
the dtype and quantisation asked for). A file rewritten in place gets a new mtime and is
hashed again. A model given in memory, not loaded from a directory, is hashed every time.

Stores created before this fingerprint existed hold the older, narrower one
(``sha256:``, the edit layers' MLP output weights only; ``memlog.core.model.fingerprint``);
``fingerprint_for`` computes whichever kind a store recorded, and ``is_whole_model`` tells
them apart.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from memlog.core.model import LoadedModel, cache_dir, fingerprint

WHOLE_MODEL_PREFIX = "model-sha256:"
# Part of the cache key: a change to what ``model_fingerprint`` hashes must bump it, or a cached
# value computed the old way would be read back and refuse the stores made the new way.
FINGERPRINT_ALGORITHM = 2
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".json")


def is_whole_model(recorded: str) -> bool:
    """Whether a recorded fingerprint covers the whole model (not only the edit layers)."""
    return recorded.startswith(WHOLE_MODEL_PREFIX)


def model_fingerprint(model: nn.Module) -> str:
    """sha256 over every state-dict tensor (name, dtype, shape, bytes): the weights, not where they came from."""
    h = hashlib.sha256()
    seen: dict[tuple, str] = {}  # tied weights (embeddings and head) are hashed once
    for name, tensor in sorted(model.state_dict().items()):
        h.update(f"\x00{name}|{tensor.dtype}|{tuple(tensor.shape)}\x00".encode())
        storage = (tensor.device, tensor.data_ptr(), tuple(tensor.shape), tensor.stride(), tensor.dtype)
        if tensor.numel() and storage in seen:
            h.update(f"same as {seen[storage]}".encode())
            continue
        seen[storage] = name
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        if flat.numel():
            h.update(memoryview(flat.view(torch.uint8).numpy()))
    return WHOLE_MODEL_PREFIX + h.hexdigest()


def _file_identity(source: Path) -> list[list] | None:
    """(relative path, size, mtime_ns) of every weight and config file under ``source``."""
    try:
        files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
        identity = [[str(p.relative_to(source) if p != source else p.name), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    except OSError:
        return None
    return identity or None


def _cache_file(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return cache_dir() / "fingerprints" / f"{digest}.json"


def _read_cached(path: Path, key: dict) -> str | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key or not isinstance(data.get("fingerprint"), str):
        return None
    return data["fingerprint"]


def _write_cached(path: Path, key: dict, value: str) -> None:
    """Best effort: a cache that cannot be written only costs the next open a rehash."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump({"key": key, "fingerprint": value}, f)
        os.replace(tmp, path)
    except OSError:
        return


def cached_model_fingerprint(lm: LoadedModel) -> str:
    """``model_fingerprint`` of ``lm``'s base weights, cached by the identity of its files.

    Call it while the model holds its base weights (before any edit is projected).
    """
    source = Path(str(lm.source))
    identity = _file_identity(source) if source.exists() else None
    if identity is None:
        return model_fingerprint(lm.model)
    key = {
        "algorithm": FINGERPRINT_ALGORITHM,
        "source": str(source.resolve()),
        "files": identity,
        "dtype": lm.spec.dtype,
        "load_in_4bit": lm.spec.load_in_4bit,
    }
    path = _cache_file(key)
    cached = _read_cached(path, key)
    if cached is not None:
        return cached
    value = model_fingerprint(lm.model)
    _write_cached(path, key, value)
    return value


def fingerprint_for(recorded: str, lm: LoadedModel, layers: list[int], model_id: str) -> str:
    """The fingerprint of ``lm`` of the same kind as ``recorded`` (whole model, or the older edit-layer one)."""
    if is_whole_model(recorded):
        return cached_model_fingerprint(lm)
    return fingerprint(lm.model, lm.adapter, layers, model_id)
