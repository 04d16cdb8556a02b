"""The ``consolidate`` command: fold the applied edits' factors into one pair per layer, or revert that."""

from __future__ import annotations

from pathlib import Path

import typer

from memlog.cli.common import DeviceOpt, FormatOpt, StoreOpt, open_rw
from memlog.cli.output import Format, emit, progress_bars
from memlog.errors import UserError


def consolidate(
    rtol: float = typer.Option(None, "--rtol", help="Drop singular values below RTOL times the largest, per layer (default 1e-7)."),
    joint: bool = typer.Option(False, "--joint", help="Re-solve every applied edit jointly from the base weights with its stored v* target, instead of folding their factors."),
    lam: float = typer.Option(None, "--lam", help="With --joint: MEMIT's λ for the re-solve (default: the store's)."),
    revert: bool = typer.Option(False, "--revert", help="Revert a consolidation instead (the one --id names; default: the latest active one)."),
    consolidation_id: str = typer.Option(None, "--id", help="With --revert: the consolidation to revert, e.g. c00001."),
    store: Path = StoreOpt,
    device: str = DeviceOpt,
    fmt: Format = FormatOpt,
):
    """Consolidate the applied edits: one factor pair per edit layer stands for them (revertible), their truncated SVD or, with --joint, their joint re-solve."""
    if consolidation_id is not None and not revert:
        raise UserError("--id names a consolidation to revert; give it with --revert")
    if lam is not None and not joint:
        raise UserError("--lam sets the joint re-solve's λ; give it with --joint")
    if revert and joint:
        raise UserError("--revert and --joint do not go together: --revert undoes either kind")
    with open_rw(store, device) as mem:
        if revert:
            data = mem.revert_consolidation(consolidation_id)
        else:
            with progress_bars(True) as progress:
                data = mem.consolidate(rtol=rtol, progress=progress, joint=joint, lam=lam).to_dict()

    def render(c, d):
        if revert:
            c.print(f"reverted consolidation {d['consolidation_id']} ({d['members']} edits, seq {d['seq']})")
            return
        how = f"re-solved jointly at λ {d['lam']:g}" if d["method"] == "joint" else "consolidated"
        c.print(
            f"{how} {d['members']} edits as {d['consolidation_id']} (seq {d['seq']}): rank {d['rank']} "
            f"from {d['columns']} columns per layer; max output change {d['max_output_change']:.2e}"
        )

    emit(data, fmt, render)


def register(app: typer.Typer) -> None:
    app.command(name="consolidate")(consolidate)
