"""Audit measures beyond the exact prompt: which audits measure them, and their means.

Sleep and manual audits (``PROBED_PHASES``) also record, per fact, paraphrase recall, the
fraction of neighbourhood prompts unchanged and chat-template recall
(``memlog.core.probes``); the wake audit after every inject measures the exact prompt only, to
keep injection fast. ``with_probes`` puts the measures into the audit rows and computes the
``RecallAudited`` means; ``probe_means`` reads the latest ones back from a list of events.
``is_healthy`` says whether an audit row is healthy under sleep's ``degraded_by`` measure.
"""

from __future__ import annotations

import msgspec

from memlog.store.events import RecallAudited
from memlog.store.records import AuditResult

PROBED_PHASES = ("sleep-pre", "sleep-post", "manual")


def with_probes(rows: list[AuditResult], probes) -> tuple[list[AuditResult], dict]:
    """Audit rows with their probe measures, and the RecallAudited means over measured facts."""
    rows = [msgspec.structs.replace(r, paraphrase=p.paraphrase, neighbours=p.neighbours, chat=p.chat) for r, p in zip(rows, probes)]

    def mean(values):
        values = [float(v) for v in values if v is not None]
        return sum(values) / len(values) if values else None

    return rows, {
        "paraphrase_recall": mean(r.paraphrase for r in rows),
        "neighbour_unchanged": mean(r.neighbours for r in rows),
        "chat_recall": mean(r.chat for r in rows),
    }


def probe_means(events) -> dict:
    """The paraphrase, neighbourhood and chat means of the latest audit that measured them."""
    for event in reversed(list(events)):
        if isinstance(event, RecallAudited) and event.phase in PROBED_PHASES:
            return {
                "probe_audit_phase": event.phase,
                "paraphrase_recall": event.paraphrase_recall,
                "neighbour_unchanged": event.neighbour_unchanged,
                "chat_recall": event.chat_recall,
            }
    return {"probe_audit_phase": None, "paraphrase_recall": None, "neighbour_unchanged": None, "chat_recall": None}


def is_healthy(row: AuditResult, degraded_by: str = "exact", tau: float = 0.5) -> bool:
    """Whether an audited fact is healthy under ``degraded_by`` (``EngineConfig.degraded_by``).

    ``exact``: recalled on its own prompt. ``paraphrase``: the fraction of its paraphrases
    recalled is at least ``tau``. ``chat``: recalled through the chat template. ``any``: all
    three hold, so any failing measure makes the fact degraded. A measure the row lacks (no
    paraphrase, an audit without probes) falls back to exact-prompt recall."""
    if degraded_by == "exact":
        return row.recalled
    paraphrase = row.recalled if row.paraphrase is None else row.paraphrase >= tau
    chat = row.recalled if row.chat is None else bool(row.chat)
    if degraded_by == "paraphrase":
        return paraphrase
    if degraded_by == "chat":
        return chat
    return row.recalled and paraphrase and chat
