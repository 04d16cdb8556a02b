"""Two-phase damage-recovery (paper §4.3, §5.2-5.6; Tables 4, 6 and 7).

Phase A: inject the first wave one fact at a time (unconstrained), then sleep until
converged (zero degraded facts for two consecutive cycles) or ``max_cycles``.
Phase B: inject the second wave into the maintained model, then sleep again.

Per phase the result holds the wave (the post-injection state: the paper's "cycle 0")
and one row per sleep cycle (recall, degraded, refreshed, pruned, blocked, ledger size,
PPL before/after, wall seconds and the per-step breakdown), plus the summaries the
paper tabulates: convergence (Table 4) and perplexity drift (Table 7).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from memlog.core.facts import Fact
from memlog.experiments.wake import WakeRow, base_ppl, inject_wave
from memlog.progress import ProgressFn, no_progress

DIVERGED_DROP = 0.1  # a phase that ends this far below its best recall (or below its start) diverged


@dataclass
class WaveSummary:
    """The state after a wave of injections (the paper's "cycle 0 (post-inj.)")."""

    injected: int
    active_facts: int
    recall: float  # over every fact ever injected (a pruned fact counts as degraded)
    degraded: int
    ledger_size: int
    ppl: float | None
    seconds: float
    seq: int
    facts_known: int = 0
    recall_active: float = 1.0  # over the active facts (the wake audit's own number)
    degraded_active: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PhaseResult:
    name: str
    wave: WaveSummary
    trajectory: list[WakeRow]
    cycles: list[dict]  # CycleReport.to_dict() plus "phase_cycle" (1-based within the phase)
    converged: bool
    first_clean_cycle: int | None  # first phase cycle with zero degraded after it
    final_recall: float
    result: str
    max_ledger_size: int
    seq: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "wave": self.wave.to_dict(),
            "trajectory": [r.to_dict() for r in self.trajectory],
            "cycles": self.cycles,
            "converged": self.converged,
            "first_clean_cycle": self.first_clean_cycle,
            "cycles_run": len(self.cycles),
            "final_recall": self.final_recall,
            "result": self.result,
            "max_ledger_size": self.max_ledger_size,
            "seq": self.seq,
        }


@dataclass
class PhaseABResult:
    phases: list[PhaseResult]
    base_ppl: float | None
    refresh_mode: str
    cap: int

    def to_dict(self) -> dict:
        return {
            "phases": [p.to_dict() for p in self.phases],
            "base_ppl": self.base_ppl,
            "refresh_mode": self.refresh_mode,
            "cap": self.cap,
            "convergence": convergence_summary(self),
            "perplexity": ppl_summary(self),
        }


def wave_summary_of(rows: list[WakeRow], ledger_size: int, seq: int, facts_known: int) -> WaveSummary:
    """The post-injection state from a wave's rows, with the ledger size, head seq and number of
    facts ever injected after it (recall and degraded over those; the ``_active`` ones over the active facts)."""
    last = rows[-1]
    hits = last.facts - last.degraded
    known = max(facts_known, last.facts)
    return WaveSummary(
        injected=len(rows),
        active_facts=last.facts,
        recall=hits / known if known else 1.0,
        degraded=known - hits,
        ledger_size=ledger_size,
        ppl=last.ppl,
        seconds=sum(r.seconds for r in rows),
        seq=seq,
        facts_known=known,
        recall_active=last.recall,
        degraded_active=last.degraded,
    )


def wave_summary(mem, rows: list[WakeRow]) -> WaveSummary:
    return wave_summary_of(rows, mem.ledger.ledger_size(), mem.head_seq, len(mem.ledger.facts))


