"""Why did a fact's recall change? Bisect the log on rebuilt weights.

``why_report(mem, query)`` answers the second half of time-travel debugging ("what did the
model recall at cycle 4, and why did it change?") for one fact:

1. **History.** Every event that touched the fact (injection, refreshes, reverts, rollbacks,
   pruning) and every audit of it, with the completion recorded then.
2. **Window.** The two points to explain: by default the last two audits of the fact that
   disagree (recalled, then not, or the other way round; ``change`` picks only degradations
   or only recoveries); or ``--from`` / ``--to``.
3. **Steps.** The weights are rebuilt from the log at the window's start and after every
   weight-changing event inside it (injections, refreshes, reverts, rollbacks, prunes of *any*
   fact), and the fact is audited on each. The first step whose result differs from the start
   is the event that changed the fact's recall. Replay is exact (Invariant 3), so this is the
   model's own behaviour at that point, not an estimate.
4. **Suspects** (optional, ``leave_one_out``). At the window's end, each other applied edit is
   removed from the weights in turn and the fact is audited again; the edits whose removal
   flips the fact's recall are the ones it interferes with there.

The live weights are restored afterwards. A fact is named by its ``fact_id`` or by its subject
(optionally followed by the relation); an unknown or ambiguous name is a ``UserError`` that
lists the candidates.
"""

from __future__ import annotations


from memlog.projections.facts import fact_of
from memlog.errors import UserError
from memlog.progress import ProgressFn, no_progress
from memlog.projections.ledger import FactState, Ledger
from memlog.replay.points import parse_point, resolve_point
from memlog.store.events import (
    EditPruned,
    EditRefreshed,
    EditReverted,
    FactInjected,
    FactReleased,
    RefreshRolledBack,
    event_kind,
)

WEIGHT_EVENTS = (FactInjected, EditRefreshed, EditReverted, RefreshRolledBack, EditPruned)
HISTORY_EVENTS = WEIGHT_EVENTS + (FactReleased,)  # a release moves no weight, but it is the fact's history
MAX_STEPS = 200



# ------------------------------------------------------------------ finding the fact


def find_fact(ledger: Ledger, query: str) -> FactState:
    """The fact named by ``query``: a fact_id, a subject, or "subject relation" (case-insensitive)."""
    text = " ".join(query.split()).casefold()
    if not text:
        raise UserError("name a fact: its fact_id (see `memlog replay --until head`) or its subject")
    states = list(ledger.facts.values())
    exact = [s for s in states if s.fact.fact_id.casefold() == text]
    if exact:
        return exact[0]
    by_subject = [s for s in states if s.fact.subject.casefold() == text]
    by_prompt = [s for s in states if " ".join(s.fact.prompt.split()).casefold() == text]
    matches = by_prompt or by_subject
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        listed = "; ".join(f"{s.fact.fact_id} ({fact_of(s.fact)})" for s in matches)
        raise UserError(f"{query!r} names {len(matches)} facts: {listed}; pass one fact_id")
    near = [s for s in states if text in s.fact.subject.casefold()][:5]
    hint = ("; did you mean " + ", ".join(repr(s.fact.subject) for s in near) + "?") if near else ""
    raise UserError(f"no fact with fact_id or subject {query!r} in this store{hint}")


# ------------------------------------------------------------------------- history


def _describe(event) -> str:
    """One line for a weight-changing event: its kind, edit and fact (or reason)."""
    kind = event_kind(event)
    if isinstance(event, (FactInjected, EditRefreshed)):
        f = event.fact
        return f"{kind} {event.edit_id} v{event.version}: {fact_of(f)}"
    return f"{kind} {event.edit_id} v{event.version}" + (f" ({event.reason})" if getattr(event, "reason", None) else "")


def _edit_of(event) -> str:
    return f"{event.edit_id} v{event.version}"


def fact_edit_ids(logged, fact_id: str) -> set[str]:
    """Every edit_id that ever held the fact (one in place; the original and its copies in copy mode)."""
    return {
        item.event.edit_id
        for item in logged
        if isinstance(item.event, (FactInjected, EditRefreshed)) and item.event.fact.fact_id == fact_id
    }


def _is_own(event, fact_id: str, edit_ids: set[str]) -> bool:
    fact = getattr(event, "fact", None)
    if fact is not None:
        return fact.fact_id == fact_id
    return event.edit_id in edit_ids


def fact_history(logged, state: FactState) -> list[dict]:
    """The events that touched the fact and its audits, in log order."""
    fact_id = state.fact.fact_id
    edit_ids = fact_edit_ids(logged, fact_id)
    rows: list[dict] = [
        {
            "seq": item.seq,
            "kind": event_kind(item.event),
            "cycle": getattr(item.event, "cycle", None),
            "edit": _edit_of(item.event),
            "reason": getattr(item.event, "reason", None),
            "what": _describe(item.event),
        }
        for item in logged
        if isinstance(item.event, HISTORY_EVENTS) and _is_own(item.event, fact_id, edit_ids)
    ]
    for mark in state.audits:
        rows.append(
            {"seq": mark.seq, "kind": "audit", "cycle": mark.cycle, "phase": mark.phase, "recalled": mark.recalled, "completion": mark.completion}
        )
    return sorted(rows, key=lambda r: r["seq"])


CHANGES = ("last", "degraded", "recovered")


