"""``replay`` (the weights and every fact at a point), ``why`` (what changed one fact's recall)
and ``export`` (the model with its memory at a point, as a plain checkpoint)."""

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




def _history_rows(history: list[dict]) -> list[list]:
    """History rows, with runs of audits that agree folded into one row."""
    rows: list[list] = []
    run: list[dict] = []

    def flush() -> None:
        if not run:
            return
        first, last = run[0], run[-1]
        seqs = str(first["seq"]) if len(run) == 1 else f"{first['seq']}–{last['seq']}"
        label = "audit" if len(run) == 1 else f"{len(run)} audits"
        rows.append([seqs, label, last["cycle"], last["recalled"], repr(last["completion"])])
        run.clear()

    for row in history:
        if row["kind"] == "audit":
            if run and run[-1]["recalled"] != row["recalled"]:
                flush()
            run.append(row)
            continue
        flush()
        rows.append([row["seq"], row["kind"], row["cycle"], None, row["edit"] + (f" ({row['reason']})" if row["reason"] else "")])
    flush()
    return rows


def render_why(c, d: dict) -> None:
    c.print(f"[bold]{d['prompt']} {d['object']}[/] ({d['fact_id']}, {'active' if d['active'] else 'pruned'})")
    c.print(table("history", ["seq", "event", "cycle", "recalled", "completion / edit"], _history_rows(d["history"]), compact=True))
    if d["window"] is None:
        c.print(f"   {d.get('note', 'nothing to explain')}")
        return
    w = d["window"]
    yes_no = lambda r: "recalled" if r else "not recalled"  # noqa: E731
    rows = [
        [s["seq"], s["what"] + (" [dim](its own edit)[/]" if s["own"] else ""), s["recalled"], repr(s["completion"]), "←" if s["changed"] else ""]
        for s in d["steps"]
    ]
    title = f"replayed seq {w['from_seq']} → {w['to_seq']} ({yes_no(w['recalled_from'])} → {yes_no(w['recalled_to'])})"
    c.print(table(title, ["seq", "event", "recalled", "completion", ""], rows, compact=True))
    changed = [s for s in d["steps"] if s["changed"]]
    if changed:
        first = changed[0]
        c.print(f"   changed at seq {first['seq']}: {first['what']}" + (f" (and {len(changed) - 1} more flips)" if len(changed) > 1 else ""))
    else:
        c.print("   no single event in the window changed it: the result at the start already matches the end")
    if d["suspects"] is not None:
        c.print(
            f"   suspects at seq {w['to_seq']}: {len(d['suspects'])} of the {d['suspects_tested']} other applied edits, "
            f"each removed alone, make it {yes_no(not w['recalled_to'])} again"
        )
        for s in d["suspects"]:
            c.print(f"   without {s['edit_id']} v{s['version']} ({s['fact']}) it is {yes_no(s['recalled_without'])}: {s['completion_without']!r}")


def why(
    fact: str = typer.Argument(..., help="The fact: its fact_id, its subject, or 'subject relation'."),
    from_point: str = typer.Option(None, "--from", help="Start of the window (cycle=N, seq=N, time=ISO); default: the audit before the fact's last change."),
    to_point: str = typer.Option(None, "--to", help="End of the window; default: the audit that saw the fact's last change."),
    change: str = typer.Option("last", "--change", help="Which change to explain by default: last, degraded (recalled → not) or recovered."),
    suspects: bool = typer.Option(False, "--suspects", help="Also remove each other edit at the window's end in turn and list those whose removal flips the fact."),
    store: Path = StoreOpt,
    device: str = DeviceOpt,
    fmt: Format = FormatOpt,
):
    """Why did a fact's recall change? Its history, then the weights replayed after every event in between."""
    from memlog.cli.output import progress_bars
    from memlog.replay.why import why_report

    mem = open_ro(store, device)
    try:
        with progress_bars(True) as progress:
            data = why_report(mem, fact, from_point, to_point, leave_one_out=suspects, change=change, progress=progress)
    finally:
        mem.close()
    emit(data, fmt, render_why)


def export(
    out: Path = typer.Option(..., "--out", help="A new (or empty) directory for the checkpoint."),
    at: str = typer.Option(None, "--at", help="cycle=N, seq=N, time=ISO or head (default: head)."),
    store: Path = StoreOpt,
    device: str = DeviceOpt,
    fmt: Format = FormatOpt,
):
    """Save the model with its memory, as it was at a point, as a plain Hugging Face checkpoint."""
    from memlog.replay.export import MANIFEST, export_model

    mem = open_ro(store, device)
    try:
        data = export_model(mem, out, at)
    finally:
        mem.close()

    def render(c, d):
        recalled = sum(1 for f in d["facts"] if f["recalled"])
        c.print(
            f"exported {d['point']} (seq {d['seq']}, cycle {d['cycle']}) to {d['out']}: {len(d['facts'])} active facts, "
            f"{recalled} recalled at their last audit; edit-layer sha256 {d['weights_sha256'][:16]}…"
        )
        c.print(f"load it with AutoModelForCausalLM.from_pretrained({d['out']!r}); provenance in {MANIFEST}")

    emit(data, fmt, render)


def register(app: typer.Typer) -> None:
    app.command(name="replay")(replay)
    app.command(name="why")(why)
    app.command(name="export")(export)
