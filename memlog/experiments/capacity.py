"""Capacity: how many facts a memory holds when facts arrive in waves and sleep runs after each.

``run_capacity(mem, facts, wave)`` injects the facts ``wave`` at a time (no audit within a
wave: the sleep's first audit is the wave's audit), then sleeps until converged (at most
``max_cycles``). One row per wave: recall over every fact ever injected after the wave and
after its sleep, the sleep's cycles and refreshes, perplexity after the wave and after the
sleep, and, per edit layer, the null-space rank left and ‖W − W_base‖_F / ‖W_base‖_F from
the latest ``ConstraintRoom`` (measured in each sleep cycle). ``plot_capacity`` draws recall
and perplexity against the number of facts stored.

With ``joint=True`` each wave is audited and perplexity read once it is injected, then every
applied edit is re-solved jointly from the base weights (``memlog consolidate --joint``,
``memlog.engine.joint``) before the sleep; the row's ``recall_after_joint`` and
``ppl_after_joint`` are the sleep's first readings.

With ``sleep=False`` (the wake-only curve) no sleep runs: after each wave one audit and one
perplexity reading are logged (phase ``wake``), the room is measured as a sleep would measure
it (``memlog.engine.room.room_now``, not logged), and the row's after-sleep fields are None.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from memlog.analytics.figures import DPI
from memlog.core.facts import Fact
from memlog.engine.room import delta_norms, room_now
from memlog.experiments.wake import base_ppl
from memlog.progress import ProgressFn, no_progress
from memlog.store.events import ConstraintRoom, PerplexityMeasured, RecallAudited


@dataclass
class CapacityRow:
    wave: int
    facts: int  # facts injected so far
    active_facts: int
    recall_after_wave: float  # over every fact ever injected (a pruned fact counts as degraded)
    degraded_after_wave: int
    recall_after_sleep: float | None  # None: the run did not sleep (wake only)
    degraded_after_sleep: int | None
    cycles: int
    converged: bool
    refreshed: int
    pruned: int
    released: int  # by the null-space budget (FactReleased)
    failed: int
    ppl_after_wave: float
    ppl_after_sleep: float | None
    rank_left: list[int]  # per edit layer, latest sleep measurement
    delta_norm: list[float]  # per edit layer
    reach: list[float] | None  # per edit layer, a new fact's median reach (memlog.engine.room)
    inject_seconds: float
    sleep_seconds: float  # without sleep: the wave-end audit, perplexity and room reading
    recall_after_joint: float | None = None  # with ``joint``: after the re-solve, before the sleep
    ppl_after_joint: float | None = None
    joint_seconds: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def latest_room(mem) -> ConstraintRoom | None:
    return next((e for e in reversed(mem.events()) if isinstance(e, ConstraintRoom)), None)


def wave_reading(mem) -> tuple[RecallAudited, float]:
    """One logged audit and perplexity reading (phase ``wake``): (the audit, the perplexity)."""
    with mem.unit():
        audit = mem.record_audit("wake", None)
        ppl = float(mem.editor.perplexity())
        mem.emit(PerplexityMeasured(ppl=ppl, phase="wake"))
    return audit, ppl


def run_wave(mem, number: int, facts: list[Fact], max_cycles: int, progress: ProgressFn, batch_size: int = 1, sleep: bool = True, joint: bool = False) -> CapacityRow:
    """Inject one wave without audits (``batch_size`` facts per MEMIT solve), then (``joint``)
    re-solve every applied edit jointly, then sleep until converged (``sleep``; else audit
    only); the wave's row."""
    start = time.perf_counter()
    mem.inject(facts, audit=False, progress=progress, batch_size=batch_size)
    injected = time.perf_counter()
    if not sleep:
        return wake_only_row(mem, number, injected - start)
    wave_audit = wave_ppl = None
    if joint:
        wave_audit, wave_ppl = wave_reading(mem)
        mem.consolidate(joint=True, progress=progress)
    resolved = time.perf_counter()
    report = mem.sleep(until_converged=True, max_cycles=max_cycles, progress=progress)
    cycles = report.cycles
    first, last = cycles[0], cycles[-1]
    room = latest_room(mem)
    return _row(
        mem,
        number,
        recall_after_wave=wave_audit.recall if joint else first.recall_before,
        degraded_after_wave=wave_audit.degraded if joint else first.degraded_before,
        recall_after_joint=first.recall_before if joint else None,
        ppl_after_joint=first.ppl_before if joint else None,
        joint_seconds=resolved - injected if joint else None,
        recall_after_sleep=last.recall,
        degraded_after_sleep=last.degraded,
        cycles=len(cycles),
        converged=report.converged,
        refreshed=sum(c.refreshed for c in cycles),
        pruned=sum(c.pruned for c in cycles),
        released=sum(c.released for c in cycles),
        failed=sum(len(c.failed) for c in cycles),
        ppl_after_wave=wave_ppl if joint else first.ppl_before,
        ppl_after_sleep=last.ppl_after,
        rank_left=list(room.rank_left) if room else [],
        delta_norm=list(room.delta_norm) if room else [],
        reach=list(room.reach) if room and room.reach is not None else None,
        inject_seconds=injected - start,
        sleep_seconds=time.perf_counter() - resolved,
    )


