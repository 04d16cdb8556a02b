"""Wake capacity (paper §5.1, Table 3): inject facts unconstrained until recall collapses.

``run_wake_capacity(mem, facts)`` injects the facts one at a time, auditing every active
fact after each injection and measuring perplexity every ``ppl_every`` facts. Two
thresholds are read off the trajectory:

- *wake capacity*: the last fact count whose recall is at least ``min_recall`` (0.9, the
  paper's "≥ 0.90 recall up to 13 facts");
- *tipping point*: the first fact count at which the degraded count jumps by at least
  ``jump`` (2) in one injection, i.e. one edit broke at least one previously healthy fact
  besides any miss of its own (the paper's 1 → 6 at fact 14).
"""

from __future__ import annotations

from dataclasses import dataclass

from memlog.core.facts import Fact
from memlog.experiments.wake import WakeRow, base_ppl, inject_wave
from memlog.progress import ProgressFn, no_progress


@dataclass
class WakeCapacityResult:
    rows: list[WakeRow]
    base_ppl: float | None
    min_recall: float
    jump: int
    wake_capacity: int | None
    first_below: int | None
    tipping_point: int | None
    largest_jump: dict | None

    def to_dict(self) -> dict:
        return {
            "rows": [r.to_dict() for r in self.rows],
            "base_ppl": self.base_ppl,
            "min_recall": self.min_recall,
            "jump": self.jump,
            "wake_capacity": self.wake_capacity,
            "first_below": self.first_below,
            "tipping_point": self.tipping_point,
            "largest_jump": self.largest_jump,
        }


def detect_wake_capacity(rows: list[WakeRow], min_recall: float = 0.9) -> int | None:
    """The last fact count with recall ≥ ``min_recall`` (None if none reached it)."""
    counts = [r.facts for r in rows if r.recall >= min_recall]
    return max(counts) if counts else None


def detect_first_below(rows: list[WakeRow], min_recall: float = 0.9) -> int | None:
    """The first fact count with recall < ``min_recall`` (None if recall never fell below it)."""
    return next((r.facts for r in rows if r.recall < min_recall), None)


def degraded_steps(rows: list[WakeRow]) -> list[tuple[int, int, int]]:
    """(facts, degraded before, degraded after) for every injection."""
    steps, before = [], 0
    for r in rows:
        steps.append((r.facts, before, r.degraded))
        before = r.degraded
    return steps


def detect_tipping_point(rows: list[WakeRow], jump: int = 2) -> int | None:
    """The first fact count where the degraded count rises by ≥ ``jump`` in one injection."""
    return next((facts for facts, before, after in degraded_steps(rows) if after - before >= jump), None)


def largest_jump(rows: list[WakeRow]) -> dict | None:
    """The single injection that raised the degraded count most (earliest on ties)."""
    best = None
    for facts, before, after in degraded_steps(rows):
        if best is None or after - before > best["after"] - best["before"]:
            best = {"facts": facts, "before": before, "after": after}
    return best


def wake_capacity_result(rows: list[WakeRow], base: float | None, min_recall: float, jump: int) -> WakeCapacityResult:
    """The result of a wake trajectory (measured now, or rebuilt from a log): its rows and thresholds."""
    return WakeCapacityResult(
        rows=rows,
        base_ppl=base,
        min_recall=min_recall,
        jump=jump,
        wake_capacity=detect_wake_capacity(rows, min_recall),
        first_below=detect_first_below(rows, min_recall),
        tipping_point=detect_tipping_point(rows, jump),
        largest_jump=largest_jump(rows),
    )


def run_wake_capacity(
    mem,
    facts: list[Fact],
    ppl_every: int = 1,
    min_recall: float = 0.9,
    jump: int = 2,
    progress: ProgressFn = no_progress,
) -> WakeCapacityResult:
    """Inject ``facts`` one at a time (audit after each) and detect the thresholds."""
    rows = inject_wave(mem, facts, ppl_every=ppl_every, progress=progress, label="wake")
    return wake_capacity_result(rows, base_ppl(mem), min_recall, jump)
