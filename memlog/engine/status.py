"""A store's state as one dict (``memlog status``, ``Memory.status``, the server's status route)."""

from __future__ import annotations

from pathlib import Path

from memlog.engine.audit_measures import probe_means
from memlog.projections.ledger import Ledger
from memlog.projections.readmodels import mean_reach
from memlog.store.events import ConstraintRoom, StoreCreated


def status_of(header: StoreCreated, ledger: Ledger, store_path: Path, events=()) -> dict:
    """The store's state; with its ``events``, also the latest probe-audit means."""
    audit = ledger.last_audit
    return {
        "store": str(store_path),
        "model": header.model_id,
        "model_source": header.model_source,
        "fingerprint": header.fingerprint,
        "layers": list(header.layers),
        "active_facts": len(ledger.active_facts()),
        "released_facts": sum(1 for f in ledger.facts.values() if ledger.released_entry(f.fact.fact_id) is not None),
        "ledger_size": ledger.ledger_size(),
        "recall": audit.recall if audit else None,
        "degraded": audit.degraded if audit else None,
        "audited_facts": len(audit.results) if audit else 0,
        "audit_seq": ledger.last_audit_seq,
        "pressure": ledger.pressure(),
        "cycle": ledger.cycle,
        "seq": ledger.head_seq,
        **probe_means(events),
        "room": room_of(events),
    }


def room_of(events) -> dict | None:
    """The latest ``ConstraintRoom``: per edit layer the null-space rank left, ‖ΔW‖_F/‖W_base‖_F
    and (where measured) the median reach at a new key, with its mean over the layers."""
    last = next((e for e in reversed(list(events)) if isinstance(e, ConstraintRoom)), None)
    if last is None:
        return None
    return {"phase": last.phase, "cycle": last.cycle, "protected": last.protected, "layers": last.layers, "rank_left": last.rank_left, "delta_norm": last.delta_norm, "reach": last.reach, "mean_reach": mean_reach(last.reach)}
