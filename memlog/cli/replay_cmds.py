"""``replay`` (the weights and every fact at a point), ``why`` (what changed one fact's recall)
and ``export`` (the model with its memory at a point, as a plain checkpoint)."""

from __future__ import annotations

from pathlib import Path

import typer

from memlog.cli.analytics_cmds import render_diff
from memlog.cli.common import DeviceOpt, FormatOpt, StoreOpt, open_ro, store_path
from memlog.cli.output import Format, emit, progress_bars, styled, table
from memlog.errors import UserError
from memlog.replay.diff import diff_report
from memlog.replay.export import MANIFEST, export_model
from memlog.store.outdir import check_out
from memlog.replay.why import why_report


def replay(
    until: str = typer.Option(..., "--until", help="cycle=N, seq=N, time=ISO or head."),
    verify: bool = typer.Option(False, "--verify", help="Re-run the latest audit at or before --until on the weights of that audit's own seq, and compare with what it recorded (a check of the log; edits after that audit are not in it)."),
    diff: str = typer.Option(None, "--diff", help="Also show what changed from this point (e.g. cycle=M) to --until: degraded, refreshed, pruned…"),
    store: Path = StoreOpt,
    device: str = DeviceOpt,
    fmt: Format = FormatOpt,
):
    """Rebuild the weights at a point of the log and show each fact's state there."""
    with open_ro(store, device) as mem:
        data = mem.replay(until, verify=verify)
        if diff is not None:
            data["diff"] = diff_report(mem.logged, diff, until)

    def render(c, d):
        cols = ["fact", "subject", "relation", "object", "edit", "active", "recalled"] + ([f"recomputed (seq {d.get('verify_audit_seq')})"] if verify else [])
        rows = [
            [f["fact_id"], f["subject"], f["relation"], f["object"], f"{f['edit_id']} v{f['version']}" if f["version"] else f["edit_id"], f["active"], f["recalled"]]
            + ([f.get("recalled_now")] if verify else [])
            for f in d["facts"]
        ]
        c.print(table(f"state at {d['point']} (seq {d['seq']}, cycle {d['cycle']})", cols, rows))
        c.print(styled(f"weights rebuilt: sha256 {d['weights_sha256'][:16]}… ", ("matches the record", "") if d["weights_match"] else ("no record to compare", "") if d["weights_match"] is None else ("DIFFERS from the record", "red")))
        if d.get("diff") is not None:
            render_diff(c, d["diff"])
        if verify:
            c.print(styled(("verified", "green"), ": recall recomputed matches the audit recorded then") if d["verified"] else styled(("not verified", "red"), f": mismatches {d.get('mismatches')}"))
            if d.get("verify_note"):
                c.print(f"note: {d['verify_note']}")

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
    c.print(styled((f"{d['prompt']} {d['object']}", "bold"), f" ({d['fact_id']}, {'active' if d['active'] else 'pruned'})"))
    c.print(table("history", ["seq", "event", "cycle", "recalled", "completion / edit"], _history_rows(d["history"]), compact=True))
    if d["window"] is None:
        c.print(f"   {d.get('note', 'nothing to explain')}")
        return
    w = d["window"]
    yes_no = lambda r: "recalled" if r else "not recalled"  # noqa: E731
    rows = [
        [s["seq"], styled(s["what"], (" (its own edit)" if s["own"] else "", "dim")), s["recalled"], repr(s["completion"]), "←" if s["changed"] else ""]
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
    with open_ro(store, device) as mem:
        with progress_bars(True) as progress:
            data = why_report(mem, fact, from_point, to_point, leave_one_out=suspects, change=change, progress=progress)
    emit(data, fmt, render_why)


EXPORT_FORMATS = ("hf", "peft")


def _export_formats(values: list[str]) -> tuple[str, Format]:
    """``--format`` of export names the export (hf or peft) and/or the output (text or json)."""
    allowed = set(EXPORT_FORMATS) | {f.value for f in Format}
    bad = [v for v in values if v not in allowed]
    if bad:
        raise UserError(f"unknown --format {bad[0]!r}; choose hf or peft (what to export) and/or text or json (how to print)")
    kinds = {v for v in values if v in EXPORT_FORMATS}
    outputs = {v for v in values if v not in EXPORT_FORMATS}
    if len(kinds) > 1 or len(outputs) > 1:
        raise UserError("--format takes at most one of hf/peft and one of text/json, e.g. --format peft --format json")
    return (kinds.pop() if kinds else "hf"), Format(outputs.pop() if outputs else "text")


def export(
    out: Path = typer.Option(..., "--out", help="A new (or empty) directory outside the store."),
    at: str = typer.Option(None, "--at", help="cycle=N, seq=N, time=ISO or head (default: head)."),
    formats: list[str] = typer.Option(
        [], "--format", help="hf (a merged checkpoint, default) or peft (a LoRA adapter); text or json output. Repeatable."
    ),
    max_rank: int = typer.Option(None, "--max-rank", help="peft only: truncate each layer's adapter to this rank by SVD and report the recall it costs."),
    store: Path = StoreOpt,
    device: str = DeviceOpt,
):
    """Save the memory as it was at a point: a plain Hugging Face checkpoint, or a PEFT LoRA adapter."""
    kind, fmt = _export_formats(formats)
    check_out(out, store_path(store))  # before loading the model
    if max_rank is not None and kind != "peft":
        raise UserError("--max-rank applies to --format peft only")
    with open_ro(store, device) as mem:
        if kind == "peft":
            from memlog.adapters.peft_export import export_peft

            data = export_peft(mem, out, at, max_rank=max_rank)
        else:
            data = export_model(mem, out, at)

    def render(c, d):
        recalled = sum(1 for f in d["facts"] if f["recalled"])
        c.print(
            f"exported {d['point']} (seq {d['seq']}, cycle {d['cycle']}) to {d['out']}: {len(d['facts'])} active facts, "
            f"{recalled} recalled at their last audit; edit-layer sha256 {d['weights_sha256'][:16]}…"
        )
        if d["format"] == "hf":
            c.print(f"load it with AutoModelForCausalLM.from_pretrained({d['out']!r}); provenance in {MANIFEST}")
            return
        a = d["adapter"]
        ranks = ", ".join(f"{layer}:{r}" for layer, r in a["ranks"].items())
        c.print(f"LoRA on {len(a['ranks'])} modules, rank per layer {ranks}")
        if a["max_rank"] is not None:
            c.print(
                f"truncated to rank {a['max_rank']}: relative error of ΔW up to {a['max_relative_error']:.3g}; recall "
                f"{a['recall_full']:.3f} at full rank → {a['recall_truncated']:.3f}, {len(a['facts_lost'])} facts lost"
            )
        c.print(f"load it with PeftModel.from_pretrained(base_model, {d['out']!r}); provenance in {MANIFEST}")

    emit(data, fmt, render)


def register(app: typer.Typer) -> None:
    app.command(name="replay")(replay)
    app.command(name="why")(why)
    app.command(name="export")(export)
