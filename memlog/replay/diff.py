"""What changed between two points of a log, fact by fact (pure: no model, no I/O).

``diff_points(logged, a_seq, b_seq)`` folds the log to both points (``Ledger.fold``, the one
fold of the ledger and the facts' health) and compares each fact known at either. A change is one of:

- ``injected``: the fact is active at B but was unknown (or had been pruned) at A;
- ``updated``: active at both, with another object at B (a wake re-injection);
- ``pruned``: active at A, gone from the ledger at B;
- ``released``: active at A, released at B (no longer looked after; its edit still applied);
- ``refreshed``: active at both, same object, held by another edit version at B (in-place:
  same ``edit_id``, higher ``version``; copy mode: another ``edit_id``), or refreshed since A
  (a refresh that was rolled back leaves the version as it was, and is listed as well);
- ``reverted``: its edit was applied at A and is out of the weights at B (a refresh that
  failed after the revert, or a manual ``memlog revert``);
- ``restored``: the opposite of ``reverted``, without a new version;
- ``degraded``: the latest audit at or before A found it recalled, the latest at or before B
  did not;
- ``recovered``: not recalled at A, recalled at B.

A fact can have several changes (refreshed and recovered, typically). ``before`` and
``after`` describe the fact's side of the change at A and at B. Works with A after B too:
the changes are then read backwards in time.
"""

from __future__ import annotations

from collections import Counter

from memlog.projections.ledger import FactState, Ledger
from memlog.replay.points import parse_point, resolve_point

CHANGE_ORDER: tuple[str, ...] = ("injected", "updated", "refreshed", "reverted", "restored", "recovered", "degraded", "released", "pruned")


def _fold_until(logged, seq: int) -> Ledger:
    return Ledger.fold([(item.seq, item.event) for item in logged if item.seq <= seq])


def _recalled(state: FactState | None) -> bool | None:
    if state is None or state.last_audit is None:
        return None
    return state.last_audit.recalled


def _edit_label(ledger: Ledger, state: FactState) -> str:
    entry = ledger.entries.get(state.edit_id)
    if entry is None:
        return state.edit_id
    return f"{entry.edit_id} v{entry.version}"


def _applied(ledger: Ledger, state: FactState) -> bool:
    entry = ledger.entries.get(state.edit_id)
    return bool(entry and entry.applied and entry.current.scale > 0)


def _audit_text(state: FactState | None) -> str:
    if state is None or state.last_audit is None:
        return "not audited"
    mark = state.last_audit
    verdict = "recalled" if mark.recalled else "not recalled"
    return f"{verdict} ({mark.completion.strip()!r} at seq {mark.seq})"


def _fact_changes(fact_id: str, a: Ledger, b: Ledger) -> list[tuple[str, str, str]]:
    """(change, before, after) for one fact between ledgers ``a`` and ``b``."""
    sa, sb = a.facts.get(fact_id), b.facts.get(fact_id)
    active_a = bool(sa and sa.active)
    active_b = bool(sb and sb.active)
    if active_a and active_b and sa.injected_seq != sb.injected_seq:
        # pruned (or released: the new inject superseded the same edit) and injected again in
        # between: two changes, not a refresh
        gone = "released" if sa.edit_id == sb.edit_id else "pruned"
        return [
            (gone, f"{sa.fact.object} ({_edit_label(a, sa)})", gone),
            ("injected", gone, f"{sb.fact.object} ({_edit_label(b, sb)}, {_audit_text(sb)})"),
        ]
    if active_b and not active_a:
        before = "absent" if sa is None else "released" if a.released_entry(fact_id) else "pruned"
        return [("injected", before, f"{sb.fact.object} ({_edit_label(b, sb)}, {_audit_text(sb)})")]
    if active_a and not active_b:
        gone = "released" if b.released_entry(fact_id) else "pruned"
        return [(gone, f"{sa.fact.object} ({_edit_label(a, sa)}, {_audit_text(sa)})", gone if sb is not None else "absent")]
    if not (active_a and active_b):
        return []
    changes: list[tuple[str, str, str]] = []
    if sa.fact.object != sb.fact.object:
        changes.append(("updated", sa.fact.object, sb.fact.object))
    elif _edit_label(a, sa) != _edit_label(b, sb) or sb.refreshes != sa.refreshes:
        changes.append(("refreshed", _edit_label(a, sa), _edit_label(b, sb)))
    applied_a, applied_b = _applied(a, sa), _applied(b, sb)
    if applied_a and not applied_b:
        changes.append(("reverted", _edit_label(a, sa), f"{_edit_label(b, sb)} (not applied)"))
    elif applied_b and not applied_a and _edit_label(a, sa) == _edit_label(b, sb):
        changes.append(("restored", f"{_edit_label(a, sa)} (not applied)", _edit_label(b, sb)))
    recalled_a, recalled_b = _recalled(sa), _recalled(sb)
    if recalled_a is not None and recalled_b is not None and recalled_a != recalled_b:
        changes.append(("recovered" if recalled_b else "degraded", _audit_text(sa), _audit_text(sb)))
    return changes