def _row(mem, number: int, **measured) -> CapacityRow:
    return CapacityRow(wave=number, facts=len(mem.ledger.facts), active_facts=len(mem.ledger.active_facts()), **measured)


def wake_only_row(mem, number: int, inject_seconds: float) -> CapacityRow:
    """The row of a wave that no sleep follows: one audit and one perplexity reading (logged,
    phase ``wake``) and the room as sleep would measure it."""
    start = time.perf_counter()
    audit, ppl = wave_reading(mem)
    room = room_now(mem)
    norms = delta_norms(mem)
    layers = sorted(room.rank_left) if room else []
    return _row(
        mem,
        number,
        recall_after_wave=audit.recall,
        degraded_after_wave=audit.degraded,
        recall_after_sleep=None,
        degraded_after_sleep=None,
        cycles=0,
        converged=False,
        refreshed=0,
        pruned=0,
        released=0,
        failed=0,
        ppl_after_wave=ppl,
        ppl_after_sleep=None,
        rank_left=[int(room.rank_left[l]) for l in layers],
        delta_norm=[float(norms.get(l, 0.0)) for l in layers],
        reach=[float(room.reach[l]) for l in layers] if room and room.reach else None,
        inject_seconds=inject_seconds,
        sleep_seconds=time.perf_counter() - start,
    )


def run_capacity(mem, facts: list[Fact], wave: int, max_cycles: int = 10, progress: ProgressFn = no_progress, on_row=None, batch_size: int = 1, sleep: bool = True, joint: bool = False) -> dict:
    """Every wave's row, and the base perplexity; ``on_row(row)`` is called after each wave;
    ``sleep`` False: the wake-only curve (``wake_only_row``)."""
    rows: list[CapacityRow] = []
    waves = [facts[i : i + wave] for i in range(0, len(facts), wave)]
    for number, chunk in enumerate(waves, start=1):
        progress("waves", number - 1, len(waves))
        rows.append(run_wave(mem, number, chunk, max_cycles, progress, batch_size, sleep, joint))
        if on_row is not None:
            on_row(rows[-1])
    progress("waves", len(waves), len(waves))
    return {"rows": [r.to_dict() for r in rows], "base_ppl": base_ppl(mem), "wave": wave}


def plot_capacity(runs: dict[str, list[dict]], path: Path, base_ppl: float | None = None) -> Path:
    """Recall after each wave's sleep (and right after the wave, dashed) and PPL against facts stored."""
    fig = Figure(figsize=(10, 4), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    colours = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
    if len(runs) > len(colours):
        raise ValueError(f"plot_capacity draws at most {len(colours)} runs, got {len(runs)}")
    highest = base_ppl or 0.0
    for (label, rows), colour in zip(runs.items(), colours):
        x = [r["facts"] for r in rows]
        slept = all(r["recall_after_sleep"] is not None for r in rows)
        if slept:
            left.plot(x, [r["recall_after_sleep"] for r in rows], marker="o", color=colour, label=f"{label}: after sleep")
        left.plot(x, [r["recall_after_wave"] for r in rows], linestyle="--" if slept else "-", marker=None if slept else "s", color=colour, alpha=0.6 if slept else 1.0, label=f"{label}: after the wave")
        ppl = [r["ppl_after_sleep"] if slept else r["ppl_after_wave"] for r in rows]
        highest = max(highest, *ppl)
        right.plot(x, ppl, marker="o" if slept else "s", color=colour, label=label)
    if base_ppl is not None:
        right.axhline(base_ppl, color="#888888", linestyle=":", label="base model")
    left.set(xlabel="facts stored", ylabel="recall (all facts ever injected)", ylim=(-0.02, 1.05), title="Recall")
    right.set(xlabel="facts stored", ylabel="perplexity", title="Perplexity after each sleep (or wave, without sleep)")
    if base_ppl and highest > 3 * base_ppl:  # a collapsed run would flatten the others
        right.set_yscale("log")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(path, format="png", dpi=DPI)
    return path
