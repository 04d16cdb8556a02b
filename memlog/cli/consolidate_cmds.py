"""The ``consolidate`` command: fold the applied edits' factors into one pair per layer, or revert that."""

from __future__ import annotations

from pathlib import Path

import typer

from memlog.cli.common import DeviceOpt, FormatOpt, StoreOpt, open_rw
from memlog.cli.output import Format, emit, progress_bars
from memlog.errors import UserError


def consolidate(
    rtol: float = typer.Option(None, "--rtol", help="Drop singular values below RTOL times the largest, per layer (default 1e-7)."),
    revert: bool = typer.Option(False, "--revert", help="Revert a consolidation instead (the one --id names; default: the latest active one)."),
    consolidation_id: str = typer.Option(None, "--id", help="With --revert: the consolidation to revert, e.g. c00001."),
    store: Path = StoreOpt,
    device: str = DeviceOpt,
    fmt: Format = FormatOpt,
):
    """Consolidate the applied edits: one truncated-SVD factor pair per edit layer stands for them (revertible)."""
    if consolidation_id is not None and not revert:
        raise UserError("--id names a consolidation to revert; give it with --revert")
    with open_rw(store, device) as mem:
        if revert:
            data = mem.revert_consolidation(consolidation_id)
        else:
            with progress_bars(True) as progress:
                data = mem.consolidate(rtol=rtol, progress=progress).to_dict()

    def render(c, d):
        if revert:
            c.print(f"reverted consolidation {d['consolidation_id']} ({d['members']} edits, seq {d['seq']})")
            return
        c.print(
            f"consolidated {d['members']} edits as {d['consolidation_id']} (seq {d['seq']}): rank {d['rank']} "
            f"from {d['columns']} columns per layer; max output change {d['max_output_change']:.2e}"
        )

    emit(data, fmt, render)


def register(app: typer.Typer) -> None:
    app.command(name="consolidate")(consolidate)
