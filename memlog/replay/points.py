"""Points in a log: ``cycle=N``, ``seq=N``, ``time=ISO`` (and ``head``), resolved to a seq.

- ``seq=N``: after event N (0 is the empty log, before even the header).
- ``cycle=N``: after sleep cycle N ended; ``cycle=0`` is just before the first sleep
  started (the end of the first wake), or the head when there was no sleep yet.
- ``time=ISO``: after the last event recorded at or before that time (UTC if no zone).
- ``head``: the latest event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

from memlog.errors import UserError


class _Logged(Protocol):
    seq: int
    ts: datetime
    event: object


@dataclass(frozen=True)
class Point:
    kind: str  # "seq", "cycle", "time" or "head"
    value: int | datetime | None = None

    def __str__(self) -> str:
        if self.kind == "head":
            return "head"
        value = self.value.isoformat() if isinstance(self.value, datetime) else self.value
        return f"{self.kind}={value}"


def parse_point(text: str) -> Point:
    text = text.strip()
    if text == "head":
        return Point("head")
    kind, sep, value = text.partition("=")
    kind = kind.strip().lower()
    if not sep or kind not in ("seq", "cycle", "time"):
        raise UserError(f"bad point {text!r}; use cycle=N, seq=N, time=ISO-8601 or head")
    if kind == "time":
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            raise UserError(f"bad time {value!r}; use ISO-8601, e.g. time=2026-11-26T10:15:00") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return Point("time", when)
    try:
        number = int(value)
    except ValueError:
        raise UserError(f"bad {kind} {value!r}; it must be a whole number, e.g. {kind}=4") from None
    if number < 0:
        raise UserError(f"{kind} must be ≥ 0, got {number}")
    return Point(kind, number)


def resolve_point(point: Point, logged: "list[_Logged]") -> int:
    """The seq that ``point`` names in ``logged`` (ordered by seq)."""
    head = logged[-1].seq if logged else 0
    if point.kind == "head":
        return head
    if point.kind == "seq":
        if point.value > head:
            raise UserError(f"seq={point.value} is past the head of the log (seq {head})")
        return int(point.value)
    if point.kind == "time":
        seq = 0
        for item in logged:
            ts = item.ts if item.ts.tzinfo else item.ts.replace(tzinfo=timezone.utc)
            if ts <= point.value:
                seq = item.seq
        if seq == 0:
            raise UserError(f"time={point.value.isoformat()} is before the first event of the log")
        return seq
    return _resolve_cycle(int(point.value), logged, head)


def _resolve_cycle(cycle: int, logged: "list[_Logged]", head: int) -> int:
    ended: dict[int, int] = {}
    first_start: int | None = None
    for item in logged:
        name = type(item.event).__name__
        if name == "SleepStarted" and first_start is None:
            first_start = item.seq
        elif name == "SleepEnded":
            ended[item.event.cycle] = item.seq
    if cycle == 0:
        return first_start - 1 if first_start is not None else head
    if cycle not in ended:
        known = f"cycles 1-{max(ended)}" if ended else "no completed sleep cycle"
        raise UserError(f"cycle={cycle} is not in the log, which has {known}")
    return ended[cycle]