def default_window(state: FactState, change: str = "last") -> tuple[int, int] | None:
    """(seq of an audit, seq of the next audit) around the fact's latest change of recall, or None.

    ``change``: ``last`` (either direction), ``degraded`` (recalled → not) or ``recovered``.
    A fact that was never recalled has its injection explained instead (for last and degraded).
    """
    if change not in CHANGES:
        raise UserError(f"unknown change {change!r}; use one of {', '.join(CHANGES)}")
    audits = state.audits
    for before, after in zip(reversed(audits[:-1]), reversed(audits[1:])):
        if before.recalled == after.recalled:
            continue
        if change == "last" or (change == "degraded") == before.recalled:
            return before.seq, after.seq
    if change != "recovered" and audits and not audits[0].recalled:
        return state.injected_seq - 1, audits[0].seq  # not recalled from the start: explain the injection
    return None


# --------------------------------------------------------------------------- steps


def _audit_fact(mem, state: FactState) -> tuple[bool, str]:
    result = mem.editor.audit([fact_of(state.fact)])[0]
    return bool(result.recalled), result.completion


def _steps(mem, state: FactState, a_seq: int, b_seq: int, progress: ProgressFn) -> list[dict]:
    events = [item for item in mem.logged if a_seq < item.seq <= b_seq and isinstance(item.event, WEIGHT_EVENTS)]
    if len(events) > MAX_STEPS:
        raise UserError(
            f"the window seq {a_seq}..{b_seq} holds {len(events)} weight-changing events (at most {MAX_STEPS} are "
            "replayed); pass a narrower --from/--to"
        )
    points = [(a_seq, None)] + [(item.seq, item.event) for item in events]
    own_ids = fact_edit_ids(mem.logged, state.fact.fact_id)
    rows = []
    try:
        for i, (seq, event) in enumerate(points):
            progress("why", i, len(points))
            mem.projector.project(mem.ledger_at(seq).applied_entries())  # the head is restored once, below
            recalled, completion = _audit_fact(mem, state)
            rows.append(
                {
                    "seq": seq,
                    "kind": event_kind(event) if event is not None else "start",
                    "what": _describe(event) if event is not None else "weights at the window's start",
                    "cycle": getattr(event, "cycle", None) if event is not None else None,
                    "own": event is not None and _is_own(event, state.fact.fact_id, own_ids),
                    "recalled": recalled,
                    "completion": completion,
                }
            )
    finally:
        mem.project()
    progress("why", len(points), len(points))
    for prev, row in zip(rows, rows[1:]):
        row["changed"] = row["recalled"] != prev["recalled"]
    rows[0]["changed"] = False
    return rows


def _suspects(mem, state: FactState, seq: int, recalled_at_end: bool, progress: ProgressFn) -> tuple[list[dict], int]:
    """At ``seq``: each other applied edit removed in turn; those whose removal flips the fact,
    and how many edits were tried."""
    ledger = mem.ledger_at(seq)
    applied = ledger.applied_entries()
    others = [e for e in applied if e.fact_id != state.fact.fact_id]
    rows = []
    try:
        for i, entry in enumerate(others):
            progress("suspects", i, len(others))
            mem.projector.project([e for e in applied if e.edit_id != entry.edit_id])
            recalled, completion = _audit_fact(mem, state)
            if recalled != recalled_at_end:
                f = entry.current.fact
                rows.append(
                    {
                        "edit_id": entry.edit_id,
                        "version": entry.version,
                        "fact": str(fact_of(f)),
                        "recalled_without": recalled,
                        "completion_without": completion,
                    }
                )
        progress("suspects", len(others), len(others))
    finally:
        mem.project()
    return rows, len(others)


# -------------------------------------------------------------------------- report


def _resolve(mem, point: str) -> int:
    return resolve_point(parse_point(point), mem.logged)


def why_report(
    mem,
    query: str,
    from_point: str | None = None,
    to_point: str | None = None,
    leave_one_out: bool = False,
    change: str = "last",
    progress: ProgressFn = no_progress,
) -> dict:
    """History, window, replayed steps and (optionally) suspects for one fact; see the module doc."""
    head = mem.ledger_at(mem.head_seq)
    state = find_fact(head, query)
    history = fact_history(mem.logged, state)
    report = {
        "fact_id": state.fact.fact_id,
        "subject": state.fact.subject,
        "relation": state.fact.relation,
        "prompt": state.fact.prompt,
        "object": state.fact.object,
        "active": state.active,
        "history": history,
        "window": None,
        "steps": [],
        "changed_at": [],
        "suspects": None,
    }
    if (from_point is None) != (to_point is None):
        raise UserError("pass both --from and --to, or neither (the default explains the fact's last change of recall)")
    if from_point is not None:
        a_seq, b_seq = _resolve(mem, from_point), _resolve(mem, to_point)
        if a_seq >= b_seq:
            raise UserError(f"--from ({from_point}, seq {a_seq}) must come before --to ({to_point}, seq {b_seq})")
        if b_seq < state.injected_seq:
            raise UserError(f"the fact was injected at seq {state.injected_seq}, after --to ({to_point}, seq {b_seq})")
    else:
        window = default_window(state, change)
        if window is None:
            n = len(state.audits)
            kinds = {"last": "change", "degraded": "degradation", "recovered": "recovery"}
            report["note"] = f"no {kinds[change]} of recall to explain in its {n} audits" if n else "the fact was never audited"
            return report
        a_seq, b_seq = window
    steps = _steps(mem, state, a_seq, b_seq, progress)
    report["window"] = {"from_seq": a_seq, "to_seq": b_seq, "recalled_from": steps[0]["recalled"], "recalled_to": steps[-1]["recalled"]}
    report["steps"] = steps
    report["changed_at"] = [s["seq"] for s in steps if s["changed"]]
    if leave_one_out:
        report["suspects"], report["suspects_tested"] = _suspects(mem, state, b_seq, steps[-1]["recalled"], progress)
    return report
