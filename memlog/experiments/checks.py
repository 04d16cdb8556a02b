"""Re-execution checks: compare two runs' event streams, and replay a store at every cycle.

``comparable_events(logged)`` turns a log into plain data with the volatile fields removed
(timestamps live outside the events; inside them ``seconds``, ``step_seconds`` and the
store-location field ``model_source`` vary between runs). Two runs of the same experiment
with the same seed on the same machine must give equal lists.

``verify_cycles(mem)`` replays the store at ``cycle=0 … cycle=N`` with ``verify``: the
weights are rebuilt from the log and every recorded audit is recomputed on them; each row
says whether the weights hash and the recomputed completions (the text, not only the
recalled verdict) match the record.
"""

from __future__ import annotations

from typing import Any

import msgspec

from memlog.store.events import event_kind

VOLATILE_FIELDS = frozenset({"seconds", "step_seconds", "wall_seconds", "ts", "model_source"})


def strip_volatile(value: Any) -> Any:
    """Drop volatile keys at every depth of a plain-data value."""
    if isinstance(value, dict):
        return {k: strip_volatile(v) for k, v in value.items() if k not in VOLATILE_FIELDS}
    if isinstance(value, list):
        return [strip_volatile(v) for v in value]
    return value


def comparable_events(logged) -> list[dict]:
    """``(seq, kind, event without volatile fields)`` for every logged event, as plain data."""
    return [{"seq": item.seq, "kind": event_kind(item.event), **strip_volatile(msgspec.to_builtins(item.event))} for item in logged]


def first_difference(a: list[dict], b: list[dict]) -> str | None:
    """A one-line description of the first event where two streams differ (None if equal)."""
    for x, y in zip(a, b):
        if x != y:
            keys = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
            return f"seq {x.get('seq')} ({x.get('kind')} vs {y.get('kind')}): fields {keys} differ"
    if len(a) != len(b):
        return f"lengths differ: {len(a)} vs {len(b)} events"
    return None


def verify_cycles(mem) -> list[dict]:
    """Replay with ``verify`` at every cycle boundary (cycle=0 … the last cycle)."""
    rows = []
    for cycle in range(mem.ledger.cycle + 1):
        report = mem.replay(f"cycle={cycle}", verify=True)
        audited = [f for f in report["facts"] if "completion_now" in f]
        rows.append(
            {
                "cycle": cycle,
                "seq": report["seq"],
                "verified": report["verified"],
                "weights_match": report["weights_match"],
                "mismatches": report.get("mismatches", []),
                # the recomputed text, not only the verdict (None when no audit was recomputed)
                "completions_match": all(f["completion_now"] == f["completion"] for f in audited) if audited else None,
                "audit_seq": report.get("verify_audit_seq"),
            }
        )
    return rows
