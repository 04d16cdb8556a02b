"""The demo protocol: a short end-to-end run on a fresh store (``memlog demo``).

1. create a fresh store (``./memlog-demo`` by default; an older demo store there is replaced,
   anything else is left alone and the demo refuses);
2. wake: inject facts from the synthetic pool one at a time, auditing after each, until at
   least ``stop_degraded`` facts are no longer recalled (or ``max_facts`` facts are in);
3. sleep until converged (two clean cycles in a row, or the cycle limit);
4. the cycle table;
5. time travel: replay to ``cycle=0`` (the end of the wake, before the first sleep), recompute
   recall on the rebuilt weights and compare it with the audit recorded then, and with now;
6. write the HTML report.

Measured on an idle 2-core CPU machine with the defaults (layers 2-9): 17 injections until
3 facts were not recalled, 2 sleep cycles (0.824 → 1.000), 3.5 to 4 minutes of wall time in
three runs, with and without cached covariances; most of it is MEMIT's v* optimisation (~7 s
per fact). ``fast`` trades fidelity for time on slow or shared machines: a narrower window of
edit layers (4-7 instead of 2-9), whose capacity is smaller, and 3 context prefixes per fact
instead of 5.

``run_demo`` takes a ``create(path)`` function, so the flow runs with any Memory (the tests use
the fake editor), and a ``Narrator`` that shows each step (the CLI prints them with rich).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from memlog.analytics.report import write_report
from memlog.core.facts import Fact
from memlog.core.memit_hparams import MemitConfig
from memlog.core.model import ModelSpec
from memlog.core.pool import fact_pool
from memlog.engine.config import EngineConfig
from memlog.engine.open import init_memory
from memlog.errors import UserError
from memlog.progress import ProgressFn
from memlog.replay.why import why_report

DEFAULT_DEMO_STORE = "memlog-demo"
DEMO_MARKER = ".memlog-demo"  # a store directory made by the demo, safe to replace
FAST_LAYERS = (4, 5, 6, 7)


class Narrator(Protocol):
    """Shows the demo as it runs: numbered steps, notes under them, the cycles and the time travel."""

    def step(self, number: int, text: str) -> None: ...

    def note(self, text: str) -> None: ...

    def cycles(self, cycles: list[dict]) -> None: ...

    def travel(self, travel: dict) -> None: ...


@dataclass(frozen=True)
class DemoSettings:
    max_facts: int = 30
    stop_degraded: int = 2
    fast: bool = False
    seed: int = 0
    max_cycles: int = 6

    def to_dict(self) -> dict:
        return asdict(self)


def prepare_store_dir(path: Path) -> None:
    """Make ``path`` ready for a fresh demo store: replace an old demo store, refuse anything else."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} is a file; pass another --store directory for the demo")
    if path.is_dir() and any(path.iterdir()):
        if not (path / DEMO_MARKER).is_file():
            raise UserError(
                f"{path} is not empty and was not made by `memlog demo`; refusing to replace it. "
                "Pass another --store directory, or remove it yourself"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / DEMO_MARKER).write_text("made by `memlog demo`; the next demo run replaces this directory\n")


def demo_configs(settings: DemoSettings):
    """(MemitConfig, EngineConfig) for the demo."""
    engine = EngineConfig(max_cycles=settings.max_cycles, cap=50, wake="unconstrained")  # the paper's protocol
    if not settings.fast:
        return MemitConfig(seed=settings.seed), engine
    # v* keeps the paper's 30 steps: with 12 most facts were never written (v* loss 3-9, measured).
    return MemitConfig(layers=FAST_LAYERS, n_prefixes=3, seed=settings.seed), engine


def create_embedded(settings: DemoSettings, progress: ProgressFn) -> Callable:
    """A ``create(path)`` for ``run_demo``: a fresh store on the embedded model."""
    memit, engine = demo_configs(settings)

    def create(path: Path):
        return init_memory(path, ModelSpec(), memit=memit, engine=engine, progress=progress)

    return create


def wake_until_degraded(mem, facts, stop_degraded: int, progress: ProgressFn) -> list[dict]:
    """Inject ``facts`` one at a time (each audited) until ``stop_degraded`` are not recalled."""
    rows: list[dict] = []
    for i, fact in enumerate(facts):
        progress("wake", i, len(facts))
        report = mem.inject([fact], audit=True)
        outcome = report.facts[0]
        rows.append(
            {
                "facts": len(mem.ledger.active_facts()),
                "subject": fact.subject,
                "object": fact.object,
                "recalled": outcome.recalled,
                "recall": report.recall,
                "degraded": report.degraded,
                "seconds": round(outcome.seconds, 2),
                "seq": report.seq,
            }
        )
        if report.degraded is not None and report.degraded >= stop_degraded:
            break
    progress("wake", len(rows), len(facts))
    return rows