def phase_label(wave: WaveSummary, cycles: list[dict], converged: bool) -> str:
    """The paper's Table 4 result words for a phase; recall and degraded over every fact ever
    injected, so that pruning a degraded fact away never reads as recovery."""
    if wave.degraded == 0 and all(c["degraded"] == 0 for c in cycles):
        return "No sleep needed"
    if converged:
        return "Converged"
    final = cycles[-1]["recall"] if cycles else wave.recall
    best = max([wave.recall] + [c["recall"] for c in cycles])
    if final < wave.recall or final < best - DIVERGED_DROP:
        return "Diverged"
    if cycles and cycles[-1]["blocked"] > 0 and cycles[-1]["refreshed"] == 0:
        return "Stalled (refreshes blocked at the cap)"
    return "Not converged"


def run_phase(mem, name: str, facts: list[Fact], max_cycles: int, ppl_every: int, progress: ProgressFn) -> PhaseResult:
    """One phase: inject the wave, then sleep until converged (at most ``max_cycles``)."""
    rows = inject_wave(mem, facts, ppl_every=ppl_every, progress=progress, label=f"wave {name}")
    wave = wave_summary(mem, rows)
    report = mem.sleep(until_converged=True, max_cycles=max_cycles, progress=progress)
    cycles = [{**c.to_dict(), "phase_cycle": i} for i, c in enumerate(report.cycles, start=1)]
    clean = next((c["phase_cycle"] for c in cycles if c["degraded"] == 0), None)
    return PhaseResult(
        name=name,
        wave=wave,
        trajectory=rows,
        cycles=cycles,
        converged=report.converged,
        first_clean_cycle=clean,
        final_recall=cycles[-1]["recall"] if cycles else wave.recall,
        result=phase_label(wave, cycles, report.converged),
        max_ledger_size=max([wave.ledger_size] + [c["ledger_size"] for c in cycles]),
        seq=mem.head_seq,
    )


def run_phase_ab(
    mem,
    first_wave: list[Fact],
    second_wave: list[Fact],
    max_cycles: int = 10,
    ppl_every: int = 0,
    progress: ProgressFn = no_progress,
) -> PhaseABResult:
    """Phase A (first wave, sleep) then Phase B (second wave, sleep), into ``mem``'s store."""
    phases = [run_phase(mem, "A", first_wave, max_cycles, ppl_every, progress)]
    if second_wave:
        phases.append(run_phase(mem, "B", second_wave, max_cycles, ppl_every, progress))
    return PhaseABResult(phases=phases, base_ppl=base_ppl(mem), refresh_mode=mem.config.refresh_mode, cap=mem.config.cap)


def convergence_summary(result: PhaseABResult) -> dict:
    """Table 4's columns: initial recall, Phase A cycles and final recall, Phase B cycles and result."""
    out: dict = {}
    for phase in result.phases:
        key = phase.name
        out[f"phase_{key}_initial_recall"] = phase.wave.recall
        out[f"phase_{key}_cycles_run"] = len(phase.cycles)
        out[f"phase_{key}_first_clean_cycle"] = phase.first_clean_cycle
        out[f"phase_{key}_final_recall"] = phase.final_recall
        out[f"phase_{key}_converged"] = phase.converged
        out[f"phase_{key}_result"] = phase.result
    return out


def ppl_summary(result: PhaseABResult) -> dict:
    """Table 7's columns: baseline, post-injection, post-sleep, peak and drift (relative to the baseline)."""
    base = result.base_ppl
    first = result.phases[0]
    post_sleep = first.cycles[-1]["ppl_after"] if first.cycles else first.wave.ppl
    readings = [c["ppl_after"] for p in result.phases for c in p.cycles] + [p.wave.ppl for p in result.phases if p.wave.ppl is not None]
    peak = max(readings) if readings else None
    last = result.phases[-1]
    final = last.cycles[-1]["ppl_after"] if last.cycles else last.wave.ppl

    def drift(x):
        return None if base in (None, 0) or x is None else x / base - 1.0

    return {
        "baseline": base,
        "post_injection": first.wave.ppl,
        "post_sleep_A": post_sleep,
        "final": final,
        "peak": peak,
        "drift_post_sleep_A": drift(post_sleep),
        "drift_final": drift(final),
        "drift_peak": drift(peak),
        "post_injection_B": result.phases[1].wave.ppl if len(result.phases) > 1 else None,
    }
