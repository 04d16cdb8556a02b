"""Running an experiment end to end: seed, create a fresh store, run the protocol, describe the run.

``ExperimentSetup`` holds what the CLI's common options set (seed, refresh mode, cap,
model, layers, …). ``create_memory`` seeds everything *before* the model is loaded,
then creates a fresh store with ``init_memory``; the experiment functions run a protocol
into it and return one JSON-ready document. ``lm=`` and ``memit=`` let tests pass a tiny
model and cheap MEMIT settings.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from memlog.core.facts import Fact
from memlog.core.memit_hparams import MemitConfig
from memlog.core.model import ModelSpec
from memlog.core.pool import fact_pool, mixed_pool
from memlog.engine.config import EngineConfig
from memlog.engine.open import init_memory
from memlog.errors import UserError
from memlog.experiments.capacity import plot_capacity, run_capacity
from memlog.experiments.phase_ab import run_phase_ab
from memlog.experiments.seeding import seed_everything
from memlog.experiments.wake_capacity import run_wake_capacity
from memlog.progress import ProgressFn, no_progress

EXPERIMENTS = ("wake-capacity", "phase-ab", "capacity")
PAPER_CAP = 50  # the paper's protocols prune at a count cap; this one unless --cap says otherwise


@dataclass(frozen=True)
class ExperimentSetup:
    seed: int = 0
    refresh_mode: str = "in-place"
    refresh_strategy: str = "reinject"
    cap: int | None = PAPER_CAP  # None: the null-space budget
    max_cycles: int = 10
    threads: int | None = None
    model: str = "embedded"
    layers: tuple[int, ...] | None = None
    dtype: str = "float32"
    device: str = "cpu"
    relation: str = "lives in"
    ppl_bound: float | None = EngineConfig.ppl_bound  # roll back a refresh that raises PPL by more; None: no check
    wake: str = "unconstrained"  # the paper's protocols inject unconstrained
    protect_positions: str = "subject"  # what constrained solves hold: the documented runs held the subject's key
    lam: float | None = None  # MEMIT's λ; None: a new store's default for the wake mode (memit_hparams.store_lam)
    batch_refresh: bool = False  # sleep refreshes a cycle's degraded facts in one constrained solve (engine/refresh_batch.py)

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            cap=self.cap,
            refresh_mode=self.refresh_mode,
            refresh_strategy=self.refresh_strategy,
            max_cycles=self.max_cycles,
            ppl_bound=self.ppl_bound,
            stale_after=None,  # the paper's Algorithm 1 refreshes every degraded fact in every cycle
            wake=self.wake,
            protect_positions=self.protect_positions,
            batch_refresh=self.batch_refresh,
        )

    def to_dict(self) -> dict:
        data = asdict(self)
        data["layers"] = list(self.layers) if self.layers is not None else None
        return data


def pool_facts(setup: ExperimentSetup, n: int) -> list[Fact]:
    """The first ``n`` facts of the seeded pool: the seed fixes which facts and their order."""
    if n < 1:
        raise UserError(f"an experiment needs at least one fact, got {n}")
    return fact_pool(n, seed=setup.seed, relation=setup.relation)


def create_memory(store_dir: Path, setup: ExperimentSetup, lm=None, memit=None, progress: ProgressFn = no_progress):
    """Seed everything, then create a fresh store for the experiment. Returns (memory, determinism settings)."""
    settings = seed_everything(setup.seed, setup.threads)
    engine = setup.engine_config()  # validates refresh mode and cap before anything is loaded
    memit = memit if memit is not None else MemitConfig(seed=setup.seed)
    if setup.layers is not None:
        memit = replace(memit, layers=tuple(setup.layers))
    if setup.lam is not None:
        memit = replace(memit, lam=setup.lam)
    spec = ModelSpec(model=setup.model, dtype=setup.dtype, device=setup.device)
    mem = init_memory(Path(store_dir), spec, memit=memit, engine=engine, lm=lm, progress=progress)
    return mem, settings


def describe(mem, name: str, setup: ExperimentSetup, settings: dict, wall: float) -> dict:
    """The common part of every experiment's document: what ran, on what, into which store."""
    header = mem.header
    return {
        "experiment": name,
        "store": str(mem.store.path),
        "setup": setup.to_dict(),
        "determinism": settings,
        "model": header.model_id,
        "model_source": header.model_source,
        "fingerprint": header.fingerprint,
        "layers": list(header.layers),
        "memit": header.config.get("memit", {}),
        "engine": header.config.get("engine", {}),
        "seq": mem.head_seq,
        "wall_seconds": wall,
    }


