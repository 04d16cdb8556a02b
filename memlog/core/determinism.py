"""Deterministic torch settings: the one place that pins them.

Replay is exact because the weights are a fixed-order sum of stored factors (see
``memlog.projections.weights``); a float sum can still depend on how torch splits it over
threads, and some kernels have non-deterministic variants. ``pinned`` fixes both for a block
and puts the previous settings back afterwards:

- ``threads``: torch's intra-op thread count for the block (``None`` leaves it alone);
- deterministic algorithms (``warn_only``, so an op without a deterministic kernel warns
  instead of failing) and, on CUDA, cuDNN's deterministic mode without autotuning.

The weight projector runs every projection (inject, sleep, replay, verify, why, export)
under ``pinned(PROJECTION_THREADS)``, so a log written with one thread count replays to the
same hashes with another. The engine's MEMIT solves run under ``pinned(None)``:
deterministic kernels at the caller's thread count (their factors are stored, never
recomputed by a replay). ``apply`` sets the same switches for good (experiments do that once).

``command_threads`` is the thread count the CLI's store commands run at: ``$MEMLOG_THREADS``,
else ``DEFAULT_THREADS`` (1). On a 2-core machine with another CPU-bound process, torch's
default (one thread per core) makes each parallel region wait for a thread the OS has
descheduled; one thread does not wait (docs/RESULTS.md, "Speed", has the measurement).
Replay does not depend on it: projections always pin ``PROJECTION_THREADS``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import os

import torch

PROJECTION_THREADS = 1  # the projection is a small low-rank sum: one thread costs little and fixes its order
THREADS_ENV = "MEMLOG_THREADS"
DEFAULT_THREADS = 1  # the CLI's store commands, unless $MEMLOG_THREADS says otherwise


def command_threads() -> int:
    """The intra-op thread count for a CLI store command: ``$MEMLOG_THREADS`` or ``DEFAULT_THREADS``."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return DEFAULT_THREADS
    try:
        threads = int(raw)
    except ValueError:
        raise ValueError(f"{THREADS_ENV} must be a whole number of threads, got {raw!r}") from None
    if threads < 1:
        raise ValueError(f"{THREADS_ENV} must be at least 1, got {threads}")
    return threads


def use_threads(threads: int) -> None:
    """Set torch's intra-op thread count for the rest of the process (the CLI does this once)."""
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    torch.set_num_threads(int(threads))


def apply(threads: int | None) -> None:
    """Deterministic algorithms on (and ``threads`` intra-op threads when given), until changed."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        torch.set_num_threads(int(threads))
    torch.use_deterministic_algorithms(True, warn_only=True)
    if hasattr(torch.backends, "cudnn"):
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


@contextmanager
def pinned(threads: int | None = PROJECTION_THREADS) -> Iterator[None]:
    """Run the block with deterministic settings (see the module doc), then restore the previous ones."""
    before_threads = torch.get_num_threads()
    before_det = torch.are_deterministic_algorithms_enabled()
    before_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = getattr(torch.backends, "cudnn", None)
    before_cudnn = (cudnn.benchmark, cudnn.deterministic) if cudnn is not None else None
    apply(threads)
    try:
        yield
    finally:
        if threads is not None and torch.get_num_threads() != before_threads:
            torch.set_num_threads(before_threads)
        torch.use_deterministic_algorithms(before_det, warn_only=before_warn)
        if cudnn is not None and before_cudnn is not None:
            cudnn.benchmark, cudnn.deterministic = before_cudnn