def time_travel(mem) -> dict:
    """Replay to cycle=0 with verification, and compare each fact then (recorded, recomputed) and now."""
    replay = mem.replay("cycle=0", verify=True)
    now = {s.fact.fact_id: s.last_audit.recalled if s.last_audit else None for s in mem.ledger.active_facts()}
    facts = [
        {
            "fact_id": f["fact_id"],
            "fact": str(Fact(f["subject"], f["relation"], f["object"])),
            "recorded_then": f["recalled"],
            "recomputed_then": f.get("recalled_now"),
            "now": now.get(f["fact_id"]),
        }
        for f in replay["facts"]
    ]
    then = [f["recorded_then"] for f in facts if f["recorded_then"] is not None]
    recomputed = [f["recomputed_then"] for f in facts if f["recomputed_then"] is not None]
    example = _recovered_example(mem, facts)
    return {
        "point": replay["point"],
        "seq": replay["seq"],
        "verified": replay["verified"],
        "weights_match": replay["weights_match"],
        "recall_recorded_then": sum(then) / len(then) if then else None,
        "recall_recomputed_then": sum(recomputed) / len(recomputed) if recomputed else None,
        "recall_now": mem.ledger.last_audit.recall if mem.ledger.last_audit else None,
        "facts": facts,
        "example": example,
    }


def _recovered_example(mem, facts: list[dict]) -> dict | None:
    """One fact that was not recalled at cycle=0 and is now: its completion then and now, and
    which event broke it (``why_report``: the weights replayed after each event before its
    first failed audit)."""
    for f in facts:
        if f["recorded_then"] is False and f["now"]:
            state = mem.ledger.facts[f["fact_id"]]
            prompt = state.fact.prompt
            then = mem.recall(prompt, at="cycle=0")
            now = mem.recall(prompt)
            why = why_report(mem, f["fact_id"], change="degraded")
            broke = next((s for s in why["steps"] if s["changed"]), None)
            return {
                "fact_id": f["fact_id"],
                "prompt": prompt,
                "object": state.fact.object,
                "then": then["completion"],
                "now": now["completion"],
                "broken_at_seq": broke["seq"] if broke else None,
                "broken_by": broke["what"] if broke else None,
            }
    return None


def run_demo(store: Path, settings: DemoSettings, create: Callable, narrate: Narrator, progress: ProgressFn, report_dir: Path | None = None) -> dict:
    """The whole demo; returns one JSON-ready document. ``create(path)`` makes the Memory."""
    start = time.perf_counter()
    store = Path(store)
    prepare_store_dir(store)
    narrate.step(1, f"creating a fresh store in {store}")
    mem = create(store)
    try:
        narrate.note(f"model {mem.header.model_id}, edit layers {list(mem.header.layers)}")
        narrate.step(2, f"wake: injecting facts one at a time until {settings.stop_degraded} are not recalled (at most {settings.max_facts})")
        wake = wake_until_degraded(mem, fact_pool(settings.max_facts, seed=settings.seed), settings.stop_degraded, progress)
        last = wake[-1] if wake else {}
        narrate.note(f"{len(wake)} facts injected; recall {last.get('recall', 0):.3f}, {last.get('degraded')} degraded")
        narrate.step(3, "sleep: audit, refresh degraded facts under null-space constraints, until converged")
        sleep = mem.sleep(until_converged=True, progress=progress)
        cycles = [c.to_dict() for c in sleep.cycles]
        narrate.step(4, "sleep cycles")
        narrate.cycles(cycles)
        narrate.note("converged" if sleep.converged else f"not converged after {len(cycles)} cycles")
        narrate.step(5, "time travel: replay to cycle=0 (before the sleep) and recompute recall there")
        travel = time_travel(mem)
        narrate.travel(travel)
    finally:
        mem.close()
    narrate.step(6, "report")
    report = write_report(store, report_dir or store / "report")
    narrate.note(f"open {report['index']}")
    return {
        "store": str(store),
        "settings": settings.to_dict(),
        "wake": wake,
        "sleep": {"cycles": cycles, "converged": sleep.converged},
        "time_travel": travel,
        "report": report["index"],
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
