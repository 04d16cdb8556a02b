"""Read models folded from the event log: one row per sleep cycle (pure: no torch, no I/O).

``CycleRow`` is the one definition of a sleep cycle's row. Its fields, in order, are the
columns of the ``cycles`` SQL view (``memlog sql``); ``tests/test_readmodels.py`` holds that
view equal to ``fold_cycles`` row by row and column by column, on logs with prunes, refreshes,
rollbacks and manual reverts. What the columns mean:

- ``recall_before``/``recall_after`` and ``degraded_before``/``degraded_after``: the cycle's
  sleep-pre and sleep-post audits over every fact ever injected, a pruned fact counting as
  degraded (the paper's measure); null while no fact is known or the audit is missing;
- the ``_active`` columns: the audits' own numbers, over the facts the ledger held;
- ``refreshed, reverted, pruned, released, rolled_back`` and ``blocked, failed, held`` (logged
  in ``step_seconds``) count the cycle's actions; ``ledger_size, active_facts`` are at its end;
- ``ppl_before, ppl_after, ppl_drift`` (relative), ``wall_seconds``;
- ``refresh_mode, refresh_strategy, cap, tau``: the cycle's ``SleepStarted`` policy;
- ``facts_injected`` (injections before the cycle ended), ``facts_known`` (distinct facts
  injected before it ended), ``step_seconds`` (seconds per step, and the three counts).

The engine's ``CycleReport`` (the live result of ``memlog sleep``, and the cycles of an
experiment's JSON document) names five of these columns differently; ``REPORT_KEYS`` is that
mapping, ``CycleRow.report_dict`` writes a row in the report's shape and ``cycle_values``
reads a report dict back into the columns.

Every table of cycles people see (``memlog sleep``, ``memlog experiment``, ``memlog demo``,
the Markdown of ``memlog.experiments.markdown`` and the HTML report) picks its columns from
``CYCLE_LABELS`` and formats their values with ``cycle_cells``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields

from memlog.store.events import ConstraintRoom, Event, FactInjected, RecallAudited, SleepEnded, SleepStarted

# The event kinds the cycle fold reads (a reader may pass only these).
CYCLE_EVENT_KINDS: tuple[str, ...] = ("FactInjected", "SleepStarted", "RecallAudited", "ConstraintRoom", "SleepEnded")

# Counts the engine logs among a SleepEnded's step_seconds, beside the steps' seconds.
STEP_COUNTS: tuple[str, ...] = ("blocked", "failed", "held")


@dataclass(frozen=True)
class CycleRow:
    """One completed sleep cycle (its ``SleepEnded``); the columns of the ``cycles`` view."""

    cycle: int
    started_seq: int | None
    ended_seq: int
    recall_before: float | None
    recall_after: float | None
    degraded_before: int | None
    degraded_after: int | None
    recall_before_active: float
    recall_after_active: float
    degraded_before_active: int
    degraded_after_active: int
    refreshed: int
    reverted: int
    pruned: int
    released: int  # facts the null-space budget released (FactReleased; 0 in logs written before)
    rolled_back: int
    blocked: int | None
    failed: int
    held: int
    ledger_size: int
    active_facts: int
    ppl_before: float
    ppl_after: float
    ppl_drift: float | None
    wall_seconds: float
    refresh_mode: str | None
    refresh_strategy: str
    cap: int | None
    tau: float | None
    facts_injected: int
    facts_known: int
    step_seconds: dict
    # from the cycle's ConstraintRoom (None where none was measured: a count cap with
    # unconstrained wake, a fake editor, or older logs): per edit layer, the null-space rank left
    # and ‖W − W_base‖_F / ‖W_base‖_F, and their extremes; the newest facts' median reach per
    # layer and its mean over the layers (None in logs written before it was measured)
    rank_left: list | None = None
    delta_norm: list | None = None
    min_rank_left: int | None = None
    max_delta_norm: float | None = None
    reach: list | None = None
    mean_reach: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def report_dict(self) -> dict:
        """The row in the shape of the engine's ``CycleReport.to_dict()`` (less ``open_degraded``
        and the ``failed`` list, which need the ledger and the live run)."""
        known = self.facts_known
        return {
            "cycle": self.cycle,
            "recall_before": self.recall_before if known else 1.0,
            "recall": self.recall_after if known else 1.0,
            "degraded_before": self.degraded_before,
            "degraded": self.degraded_after,
            "recall_before_active": self.recall_before_active,
            "recall_active": self.recall_after_active,
            "degraded_before_active": self.degraded_before_active,
            "degraded_active": self.degraded_after_active,
            "facts_known": known,
            "held": self.held,
            "refreshed": self.refreshed,
            "reverted": self.reverted,
            "rolled_back": self.rolled_back,
            "blocked": self.blocked or 0,
            "pruned": self.pruned,
            "released": self.released,
            "ledger_size": self.ledger_size,
            "active_facts": self.active_facts,
            "ppl_before": self.ppl_before,
            "ppl_after": self.ppl_after,
            "seconds": self.wall_seconds,
            "step_seconds": {k: v for k, v in self.step_seconds.items() if k not in STEP_COUNTS},
        }


CYCLE_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(CycleRow))

# The engine's CycleReport keys that differ from the columns: column -> report key.
REPORT_KEYS: dict[str, str] = {
    "recall_after": "recall",
    "degraded_after": "degraded",
    "recall_after_active": "recall_active",
    "degraded_after_active": "degraded_active",
    "wall_seconds": "seconds",
}


def cycle_values(report: Mapping) -> dict:
    """A ``CycleReport`` dict (live, or from an experiment's JSON) keyed by the columns; columns
    the report lacks are absent, and its ``failed`` list becomes a count."""
    values = {}
    for column in CYCLE_COLUMNS:
        key = REPORT_KEYS.get(column, column)
        if key in report:
            values[column] = report[key]
    if isinstance(values.get("failed"), list):
        values["failed"] = len(values["failed"])
    return values


class CycleFold:
    """Folds events one at a time; ``apply`` returns the ``CycleRow`` a ``SleepEnded`` completes."""

    def __init__(self) -> None:
        self.rows: list[CycleRow] = []
        self._started: dict[int, tuple[int, SleepStarted]] = {}
        self._audits: dict[tuple[int, str], RecallAudited] = {}
        self._injections = 0
        self._known: set[str] = set()
        self._room: dict[int, ConstraintRoom] = {}

    def apply(self, seq: int, event: Event) -> CycleRow | None:
        if isinstance(event, FactInjected):
            self._injections += 1
            self._known.add(event.fact.fact_id)
        elif isinstance(event, SleepStarted):
            self._started[event.cycle] = (seq, event)
        elif isinstance(event, RecallAudited) and event.phase in ("sleep-pre", "sleep-post") and event.cycle is not None:
            self._audits[(event.cycle, event.phase)] = event
        elif isinstance(event, ConstraintRoom) and event.phase == "sleep" and event.cycle is not None:
            self._room[event.cycle] = event
        elif isinstance(event, SleepEnded):
            row = self._row(seq, event)
            self.rows.append(row)
            return row
        return None

    def _row(self, seq: int, e: SleepEnded) -> CycleRow:
        started_seq, start = self._started.get(e.cycle, (None, None))
        known = len(self._known)
        before = _over_known(self._audits.get((e.cycle, "sleep-pre")), known)
        after = _over_known(self._audits.get((e.cycle, "sleep-post")), known)
        steps = dict(e.step_seconds)
        blocked = steps.get("blocked")
        return CycleRow(
            cycle=e.cycle,
            started_seq=started_seq,
            ended_seq=seq,
            recall_before=before[0],
            recall_after=after[0],
            degraded_before=before[1],
            degraded_after=after[1],
            recall_before_active=e.recall_before,
            recall_after_active=e.recall_after,
            degraded_before_active=e.degraded_before,
            degraded_after_active=e.degraded_after,
            refreshed=e.refreshed,
            reverted=e.reverted,
            pruned=e.pruned,
            released=e.released,
            rolled_back=e.rolled_back,
            blocked=None if blocked is None else int(blocked),
            failed=int(steps.get("failed", 0)),
            held=int(steps.get("held", 0)),
            ledger_size=e.ledger_size,
            active_facts=e.active_facts,
            ppl_before=e.ppl_before,
            ppl_after=e.ppl_after,
            ppl_drift=(e.ppl_after - e.ppl_before) / e.ppl_before if e.ppl_before else None,
            wall_seconds=e.seconds,
            refresh_mode=start.refresh_mode if start else None,
            refresh_strategy=start.refresh_strategy if start else "reinject",
            cap=start.cap if start else None,
            tau=start.tau if start else None,
            facts_injected=self._injections,
            facts_known=known,
            step_seconds=steps,
            **_room_columns(self._room.get(e.cycle)),
        )


def mean_reach(reach: Mapping[int, float] | Sequence[float] | None) -> float | None:
    """The mean over the edit layers of the per-layer median reach (``ConstraintRoom.reach``, or
    a layer → reach mapping); None where it was not measured."""
    if not reach:
        return None
    values = list(reach.values()) if isinstance(reach, Mapping) else list(reach)
    return sum(values) / len(values)


def _room_columns(room: ConstraintRoom | None) -> dict:
    if room is None:
        return {}
    return {
        "rank_left": list(room.rank_left),
        "delta_norm": list(room.delta_norm),
        "min_rank_left": min(room.rank_left) if room.rank_left else None,
        "max_delta_norm": max(room.delta_norm) if room.delta_norm else None,
        "reach": list(room.reach) if room.reach is not None else None,
        "mean_reach": mean_reach(room.reach),
    }


def _over_known(audit: RecallAudited | None, known: int) -> tuple[float | None, int | None]:
    """(recall, degraded) of an audit over every fact ever injected (pruned ones count as degraded)."""
    if audit is None:
        return None, None
    hits = len(audit.results) - audit.degraded
    return (hits / known if known else None), known - hits


def fold_cycles(events: Iterable[tuple[int, Event]]) -> list[CycleRow]:
    """Every completed sleep cycle of ``(seq, event)`` pairs in seq order."""
    fold = CycleFold()
    for seq, event in events:
        fold.apply(seq, event)
    return fold.rows


def cycles_of(logged) -> list[CycleRow]:
    """``fold_cycles`` of a log's ``LoggedEvent``s."""
    return fold_cycles((item.seq, item.event) for item in logged)


# -- the columns people see ----------------------------------------------------------------


@dataclass(frozen=True)
class Label:
    """A column's header in tables for people, and the decimals of its float values."""

    header: str
    digits: int | None = None


CYCLE_LABELS: dict[str, Label] = {
    "cycle": Label("cycle"),
    "recall_before": Label("recall before", 3),
    "recall_after": Label("recall (all injected)", 3),
    "recall_after_active": Label("recall (active)", 3),
    "degraded_before": Label("degraded before"),
    "degraded_after": Label("degraded (all injected)"),
    "refreshed": Label("refreshed"),
    "reverted": Label("reverted"),
    "failed": Label("failed"),
    "pruned": Label("pruned"),
    "released": Label("released"),
    "blocked": Label("blocked"),
    "rolled_back": Label("rolled back"),
    "held": Label("held"),
    "ledger_size": Label("ledger"),
    "active_facts": Label("active"),
    "ppl_before": Label("PPL before", 3),
    "ppl_after": Label("PPL after", 3),
    "wall_seconds": Label("wall s", 1),
}

# The cycle table of the CLI and the Markdown results, in order.
CYCLE_TABLE: tuple[str, ...] = (
    "cycle",
    "recall_after",
    "recall_after_active",
    "degraded_after",
    "refreshed",
    "failed",
    "pruned",
    "released",
    "blocked",
    "rolled_back",
    "ledger_size",
    "active_facts",
    "ppl_before",
    "ppl_after",
    "wall_seconds",
)


def cycle_headers(columns: Sequence[str] = CYCLE_TABLE) -> list[str]:
    return [CYCLE_LABELS[c].header for c in columns]


def cycle_cells(values: Mapping, columns: Sequence[str] = CYCLE_TABLE, missing: str = "—") -> list[str]:
    """``values`` (a ``CycleRow.to_dict()``, a ``cycle_values`` dict or part of one) as text cells."""
    cells = []
    for column in columns:
        value = values.get(column)
        digits = CYCLE_LABELS[column].digits
        if value is None:
            cells.append(missing)
        elif digits is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            cells.append(f"{value:.{digits}f}")
        else:
            cells.append(str(value))
    return cells