def diff_points(logged, a_seq: int, b_seq: int) -> list[dict]:
    """Changes of every fact from seq ``a_seq`` to seq ``b_seq`` (``logged``: LoggedEvents in seq order).

    Each change is a dict: ``fact_id, subject, relation, object`` (as at B, else A),
    ``change`` (see the module docstring), ``before``, ``after``. Ordered by change kind, then
    by when the fact was first injected.
    """
    return ledger_changes(_fold_until(logged, a_seq), _fold_until(logged, b_seq))


def ledger_changes(a: Ledger, b: Ledger) -> list[dict]:
    """``diff_points`` between two ledgers already folded (A's and B's)."""
    first_seen: dict[str, int] = {}
    for ledger in (a, b):
        for fact_id, state in ledger.facts.items():
            first_seen[fact_id] = min(first_seen.get(fact_id, state.injected_seq), state.injected_seq)
    changes = []
    for fact_id in sorted(first_seen, key=lambda f: (first_seen[f], f)):
        state = b.facts.get(fact_id) or a.facts.get(fact_id)
        for change, before, after in _fact_changes(fact_id, a, b):
            changes.append(
                {
                    "fact_id": fact_id,
                    "subject": state.fact.subject,
                    "relation": state.fact.relation,
                    "object": state.fact.object,
                    "change": change,
                    "before": before,
                    "after": after,
                }
            )
    rank = {name: i for i, name in enumerate(CHANGE_ORDER)}
    changes.sort(key=lambda c: rank[c["change"]])  # stable: keeps the first-seen order within a kind
    return changes


def _point_summary(ledger: Ledger, point: str, seq: int) -> dict:
    audit = ledger.last_audit
    return {
        "point": point,
        "seq": seq,
        "cycle": ledger.cycle,
        "active_facts": len(ledger.active_facts()),
        "recall": audit.recall if audit else None,
        "degraded": audit.degraded if audit else None,
    }


def diff_report(logged, from_point: str, to_point: str) -> dict:
    """``diff_points`` between two points given as text (``cycle=N``, ``seq=N``, ``time=ISO``, ``head``).

    Returns ``{"from": {...}, "to": {...}, "changes": [...], "summary": {change: count}}``,
    where each side has ``point, seq, cycle, active_facts, recall, degraded``.
    """
    a_point, b_point = parse_point(from_point), parse_point(to_point)
    a_seq, b_seq = resolve_point(a_point, logged), resolve_point(b_point, logged)
    a, b = _fold_until(logged, a_seq), _fold_until(logged, b_seq)
    changes = ledger_changes(a, b)
    counts = Counter(c["change"] for c in changes)
    return {
        "from": _point_summary(a, str(a_point), a_seq),
        "to": _point_summary(b, str(b_point), b_seq),
        "changes": changes,
        "summary": {name: counts[name] for name in CHANGE_ORDER if counts[name]},
    }
