"""Wake commands: ``inject``, ``audit``, ``recall``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from memlog.cli.common import DeviceOpt, FormatOpt, StoreOpt, open_ro, open_rw
from memlog.cli.output import Format, emit, progress_bars, styled, table
from memlog.errors import UserError


def _utf8_lines(path: Path) -> list[str]:
    """The file's lines, split at newlines only (as editors number them); a line that is not
    UTF-8 is a UserError naming ``file:line``."""
    raw = path.read_bytes()
    try:
        return [line.removesuffix("\r") for line in raw.decode("utf-8").split("\n")]
    except UnicodeDecodeError as exc:
        lineno = raw.count(b"\n", 0, exc.start) + 1
        raise UserError(f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8") from None


def read_facts_file(path: Path):
    """Facts from a JSONL file (fields subject, relation, object), all validated before anything is written."""
    from memlog.core.facts import Fact

    if not path.is_file():
        raise UserError(f"no such facts file: {path}")
    facts = []
    for lineno, line in enumerate(_utf8_lines(path), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{lineno}: not valid JSON ({exc.msg}); each line must be an object with subject, relation, object") from None
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("subject", "relation", "object")):
            raise UserError(f"{path}:{lineno}: each line needs string fields subject, relation and object")
        try:
            facts.append(Fact(row["subject"], row["relation"], row["object"]))
        except UserError as exc:
            raise UserError(f"{path}:{lineno}: {exc}") from None
    if not facts:
        raise UserError(f"{path} holds no facts")
    return facts


def inject(
    subject: str = typer.Argument(None),
    relation: str = typer.Argument(None),
    obj: str = typer.Argument(None, metavar="OBJECT"),
    file: Path = typer.Option(None, "--file", help="JSONL file of facts (subject, relation, object)."),
    no_audit: bool = typer.Option(False, "--no-audit", help="Skip the batched audit of all active facts after each inject."),
    auto_sleep: float = typer.Option(None, "--auto-sleep", help="Sleep when pressure (degraded/active) crosses this threshold."),
    store: Path = StoreOpt,
    device: str = DeviceOpt,
    fmt: Format = FormatOpt,
):
    """Wake injection, unconstrained MEMIT, one fact at a time."""
    from memlog.core.facts import Fact

    if file is not None and subject is not None:
        raise UserError("give either SUBJECT RELATION OBJECT or --file, not both")
    if file is not None:
        facts = read_facts_file(file)
    elif subject is None or relation is None or obj is None:
        raise UserError("inject needs SUBJECT RELATION OBJECT (e.g. memlog inject 'Aria Nakamura' 'lives in' Thessaloniki) or --file FACTS.jsonl")
    else:
        facts = [Fact(subject, relation, obj)]
    if auto_sleep is not None and not 0 <= auto_sleep < 1:
        raise UserError(f"--auto-sleep is a pressure threshold in [0, 1), got {auto_sleep}")
    mem = open_rw(store, device)
    try:
        with progress_bars(True) as progress:
            report = mem.inject(facts, audit=not no_audit, auto_sleep=auto_sleep, progress=progress)
    finally:
        mem.close()
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
    mem = open_rw(store, device)
    try:
        event = mem.audit()
        seq = mem.head_seq
        facts = {s.fact.fact_id: s.fact for s in mem.ledger.facts.values()}
    finally:
        mem.close()
    rows = [
        {"fact_id": r.fact_id, "edit_id": r.edit_id, "prompt": f"{facts[r.fact_id].subject} {facts[r.fact_id].relation}", "object": facts[r.fact_id].object, "recalled": r.recalled, "completion": r.completion}
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
    mem = open_ro(store, device)
    try:
        data = mem.recall(prompt, at=at, max_new_tokens=max_new_tokens)
    finally:
        mem.close()
    emit(data, fmt, lambda c, d: c.print(styled((d["prompt"], "dim"), (d["completion"], "bold"), (f"  (seq {d['seq']}, cycle {d['cycle']})", "dim"))))


def revert(
    edit_id: str = typer.Argument(..., help="The edit to take out of the weights, e.g. e00003."),
    store: Path = StoreOpt,
    device: str = DeviceOpt,
    fmt: Format = FormatOpt,
):
    """Revert an edit: its current version leaves the weights (the fact stays; sleep may refresh it)."""
    mem = open_rw(store, device)
    try:
        seq = mem.revert(edit_id)
    finally:
        mem.close()
    emit({"edit_id": edit_id, "seq": seq}, fmt, lambda c, d: c.print(f"reverted {d['edit_id']} (seq {d['seq']})"))


def register(app: typer.Typer) -> None:
    app.command(name="inject")(inject)
    app.command(name="audit")(audit)
    app.command(name="recall")(recall)
    app.command(name="revert")(revert)