def paper_setup(setup: ExperimentSetup) -> ExperimentSetup:
    """The paper's protocols prune at a count cap: ``PAPER_CAP`` unless one is given."""
    return replace(setup, cap=setup.cap if setup.cap is not None else PAPER_CAP)


def capacity_experiment(
    store_dir: Path,
    setup: ExperimentSetup,
    n_facts: int = 100,
    wave: int = 10,
    names: str = "unique",
    lm=None,
    memit=None,
    progress: ProgressFn = no_progress,
    on_row=None,
    batch_size: int = 1,
    sleep: bool = True,
    joint: bool = False,
) -> dict:
    """Waves of ``wave`` mixed-relation pool facts (``batch_size`` per MEMIT solve), a sleep until
    converged after each (``experiments.capacity``; ``sleep`` False: an audit only; ``joint``: a
    joint re-solve of every applied edit before each sleep)."""
    if wave < 1:
        raise UserError(f"--wave must be at least 1, got {wave}")
    if n_facts < 1:
        raise UserError(f"an experiment needs at least one fact, got {n_facts}")
    facts = mixed_pool(n_facts, seed=setup.seed, names=names)
    start = time.perf_counter()
    mem, settings = create_memory(store_dir, setup, lm=lm, memit=memit, progress=progress)
    try:
        result = run_capacity(mem, facts, wave, max_cycles=setup.max_cycles, progress=progress, on_row=on_row, batch_size=batch_size, sleep=sleep, joint=joint)
        doc = describe(mem, "capacity", setup, settings, time.perf_counter() - start)
    finally:
        mem.close()
    return {**doc, "facts": n_facts, "names": names, "batch_size": batch_size, "sleep": sleep, "joint": joint, **result}


def capacity_plot(docs: dict[str, dict], path: Path) -> Path:
    """One PNG of recall and PPL against facts stored for several capacity runs (label → document)."""
    base = next((d.get("base_ppl") for d in docs.values() if d.get("base_ppl") is not None), None)
    return plot_capacity({label: d["rows"] for label, d in docs.items()}, Path(path), base)


def wake_capacity_experiment(
    store_dir: Path,
    setup: ExperimentSetup,
    n_facts: int = 30,
    ppl_every: int = 1,
    min_recall: float = 0.9,
    jump: int = 2,
    lm=None,
    memit=None,
    progress: ProgressFn = no_progress,
) -> dict:
    """Table 3: inject ``n_facts`` pool facts one at a time into a fresh store; detect the thresholds."""
    setup = paper_setup(setup)
    facts = pool_facts(setup, n_facts)
    start = time.perf_counter()
    mem, settings = create_memory(store_dir, setup, lm=lm, memit=memit, progress=progress)
    try:
        result = run_wake_capacity(mem, facts, ppl_every=ppl_every, min_recall=min_recall, jump=jump, progress=progress)
        doc = describe(mem, "wake-capacity", setup, settings, time.perf_counter() - start)
    finally:
        mem.close()
    return {**doc, "facts": n_facts, "ppl_every": ppl_every, **result.to_dict()}


def phase_ab_experiment(
    store_dir: Path,
    setup: ExperimentSetup,
    n_facts: int = 14,
    second_wave: int = 5,
    ppl_every: int = 0,
    lm=None,
    memit=None,
    progress: ProgressFn = no_progress,
) -> dict:
    """Tables 4, 6, 7: Phase A (``n_facts``, sleep) then Phase B (``second_wave`` more, sleep)."""
    setup = paper_setup(setup)
    if second_wave < 0:
        raise UserError(f"--second-wave must be ≥ 0, got {second_wave}")
    facts = pool_facts(setup, n_facts + second_wave)
    start = time.perf_counter()
    mem, settings = create_memory(store_dir, setup, lm=lm, memit=memit, progress=progress)
    try:
        result = run_phase_ab(mem, facts[:n_facts], facts[n_facts:], max_cycles=setup.max_cycles, ppl_every=ppl_every, progress=progress)
        doc = describe(mem, "phase-ab", setup, settings, time.perf_counter() - start)
    finally:
        mem.close()
    return {**doc, "facts": n_facts, "second_wave": second_wave, **result.to_dict()}
