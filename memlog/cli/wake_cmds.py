"""Wake commands: ``inject``, ``audit``, ``recall``."""

from __future__ import annotations

from pathlib import Path

import typer

from memlog.cli.common import DeviceOpt, FormatOpt, StoreOpt, WakeOpt, open_ro, open_rw
from memlog.cli.output import Format, emit, progress_bars, styled, table
from memlog.core.factfile import read_facts
from memlog.core.facts import Fact
from memlog.engine.config import DEFAULT_BATCH_SIZE, EngineConfig
from memlog.errors import UserError


def inject(
    subject: str = typer.Argument(None),
    relation: str = typer.Argument(None),
    obj: str = typer.Argument(None, metavar="OBJECT"),
    file: Path = typer.Option(None, "--file", help="File of facts: JSONL (subject, relation or prompt, object), CounterFact or zsRE JSON."),
    file_format: str = typer.Option("auto", "--file-format", help="Format of --file: auto, jsonl, counterfact or zsre (--format is the output format)."),
    prompt: str = typer.Option(None, "--prompt", help="Prompt template with {} for the subject, e.g. 'The mother tongue of {} is'."),
    subject_opt: str = typer.Option(None, "--subject", help="The subject (with --prompt)."),
    object_opt: str = typer.Option(None, "--object", help="The object (with --prompt)."),
    no_audit: bool = typer.Option(False, "--no-audit", help="Skip the batched audit of all active facts after each inject (or batch)."),
    batch_size: int = typer.Option(DEFAULT_BATCH_SIZE, "--batch-size", min=1, help="New facts per MEMIT solve, audited once per batch; 1: one fact at a time, each audited."),
    auto_sleep: float = typer.Option(None, "--auto-sleep", help="Sleep when pressure (degraded/active) crosses this threshold."),
    wake: str = WakeOpt,
    ppl_budget: float = typer.Option(None, "--ppl-budget", help="Refuse an inject (or batch) that would leave PPL more than this fraction above the base model's (e.g. 0.05); default: the store's (none)."),
    store: Path = StoreOpt,
    device: str = DeviceOpt,
    fmt: Format = FormatOpt,
):
    """Wake injection with MEMIT, constrained or unconstrained (--wake): a file's new facts in batches of --batch-size."""
    given = [name for name, value in (("SUBJECT RELATION OBJECT", subject), ("--file", file), ("--prompt", prompt)) if value is not None]
    if len(given) > 1:
        raise UserError(f"give one of SUBJECT RELATION OBJECT, --prompt with --subject and --object, or --file; got {' and '.join(given)}")
    if file is not None:
        facts = read_facts(file, file_format)
    elif prompt is not None:
        if subject_opt is None or object_opt is None:
            raise UserError("--prompt needs --subject and --object, e.g. --prompt 'The mother tongue of {} is' --subject 'Danielle Darrieux' --object French")
        if "{}" not in prompt:
            raise UserError(f"the prompt template {prompt!r} has no '{{}}' slot; mark where the subject stands with {{}}")
        facts = [Fact(subject_opt, prompt, object_opt)]
    elif subject is None or relation is None or obj is None:
        raise UserError("inject needs SUBJECT RELATION OBJECT (e.g. memlog inject 'Aria Nakamura' 'lives in' Thessaloniki), --prompt/--subject/--object or --file FACTS.jsonl")
    else:
        facts = [Fact(subject, relation, obj)]
    if auto_sleep is not None and not 0 <= auto_sleep < 1:
        raise UserError(f"--auto-sleep is a pressure threshold in [0, 1), got {auto_sleep}")
    EngineConfig().with_overrides(ppl_budget=ppl_budget)  # a bad budget fails before the model loads
    with open_rw(store, device, wake=wake, ppl_budget=ppl_budget) as mem:
        with progress_bars(True) as progress:
            report = mem.inject(facts, audit=not no_audit, auto_sleep=auto_sleep, progress=progress, batch_size=batch_size)
    data = {
        "facts": [vars(o) for o in report.facts],
        "seq": report.seq,
        "recall": report.recall,
        "degraded": report.degraded,
        "sleeps": [s.to_dict() for s in report.sleeps],
    }

    def render(c, d):
        rows = [[o["fact_id"], o["edit_id"], o["status"], o["recalled"], o["v_loss"], f"{o['seconds']:.1f}s"] for o in d["facts"]]
        c.print(table("inject", ["fact", "edit", "status", "recalled", "v* loss", "time"], rows))
        if d["recall"] is not None:
            c.print(f"recall over active facts: {d['recall']:.3f} ({d['degraded']} degraded); head seq {d['seq']}")

    emit(data, fmt, render)


