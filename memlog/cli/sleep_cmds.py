"""The ``sleep`` command: audit, revert, constrained refresh, prune, validate."""

from __future__ import annotations

from pathlib import Path

import typer

from memlog.cli.common import DeviceOpt, FormatOpt, StoreOpt, open_rw
from memlog.cli.output import Format, emit, progress_bars, table
from memlog.engine.config import EngineConfig
from memlog.errors import UserError
from memlog.projections.readmodels import cycle_cells, cycle_headers, cycle_values


def render_cycles(c, cycles: list[dict], title: str = "sleep cycles") -> None:
    """The cycles of a sleep report (``CycleReport`` dicts) in the one cycle table's columns."""
    c.print(table(title, cycle_headers(), [cycle_cells(cycle_values(d)) for d in cycles]))


def sleep(
    cycles: int = typer.Option(None, "--cycles", help="Run exactly N cycles."),
    until_converged: bool = typer.Option(False, "--until-converged", help="Stop after two consecutive cycles with zero degraded facts."),
    max_cycles: int = typer.Option(None, "--max-cycles", help="Most cycles with --until-converged (default 10)."),
    refresh_mode: str = typer.Option(None, "--refresh-mode", help="in-place (default) or copy (reproduces the paper's death spiral)."),
    refresh_strategy: str = typer.Option(
        None, "--refresh-strategy", help="reinject (revert, then solve again: the paper) or correct (keep the edit, add a constrained correction; in-place only); default: the store's (correct with constrained wake)."
    ),
    cap: int = typer.Option(None, "--cap", help="Most active facts (in-place) or ledger entries (copy) before pruning."),
    degraded_by: str = typer.Option(
        None, "--degraded-by", help="Audit measure that makes a fact degraded: exact (default: the prompt itself), paraphrase, chat or any."
    ),
    batch_refresh: bool = typer.Option(None, "--batch-refresh/--no-batch-refresh", help="Refresh a cycle's degraded facts in one constrained solve (in-place); default: the store's setting (off)."),
    consolidate_above: int = typer.Option(None, "--consolidate-above", min=1, help="After the cycles, consolidate the applied edits when the projection stacks more than N factor columns at a layer."),
    joint: bool = typer.Option(None, "--joint/--no-joint", help="Start with a joint re-solve of every applied edit from the base weights (memlog consolidate --joint); default: the store's setting (off)."),
    revert_check: bool = typer.Option(
        None, "--revert-check/--no-revert-check", help="Also refresh healthy facts that the cycle's reverts alone break (in-place reinject); default: the store's setting (off)."
    ),
    protect: str = typer.Option(None, "--protect", help="The audit-prompt positions this run's constrained refreshes hold per protected fact (subject, object, first, any of them +paraphrases, or all); default: the store's."),
    protect_energy: float = typer.Option(None, "--protect-energy", help="The share of the protected keys' energy this run's constrained refreshes hold, in (0, 1]; default: the store's (1: exact)."),
    ppl_budget: float = typer.Option(None, "--ppl-budget", help="Roll back a refresh that leaves PPL more than this fraction above the base model's (e.g. 0.01); default: the store's (none)."),
    lam: float = typer.Option(None, "--lam", help="MEMIT's λ for this run's refreshes (see memlog init --lam; each refresh records it); default: the store's."),
    store: Path = StoreOpt,
    device: str = DeviceOpt,
    fmt: Format = FormatOpt,
):
    """Sleep cycles (Algorithm 1 of the paper)."""
    if cycles is not None and until_converged:
        raise UserError("give --cycles N or --until-converged, not both")
    EngineConfig().with_overrides(degraded_by=degraded_by, protect_positions=protect, protect_energy=protect_energy, ppl_budget=ppl_budget)  # bad values fail before the model loads
    if lam is not None:
        from memlog.core.memit_hparams import MemitConfig

        MemitConfig(lam=lam)  # a bad λ fails before the model loads
    with open_rw(
        store, device, memit_overrides={"lam": lam}, refresh_mode=refresh_mode, refresh_strategy=refresh_strategy, cap=cap, max_cycles=max_cycles,
        degraded_by=degraded_by, batch_refresh=batch_refresh, consolidate_above=consolidate_above, joint_before_sleep=joint, revert_check=revert_check,
        protect_positions=protect, protect_energy=protect_energy, ppl_budget=ppl_budget,
    ) as mem:
        with progress_bars(True) as progress:
            report = mem.sleep(cycles=cycles, until_converged=until_converged, progress=progress)
    data = report.to_dict()

    def render(c, d):
        if d.get("resolved"):
            c.print(f"re-solved the applied edits jointly as {d['resolved']}")
        render_cycles(c, d["cycles"])
        c.print("converged" if d["converged"] else "not converged", f"(head seq {d['seq']})")
        if d.get("consolidated"):
            c.print(f"consolidated the applied edits as {d['consolidated']}")

    emit(data, fmt, render)


def register(app: typer.Typer) -> None:
    app.command(name="sleep")(sleep)
