"""Shared helpers of the measurement scripts (not part of the package)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from memlog.core.covariance import compute_covariance  # noqa: E402
from memlog.core.model import cache_dir  # noqa: E402


def log(message: str, stream=None) -> None:
    """One timestamped, flushed progress line (on stdout, or ``stream``: stderr where stdout carries data)."""
    print(time.strftime("%H:%M:%S"), message, file=stream or sys.stdout, flush=True)


def setup_threads() -> None:
    """Threads from ``MEMLOG_THREADS`` (default 1: on a shared machine extra OpenMP threads
    spin against other processes and can be several times slower)."""
    torch.set_num_threads(int(os.environ.get("MEMLOG_THREADS", 1)))


def cached_covariance(lm, cfg, log=print) -> dict[int, torch.Tensor]:
    """Covariance for ``cfg.layers``, cached on disk under the memlog cache (scripts only)."""
    name = f"cov-{'_'.join(map(str, cfg.layers))}-{cfg.cov_samples}x{cfg.cov_seq_len}.pt"
    path = cache_dir() / "scripts" / name
    if path.is_file():
        return torch.load(path)
    started = time.perf_counter()
    result = compute_covariance(lm, cfg.layers, cfg)
    log(f"covariance for layers {cfg.layers[0]}-{cfg.layers[-1]}: {time.perf_counter() - started:.1f}s, {result.n_tokens} tokens")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(result.covs, path)
    return result.covs


def write_json(path: str | None, payload) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=2))