def audit(store: Path = StoreOpt, device: str = DeviceOpt, fmt: Format = FormatOpt):
    """Audit every active fact and record the result."""
    with open_rw(store, device) as mem:
        event = mem.audit()
        seq = mem.head_seq
        facts = {s.fact.fact_id: s.fact for s in mem.ledger.facts.values()}
    rows = [
        {"fact_id": r.fact_id, "edit_id": r.edit_id, "prompt": facts[r.fact_id].prompt, "object": facts[r.fact_id].object, "recalled": r.recalled, "completion": r.completion}
        for r in event.results
    ]
    data = {"recall": event.recall, "degraded": event.degraded, "facts": rows, "seq": seq}

    def render(c, d):
        c.print(table("audit", ["fact", "prompt", "object", "completion", "recalled"], [[r["fact_id"], r["prompt"], r["object"], r["completion"], r["recalled"]] for r in d["facts"]]))
        c.print(f"recall {d['recall']:.3f}, {d['degraded']} degraded (seq {d['seq']})")

    emit(data, fmt, render)


def recall(
    prompt: str = typer.Argument(..., help="Text to complete, e.g. 'Aria Nakamura lives in'."),
    at: str = typer.Option(None, "--at", help="cycle=N, seq=N or time=ISO: complete on the weights as they were then."),
    max_new_tokens: int = typer.Option(8, "--max-new-tokens", min=1, max=256),
    store: Path = StoreOpt,
    device: str = DeviceOpt,
    fmt: Format = FormatOpt,
):
    """Greedy raw completion on the live weights, or on the weights as they were at a point."""
    with open_ro(store, device) as mem:
        data = mem.recall(prompt, at=at, max_new_tokens=max_new_tokens)
    emit(data, fmt, lambda c, d: c.print(styled((d["prompt"], "dim"), (d["completion"], "bold"), (f"  (seq {d['seq']}, cycle {d['cycle']})", "dim"))))


def revert(
    edit_id: str = typer.Argument(..., help="The edit to take out of the weights, e.g. e00003."),
    store: Path = StoreOpt,
    device: str = DeviceOpt,
    fmt: Format = FormatOpt,
):
    """Revert an edit: its current version leaves the weights (the fact stays, held: sleep leaves it alone until it is injected again)."""
    with open_rw(store, device) as mem:
        seq = mem.revert(edit_id)
    emit({"edit_id": edit_id, "seq": seq}, fmt, lambda c, d: c.print(f"reverted {d['edit_id']} (seq {d['seq']})"))


def release(
    edit_id: str = typer.Argument(..., help="The edit of the active fact to release, e.g. e00003."),
    store: Path = StoreOpt,
    device: str = DeviceOpt,
    fmt: Format = FormatOpt,
):
    """Release a fact: it is no longer audited, held by constrained solves or refreshed, and its edit stays in the weights (nothing moves; later edits may overwrite it; injecting it again takes it back)."""
    with open_rw(store, device) as mem:
        seq = mem.release(edit_id)
    emit({"edit_id": edit_id, "seq": seq}, fmt, lambda c, d: c.print(f"released {d['edit_id']} (seq {d['seq']})"))


def register(app: typer.Typer) -> None:
    app.command(name="inject")(inject)
    app.command(name="audit")(audit)
    app.command(name="recall")(recall)
    app.command(name="revert")(revert)
    app.command(name="release")(release)
