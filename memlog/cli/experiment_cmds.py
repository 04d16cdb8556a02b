"""``memlog experiment NAME``: run the paper's protocols into a fresh store.

    memlog experiment wake-capacity --facts 30 --store runs/wake
    memlog experiment phase-ab --facts 14 --second-wave 5 --refresh-mode copy --store runs/ab14-copy

Each run seeds everything (``--seed``), creates the store, and records every step as
events, so ``memlog sql``, ``replay`` and ``report`` work on it afterwards. Progress bars
go to stderr; ``--format json`` prints one JSON document on stdout.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import typer

from memlog.cli.common import FormatOpt, StoreOpt, quiet_model_loading, store_path
from memlog.cli.output import Format, emit, progress_bars, table
from memlog.errors import UserError
from memlog.experiments.markdown import capacity_table, perplexity_table, phase_line, phase_table, wake_notes, wake_table

experiment_app = typer.Typer(
    help="Run the paper's protocols (wake-capacity, phase-ab) and the capacity protocol into a fresh store.",
    no_args_is_help=True,
)

RefreshModeOpt = typer.Option("in-place", "--refresh-mode", help="in-place (the fix) or copy (reproduces the paper's death spiral).")
RefreshStrategyOpt = typer.Option(
    "reinject", "--refresh-strategy", help="reinject (revert, then solve again: the paper) or correct (keep the edit, add a constrained correction; in-place only)."
)
CapOpt = typer.Option(None, "--cap", help="Most active facts (in-place) or ledger entries (copy) before pruning (default: 50 for wake-capacity and phase-ab, the null-space budget for capacity).")
WakeOpt = typer.Option("unconstrained", "--wake", help="unconstrained (the paper's MEMIT) or constrained (each inject protects the healthy facts' audit keys).")
ProtectOpt = typer.Option(
    "subject", "--protect", help="Positions constrained solves hold per protected fact: subject (the runs documented in docs/RESULTS.md), object (the default of new stores with constrained wake) or first (the subject's last token and the position that predicts the object's first token)."
)
SeedOpt = typer.Option(0, "--seed", help="Fixes the fact order, MEMIT's context prefixes and every RNG.")
ModelOpt = typer.Option("embedded", "--model", help="embedded (SmolLM2-135M-Instruct), an HF id or a local path.")
LayersOpt = typer.Option(None, "--layers", help="Edit layers, e.g. 2-9 (default: the model's measured default).")
ThreadsOpt = typer.Option(None, "--threads", help="torch CPU threads (fixed for the run; default: torch's current setting).")
DtypeOpt = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16.")
DeviceOpt = typer.Option("cpu", "--device", help="cpu, cuda or auto.")
MaxCyclesOpt = typer.Option(10, "--max-cycles", help="Most sleep cycles per phase (the paper: 10).")
PplBoundOpt = typer.Option(0.05, "--ppl-bound", help="Roll back a refresh that raises PPL by more than this fraction; 0 turns the check off.")
LamOpt = typer.Option(
    None, "--lam", help="MEMIT's λ for the store (default: a new store's, 2 × the key dimension with --wake constrained and 10 without; the constrained runs in docs/RESULTS.md before that default used 10)."
)


# The options every protocol shares, in --help order: (name, type, typer option).
SETUP_OPTIONS: list[tuple[str, type, object]] = [
    ("refresh_mode", str, RefreshModeOpt),
    ("cap", int, CapOpt),
    ("seed", int, SeedOpt),
    ("model", str, ModelOpt),
    ("layers", str, LayersOpt),
    ("threads", int, ThreadsOpt),
    ("dtype", str, DtypeOpt),
    ("device", str, DeviceOpt),
    ("max_cycles", int, MaxCyclesOpt),
    ("ppl_bound", float, PplBoundOpt),
    ("wake", str, WakeOpt),
    ("protect", str, ProtectOpt),
    ("lam", float, LamOpt),
    ("store", Path, StoreOpt),
    ("fmt", Format, FormatOpt),
]


def _setup(seed, refresh_mode, cap, max_cycles, threads, model, layers, dtype, device, ppl_bound, wake, protect, lam=None, refresh_strategy="reinject"):
    from memlog.core.model import parse_layers
    from memlog.experiments.runner import ExperimentSetup

    quiet_model_loading()
    return ExperimentSetup(
        seed=seed,
        refresh_mode=refresh_mode,
        refresh_strategy=refresh_strategy,
        cap=cap,
        max_cycles=max_cycles,
        threads=threads,
        model=model,
        layers=tuple(parse_layers(layers)) if layers else None,
        dtype=dtype,
        device=device,
        ppl_bound=ppl_bound if ppl_bound else None,
        wake=wake,
        protect_positions=protect,
        lam=lam,
    )


def protocol_command(name: str, render: Callable) -> Callable:
    """Register ``run(setup, store, progress, **own_options) -> document`` as ``memlog experiment
    NAME``: its own options come first, then ``SETUP_OPTIONS``, which are parsed into an
    ``ExperimentSetup``; the run shows progress bars, and its document is printed with ``render``."""

    def register(run: Callable) -> Callable:
        hints = typing.get_type_hints(run)  # real types, not this module's postponed strings: typer makes a bool a flag only from the type
        own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in inspect.signature(run).parameters.values() if p.name not in ("setup", "store", "progress")]
        shared = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=t) for n, t, opt in SETUP_OPTIONS]
        setup_names = [n for n, _, _ in SETUP_OPTIONS if n not in ("store", "fmt")]

        def command(**kwargs):
            setup_args = {n: kwargs.pop(n) for n in setup_names}
            if "refresh_strategy" in kwargs:
                setup_args["refresh_strategy"] = kwargs["refresh_strategy"]
            store, fmt = kwargs.pop("store"), kwargs.pop("fmt")
            setup = _setup(**setup_args)
            with progress_bars(True) as progress:
                data = run(setup, store_path(store), progress, **kwargs)
            emit(data, fmt, render)

        command.__name__, command.__doc__ = run.__name__, run.__doc__
        command.__signature__ = inspect.Signature([p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + shared)
        experiment_app.command(name)(command)
        return run

    return register


def _run_label(d: dict) -> str:
    seed = d.get("setup", {}).get("seed")
    return f"{d['model']}, layers {d['layers']}" + (f", seed {seed}" if seed is not None else "")


def _store_line(d: dict) -> str:
    wall = f", {d['wall_seconds']:.0f} s" if d.get("wall_seconds") is not None else " (rebuilt from the log)"
    return f"store {d['store']} (head seq {d['seq']}){wall}"


# -- wake-capacity -------------------------------------------------------------------------------


def render_wake(c, d: dict) -> None:
    c.print(table(f"wake capacity ({_run_label(d)})", *wake_table(d, missing="")))
    for note in wake_notes(d):
        c.print(note)
    c.print(_store_line(d))


@protocol_command("wake-capacity", render_wake)
def wake_capacity(
    setup,
    store: Path,
    progress,
    facts: int = typer.Option(30, "--facts", help="Facts to inject, one at a time."),
    ppl_every: int = typer.Option(1, "--ppl-every", help="Measure perplexity every K facts (and after the last; 0: only after the last)."),
    min_recall: float = typer.Option(0.9, "--min-recall", help="Recall that still counts as within wake capacity."),
    jump: int = typer.Option(2, "--jump", help="A rise of the degraded count by at least this much in one inject is the tipping point."),
):
    """Table 3: inject pool facts one at a time, auditing after each; detect wake capacity and the tipping point."""
    from memlog.experiments.runner import wake_capacity_experiment  # loads torch: only when an experiment runs

    return wake_capacity_experiment(store, setup, n_facts=facts, ppl_every=ppl_every, min_recall=min_recall, jump=jump, progress=progress)


# -- phase-ab ------------------------------------------------------------------------------------

def render_phase_ab(c, d: dict) -> None:
    title = f"{d['facts']}+{d['second_wave']} facts, {d['refresh_mode']} mode, cap {d['cap']} ({_run_label(d)})"
    for phase in d["phases"]:
        c.print(table(f"Phase {phase['name']}: {title}", *phase_table(phase)))
        c.print(phase_line(phase))
    c.print(table("perplexity (Table 7)", *perplexity_table(d["perplexity"], missing="")))
    c.print(_store_line(d))


@protocol_command("phase-ab", render_phase_ab)
def phase_ab(
    setup,
    store: Path,
    progress,
    facts: int = typer.Option(14, "--facts", help="Phase A: facts injected before the first sleep."),
    second_wave: int = typer.Option(5, "--second-wave", help="Phase B: facts injected into the maintained model."),
    ppl_every: int = typer.Option(0, "--ppl-every", help="Measure perplexity every K injected facts (0: after each wave only)."),
    refresh_strategy: str = RefreshStrategyOpt,
):
    """Tables 4, 6, 7: Phase A (inject, sleep until converged), Phase B (second wave, sleep again)."""
    from memlog.experiments.runner import phase_ab_experiment  # loads torch: only when an experiment runs

    return phase_ab_experiment(store, setup, n_facts=facts, second_wave=second_wave, ppl_every=ppl_every, progress=progress)


# -- capacity ------------------------------------------------------------------------------------

def render_capacity(c, d: dict) -> None:
    wake = d.get("engine", {}).get("wake", "unconstrained")
    slept = "" if d.get("sleep", True) else ", no sleep"
    c.print(table(f"capacity: {d['facts']} facts in waves of {d['wave']}, {wake} wake{slept} ({_run_label(d)})", *capacity_table(d, missing="")))
    c.print(f"base PPL {d['base_ppl']:.3f}")
    c.print(_store_line(d))


@protocol_command("capacity", render_capacity)
def capacity(
    setup,
    store: Path,
    progress,
    facts: int = typer.Option(100, "--facts", help="Facts to inject in all (mixed relations from the seeded pool)."),
    wave: int = typer.Option(10, "--wave", help="Facts per wave; no audit within a wave, a sleep until converged after each."),
    names: str = typer.Option("unique", "--names", help="unique (no first or last name repeats within 50 subjects) or shared (names repeat as chance makes them)."),
    plot: Path = typer.Option(None, "--plot", help="Also write a PNG of recall and PPL against facts stored here."),
    batch_size: int = typer.Option(1, "--batch-size", help="Facts per MEMIT solve within a wave (1: one at a time)."),
    refresh_strategy: str = RefreshStrategyOpt,
    sleep: bool = typer.Option(True, "--sleep/--no-sleep", help="Sleep until converged after each wave (default), or only audit and read perplexity and the room (the wake-only curve)."),
    joint: bool = typer.Option(False, "--joint", help="Before each sleep, re-solve every applied edit jointly from the base weights (memlog consolidate --joint)."),
    batch_refresh: bool = typer.Option(False, "--batch-refresh", help="Sleep refreshes a cycle's degraded facts in one constrained solve (in-place)."),
):
    """Capacity: waves of mixed-relation facts, sleep after each; recall, PPL, null-space room and delta norm per wave."""
    from memlog.experiments.runner import capacity_experiment, capacity_plot  # loads torch: only when an experiment runs

    if joint and not sleep:
        raise UserError("--joint re-solves before each sleep; it does not go with --no-sleep")
    if batch_refresh and not sleep:
        raise UserError("--batch-refresh sets how sleep refreshes; it does not go with --no-sleep")
    data = capacity_experiment(store, replace(setup, batch_refresh=batch_refresh), n_facts=facts, wave=wave, names=names, progress=progress, batch_size=batch_size, sleep=sleep, joint=joint)
    if plot is not None:
        capacity_plot({data["engine"].get("wake", "unconstrained"): data}, plot)
    return data


# -- summary -------------------------------------------------------------------------------------


@experiment_app.command("summary")
def summary(store: Path = StoreOpt, fmt: Format = FormatOpt):
    """Rebuild an experiment's tables from its store's log alone (no model is loaded)."""
    from memlog.experiments.fromlog import document_from_store
    from memlog.store.store import is_store

    path = store_path(store)
    if not is_store(path):
        raise UserError(f"{path} holds no memlog store; pass the --store an experiment wrote")
    data = document_from_store(path)
    emit(data, fmt, render_wake if data["experiment"] == "wake-capacity" else render_phase_ab)


def register(app: typer.Typer) -> None:
    app.add_typer(experiment_app, name="experiment")
