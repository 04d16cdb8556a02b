"""Determinism for experiments: one call fixes every source of randomness a run touches.

``seed_everything(seed, threads)`` seeds Python's ``random``, NumPy and torch (CPU and
every CUDA device), fixes torch's intra-op thread count, and asks torch for
deterministic algorithms (``warn_only=True``, so an op without a deterministic kernel
warns instead of failing). On CUDA it also sets ``CUBLAS_WORKSPACE_CONFIG`` (needed for
deterministic cuBLAS) unless the caller already set it; that must happen before the
first cuBLAS call, which is why experiments call this before loading the model.

What it cannot fix: a different thread count, torch build or CPU instruction set can
change float reductions, so bit-identical re-execution is promised on the same machine
with the same settings, and the settings applied are returned so a run can record them.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from memlog.core import determinism


def default_threads() -> int:
    """The thread count a run uses when none is given: torch's current setting."""
    return int(torch.get_num_threads())


def seed_everything(seed: int, threads: int | None = None) -> dict:
    """Seed python/numpy/torch, fix the thread count, enable deterministic algorithms.

    Returns the settings applied (for the experiment's record).
    """
    threads = default_threads() if threads is None else int(threads)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    determinism.apply(threads)
    return {
        "seed": seed,
        "threads": threads,
        "deterministic_algorithms": True,
        "torch": torch.__version__,
    }
