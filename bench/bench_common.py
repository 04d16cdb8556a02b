"""Helpers shared by memlog's benchmark scripts: timing, ratio lines, the repository on sys.path.

Every benchmark prints ``ratio NAME = VALUE  (what over what)`` lines; ``bench/run_all.py``
collects them into one summary. ``ForcedVerdictEditor`` fixes the audit's verdict so that a
timed sleep cycle refreshes a chosen number of facts.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass
class Verdict:
    recalled: bool
    completion: str


class ForcedVerdictEditor:
    """Delegates to the real editor; the audit runs its forward passes, but its verdict is fixed.

    To time a sleep cycle with a chosen number of refreshes (a random-weight model recalls
    nothing; the embedded model at 14 facts recalls everything), the facts in ``healthy``
    are reported recalled and all others degraded. The refreshes themselves are real.
    """

    def __init__(self, inner, healthy: set[str]):
        self.inner = inner
        self.healthy = healthy

    @property
    def layers(self):
        return self.inner.layers

    def edit(self, facts, constraint_keys=None, protect=None):
        return self.inner.edit(facts, constraint_keys=constraint_keys, protect=protect)

    def keys(self, facts):
        return self.inner.keys(facts)

    def audit_keys(self, facts):
        return self.inner.audit_keys(facts)

    def audit(self, facts):
        real = self.inner.audit(facts)
        return [Verdict(f.fact_id in self.healthy, r.completion) for f, r in zip(facts, real)]

    def perplexity(self):
        return self.inner.perplexity()

    def complete(self, prompts, max_new_tokens):
        return self.inner.complete(prompts, max_new_tokens)
