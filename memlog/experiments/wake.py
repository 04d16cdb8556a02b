"""Wake waves: inject facts one at a time, audit after each, measure perplexity on a schedule.

The protocol step both experiments share (paper §4.4: "facts are injected one at a time
with recall measured after each injection"). Each injection is ``Memory.inject`` with its
audit, so the log holds one ``FactInjected`` and one ``RecallAudited`` (phase ``wake``)
per fact; a perplexity reading is recorded as ``PerplexityMeasured`` with phase ``wake``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from memlog.core.facts import Fact
from memlog.engine.config import finite_reading
from memlog.progress import ProgressFn, no_progress
from memlog.store.events import PerplexityMeasured, RecallAudited



@dataclass
class WakeRow:
    """The state right after one injection (and its audit)."""

    facts: int  # active facts after this injection
    fact_id: str
    subject: str
    object: str
    recalled: bool | None  # the new fact itself
    recall: float
    degraded: int  # active facts not recalled (the paper's Table 3 count)
    newly_broken: int  # facts recalled by the previous audit that fail now
    ledger_size: int
    ppl: float | None
    seconds: float
    seq: int

    def to_dict(self) -> dict:
        return asdict(self)


def recalled_set(audit: RecallAudited | None) -> set[str]:
    """The fact ids an audit found recalled."""
    if audit is None:
        return set()
    return {r.fact_id for r in audit.results if r.recalled}


def record_ppl(mem, phase: str, cycle: int | None = None) -> float:
    """Measure perplexity on the live weights and record it as an event (its own committed unit)."""
    with mem.unit():
        ppl = finite_reading(float(mem.editor.perplexity()), f"at {phase}")
        mem.emit(PerplexityMeasured(ppl=ppl, phase=phase, cycle=cycle))
    return ppl


def ppl_due(index: int, total: int, every: int) -> bool:
    """Whether to measure after injection ``index`` (1-based): every ``every`` facts and after the last.

    ``every`` = 0 measures only after the last injection.
    """
    if index == total:
        return True
    return every > 0 and index % every == 0


def inject_one(mem, fact: Fact, previous: set[str]) -> WakeRow:
    """Inject ``fact`` with an audit of every active fact; return the row (PPL filled in by the caller)."""
    report = mem.inject([fact], audit=True)
    outcome = report.facts[0]
    audit = mem.ledger.last_audit
    now = recalled_set(audit)
    return WakeRow(
        facts=len(mem.ledger.active_facts()),
        fact_id=fact.fact_id,
        subject=fact.subject,
        object=fact.object,
        recalled=outcome.recalled,
        recall=audit.recall if audit else 1.0,
        degraded=audit.degraded if audit else 0,
        newly_broken=len(previous - now),
        ledger_size=mem.ledger.ledger_size(),
        ppl=None,
        seconds=outcome.seconds,
        seq=mem.head_seq,
    )


def inject_wave(mem, facts: list[Fact], ppl_every: int = 0, progress: ProgressFn = no_progress, label: str = "wake") -> list[WakeRow]:
    """Inject ``facts`` one at a time; one row per fact, PPL every ``ppl_every`` facts and after the last."""
    rows: list[WakeRow] = []
    previous = recalled_set(mem.ledger.last_audit)
    for i, fact in enumerate(facts, start=1):
        progress(label, i - 1, len(facts))
        row = inject_one(mem, fact, previous)
        if ppl_due(i, len(facts), ppl_every):
            row.ppl = record_ppl(mem, "wake")
        rows.append(row)
        previous = recalled_set(mem.ledger.last_audit)
    progress(label, len(facts), len(facts))
    return rows


def base_ppl(mem) -> float | None:
    """The base model's perplexity recorded when the store was created."""
    return mem.base_ppl
