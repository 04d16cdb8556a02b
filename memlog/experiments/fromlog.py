"""Experiment results rebuilt from a store's log alone (no model needed).

Every number ``memlog experiment`` prints is also in the store's events, so the result
document can be re-derived later — after the process that ran the experiment is gone, or
from a store that was extended by hand (``memlog sleep`` after an interrupted run):

- a *wave* is a run of ``FactInjected`` events, each with the wake ``RecallAudited`` and
  any wake ``PerplexityMeasured`` that follow it;
- a *phase* is a wave and the sleep cycles (``SleepEnded``) that follow it, up to the next
  injection; each cycle is the ``CycleRow`` of ``memlog.projections.readmodels`` (the fold the
  ``cycles`` SQL view equals) in the shape of the engine's ``CycleReport``.

``phase_ab_from_log`` returns the same ``PhaseABResult`` as ``run_phase_ab``, and
``wake_capacity_from_log`` the same ``WakeCapacityResult`` as ``run_wake_capacity``. Two
fields differ in kind: a row's ``seconds`` is the logged inject time plus its audit's
(not the caller's stopwatch), and a cycle's ``failed`` list (refreshes that raised) is
not logged, so it is empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from memlog.projections.ledger import Ledger
from memlog.projections.readmodels import CycleFold, CycleRow
from memlog.store.events import FactInjected, PerplexityMeasured, RecallAudited, SleepEnded, SleepStarted
from memlog.store.store import Store
from memlog.engine.sleep import open_degraded
from memlog.experiments.phase_ab import PhaseABResult, PhaseResult, phase_label, wave_summary_of
from memlog.experiments.wake import WakeRow, recalled_set
from memlog.experiments.wake_capacity import WakeCapacityResult, wake_capacity_result


@dataclass
class _Phase:
    rows: list[WakeRow] = field(default_factory=list)
    cycles: list[dict] = field(default_factory=list)
    ledger_size: int = 0
    wave_seq: int = 0  # the head after the wave (its last audit or PPL reading)
    end_seq: int = 0  # the head after the phase's last cycle
    facts_known: int = 0  # facts ever injected after the wave


def cycle_report(row: CycleRow, phase_cycle: int, ledger: Ledger, refresh_mode: str) -> dict:
    """A folded cycle as the dict ``run_phase_ab`` reports (``CycleReport.to_dict()``), given the
    ledger folded up to its ``SleepEnded`` (for ``open_degraded``: its latest audit is the
    cycle's sleep-post audit)."""
    report = row.report_dict()
    post = ledger.last_audit
    opened = open_degraded(ledger, post, refresh_mode) if post is not None else row.degraded_after_active
    return {**report, "open_degraded": opened, "failed": [], "phase_cycle": phase_cycle}


def _wake_row(ledger: Ledger, injected: FactInjected, audit: RecallAudited, previous: set[str], seq: int) -> WakeRow:
    mine = next((r for r in audit.results if r.fact_id == injected.fact.fact_id), None)
    return WakeRow(
        facts=len(ledger.active_facts()),
        fact_id=injected.fact.fact_id,
        subject=injected.fact.subject,
        object=injected.fact.object,
        recalled=mine.recalled if mine else None,
        recall=audit.recall,
        degraded=audit.degraded,
        newly_broken=len(previous - recalled_set(audit)),
        ledger_size=ledger.ledger_size(),
        ppl=None,
        seconds=injected.seconds + audit.seconds,
        seq=seq,
    )


def split_phases(logged) -> tuple[list[_Phase], float | None, SleepStarted | None]:
    """Fold the log into phases (wave rows and cycles); also the base PPL and the last SleepStarted."""
    ledger, cycles, phases, base = Ledger(), CycleFold(), [], None
    pending: FactInjected | None = None
    previous: set[str] = set()
    last_start: SleepStarted | None = None
    for item in logged:
        event = item.event
        ledger.apply(item.seq, event)
        row = cycles.apply(item.seq, event)
        if isinstance(event, FactInjected):
            if not phases or phases[-1].cycles:
                phases.append(_Phase())
            pending = event
        elif isinstance(event, RecallAudited) and event.phase == "wake" and pending is not None:
            phases[-1].rows.append(_wake_row(ledger, pending, event, previous, item.seq))
            phases[-1].ledger_size, phases[-1].wave_seq = ledger.ledger_size(), item.seq
            phases[-1].facts_known = len(ledger.facts)
            pending = None
        elif isinstance(event, PerplexityMeasured) and event.phase == "base":
            base = event.ppl
        elif isinstance(event, PerplexityMeasured) and event.phase == "wake" and phases and phases[-1].rows and not phases[-1].cycles:
            phases[-1].rows[-1].ppl = event.ppl
            phases[-1].wave_seq = item.seq
        elif isinstance(event, SleepStarted):
            last_start = event
        elif row is not None and phases:
            phases[-1].cycles.append(cycle_report(row, len(phases[-1].cycles) + 1, ledger, row.refresh_mode or "in-place"))
        if isinstance(event, RecallAudited):
            previous = recalled_set(event)
        if phases:
            phases[-1].end_seq = item.seq
    return phases, base, last_start


def _converged(cycles: list[dict]) -> bool:
    streak = 0
    for c in cycles:
        streak = streak + 1 if c["open_degraded"] == 0 else 0
        if streak >= 2:
            return True
    return False


def phase_ab_from_log(logged) -> PhaseABResult:
    """The phase-ab result of a store, from its events; phases are named A, B, C, …"""
    phases, base, start = split_phases(logged)
    results = []
    for i, phase in enumerate(p for p in phases if p.rows):
        wave = wave_summary_of(phase.rows, phase.ledger_size, phase.wave_seq, phase.facts_known)
        converged = _converged(phase.cycles)
        clean = next((c["phase_cycle"] for c in phase.cycles if c["degraded"] == 0), None)
        results.append(
            PhaseResult(
                name=chr(ord("A") + i),
                wave=wave,
                trajectory=phase.rows,
                cycles=phase.cycles,
                converged=converged,
                first_clean_cycle=clean,
                final_recall=phase.cycles[-1]["recall"] if phase.cycles else wave.recall,
                result=phase_label(wave, phase.cycles, converged),
                max_ledger_size=max([wave.ledger_size] + [c["ledger_size"] for c in phase.cycles]),
                seq=phase.end_seq,
            )
        )
    mode = start.refresh_mode if start else "in-place"
    cap = start.cap if start else 0
    return PhaseABResult(phases=results, base_ppl=base, refresh_mode=mode, cap=cap)


def wake_capacity_from_log(logged, min_recall: float = 0.9, jump: int = 2) -> WakeCapacityResult:
    """The wake-capacity result of a store: every wake row in log order, and the thresholds."""
    phases, base, _ = split_phases(logged)
    rows = [row for phase in phases for row in phase.rows]
    return wake_capacity_result(rows, base, min_recall, jump)


def document_from_store(store_dir) -> dict:
    """The JSON document ``memlog experiment`` would print, rebuilt from a store's log.

    A store with sleep cycles is read as phase-ab, one without as wake-capacity.
    """
    store = Store.open(store_dir, writable=False)
    try:
        logged = store.log.read()
        header = store.log.header()
    finally:
        store.close()
    doc = {
        "store": str(store_dir),
        "model": header.model_id,
        "fingerprint": header.fingerprint,
        "layers": list(header.layers),
        "memit": header.config.get("memit", {}),
        "engine": header.config.get("engine", {}),
        "seq": logged[-1].seq if logged else 0,
        "from_log": True,
    }
    if any(isinstance(item.event, SleepEnded) for item in logged):
        result = phase_ab_from_log(logged).to_dict()
        waves = [p["wave"]["injected"] for p in result["phases"]]
        return {**doc, "experiment": "phase-ab", "facts": waves[0] if waves else 0, "second_wave": sum(waves[1:]), **result}
    result = wake_capacity_from_log(logged).to_dict()
    return {**doc, "experiment": "wake-capacity", "facts": len(result["rows"]), **result}
