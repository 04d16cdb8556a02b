"""The ``replay`` command: rebuild the weights at a point and show each fact's state there."""

from __future__ import annotations

from pathlib import Path

import typer

from memlog.cli.common import DeviceOpt, FormatOpt, StoreOpt, open_ro
from memlog.cli.output import Format, emit, table


def replay(
    until: str = typer.Option(..., "--until", help="cycle=N, seq=N, time=ISO or head."),
    verify: bool = typer.Option(False, "--verify", help="Recompute recall on the rebuilt weights and compare with the audit recorded then."),
    diff: str = typer.Option(None, "--diff", help="Also show what changed from this point (e.g. cycle=M) to --until: degraded, refreshed, pruned…"),
    store: Path = StoreOpt,
    device: str = DeviceOpt,
    fmt: Format = FormatOpt,
):
    """Rebuild the weights at a point of the log and show each fact's state there."""
    mem = open_ro(store, device)
    try:
        data = mem.replay(until, verify=verify)
        if diff is not None:
            from memlog.replay.diff import diff_report

            data["diff"] = diff_report(mem.logged, diff, until)
    finally:
        mem.close()

    def render(c, d):
        cols = ["fact", "subject", "relation", "object", "edit", "active", "recalled"] + (["recalled now"] if verify else [])
        rows = [
            [f["fact_id"], f["subject"], f["relation"], f["object"], f"{f['edit_id']} v{f['version']}" if f["version"] else f["edit_id"], f["active"], f["recalled"]]
            + ([f.get("recalled_now")] if verify else [])
            for f in d["facts"]
        ]
        c.print(table(f"state at {d['point']} (seq {d['seq']}, cycle {d['cycle']})", cols, rows))
        c.print(f"weights rebuilt: sha256 {d['weights_sha256'][:16]}… " + ("matches the record" if d["weights_match"] else "no record to compare" if d["weights_match"] is None else "[red]DIFFERS from the record[/]"))
        if d.get("diff") is not None:
            from memlog.cli.analytics_cmds import render_diff

            render_diff(c, d["diff"])
        if verify:
            c.print("[green]verified[/]: recall recomputed matches the audit recorded then" if d["verified"] else f"[red]not verified[/]: mismatches {d.get('mismatches')}")

    emit(data, fmt, render)
    if verify and data["verified"] is False:
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.command(name="replay")(replay)
