"""Replay: rebuild the weights at a point of the log and show each fact's state there.

``replay_report(mem, until, verify)`` folds the log up to the point, projects those
weights onto the model, and lists every fact known then with the recall recorded by the
latest audit at or before the point. It also checks that the rebuilt weights hash to the
value recorded by the last weight-changing event (replay is exact, Invariant 3).

With ``verify`` it re-runs that audit on weights rebuilt at the audit's own seq and
compares fact by fact (``recalled_now``): it checks the log, not the weights at the point. When
edits changed the weights between that audit and the point, ``verify_note`` says so: recall on
the point's own weights was never recorded, and ``recalled_now`` is not it. The live weights
are restored afterwards.
"""

from __future__ import annotations

from memlog.projections.facts import fact_of
from memlog.replay.points import Point, parse_point, resolve_point


def fact_rows(ledger) -> list[dict]:
    """Every fact the ledger knows (pruned and released ones too), oldest first: its edit, whether
    that edit is in the weights, and its last recorded audit."""
    rows = []
    for state in sorted(ledger.facts.values(), key=lambda s: s.injected_seq):
        mark = state.last_audit
        entry = ledger.entries.get(state.edit_id)
        rows.append(
            {
                "fact_id": state.fact.fact_id,
                "subject": state.fact.subject,
                "relation": state.fact.relation,
                "object": state.fact.object,
                "active": state.active,
                "released": ledger.released_entry(state.fact.fact_id) is not None,
                "edit_id": state.edit_id,
                "version": entry.version if entry else None,
                "applied": bool(entry and entry.applied),
                "recalled": mark.recalled if mark else None,
                "completion": mark.completion if mark else None,
                "audit_seq": mark.seq if mark else None,
                "refreshes": state.refreshes,
            }
        )
    return rows


def replay_report(mem, until: str | Point, verify: bool = False) -> dict:
    point = parse_point(until) if isinstance(until, str) else until
    seq = resolve_point(point, mem.logged)
    ledger = mem.ledger_at(seq)
    with mem.weights_at(seq) as (_, _, sha):
        expected = ledger.last_weights_sha256
        weights_match = (sha == expected) if expected else None
    report = {
        "point": str(point),
        "seq": seq,
        "cycle": ledger.cycle,
        "weights_sha256": sha,
        "weights_match": weights_match,
        "facts": fact_rows(ledger),
        "verified": None,
    }
    if verify:
        report.update(_verify_audit(mem, ledger, report["facts"], weights_match))
    return report


def _verify_audit(mem, ledger, rows: list[dict], weights_match: bool | None) -> dict:
    audit_seq = ledger.last_audit_seq
    if audit_seq is None:
        return {"verified": weights_match is not False, "verify_note": "no audit recorded at or before this point"}
    audit = ledger.last_audit
    at_audit = mem.ledger_at(audit_seq)
    by_fact = {s.fact.fact_id: s for s in at_audit.facts.values()}
    facts = [fact_of(by_fact[r.fact_id].fact) for r in audit.results]
    with mem.weights_at(audit_seq):
        now = mem.editor.audit(facts)
    recalled_now = {r.fact_id: n.recalled for r, n in zip(audit.results, now)}
    completion_now = {r.fact_id: n.completion for r, n in zip(audit.results, now)}
    mismatches = [r.fact_id for r, n in zip(audit.results, now) if r.recalled != n.recalled]
    for row in rows:
        if row["fact_id"] in recalled_now:
            row["recalled_now"] = recalled_now[row["fact_id"]]
            row["completion_now"] = completion_now[row["fact_id"]]
    out = {
        "verified": not mismatches and weights_match is not False,
        "verify_audit_seq": audit_seq,
        "mismatches": mismatches,
    }
    if any(audit_seq < item.seq <= ledger.head_seq and hasattr(item.event, "weights_sha256") for item in mem.logged):  # a weight-changing event
        out["verify_note"] = (
            f"the weights changed after the audit at seq {audit_seq}: recall was recomputed on that audit's weights, "
            "not on the weights at this point (no audit was recorded on those)"
        )
    return out
