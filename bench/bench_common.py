"""Helpers shared by memlog's benchmark scripts: timing, ratio lines, the repository on sys.path.

Every benchmark prints ``ratio NAME = VALUE  (what over what)`` lines; ``bench/run_all.py``
collects them into one summary.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def add_repo_to_path() -> None:
    """Make ``import memlog`` work when a script runs as ``python bench/x.py`` from anywhere."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def fix_threads(threads: int | None = None) -> int:
    """Fix torch's CPU thread count for stable timings; returns it."""
    import torch

    n = threads or int(os.environ.get("MEMLOG_BENCH_THREADS", 0)) or torch.get_num_threads()
    torch.set_num_threads(n)
    return n


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def median_time(fn: Callable[[], object], repeats: int = 3) -> float:
    """Median wall seconds of ``repeats`` calls."""
    return statistics.median(timed(fn)[0] for _ in range(repeats))


def ratio_line(name: str, numerator: float, denominator: float, what: str) -> str:
    value = numerator / denominator if denominator else float("inf")
    return f"ratio {name} = {value:.4g}  ({what})"


def print_ratio(name: str, numerator: float, denominator: float, what: str) -> None:
    print(ratio_line(name, numerator, denominator, what), flush=True)
