"""``memlog eval``: the field's edit metrics on a CounterFact, zsRE or JSONL file."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import typer

from memlog.cli.common import FormatOpt, open_rw, quiet_model_loading
from memlog.cli.output import Format, emit, progress_bars, table
from memlog.core.factfile import read_cases
from memlog.engine.config import EngineConfig
from memlog.errors import UserError


def eval_command(
    file: Path = typer.Argument(..., help="CounterFact, zsRE or JSONL records."),
    file_format: str = typer.Option("auto", "--file-format", help="auto, counterfact, zsre or jsonl."),
    sample: int = typer.Option(None, "--sample", min=1, help="Measure a seeded random sample of N records."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample."),
    sequential: bool = typer.Option(False, "--sequential", help="Edit the records one after another (lifelong); default: each alone, undone after."),
    known_only: bool = typer.Option(False, "--known-only", help="Keep only records whose true answer the unedited model gives."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Leave out malformed records (reported) instead of refusing the file."),
    no_chat: bool = typer.Option(False, "--no-chat", help="Skip chat-template recall (the slowest measure)."),
    store: Path = typer.Option(None, "--store", help="Measure on this store's live weights (--sequential writes the edits into it); default: a fresh store on --model, discarded after."),
    model: str = typer.Option("embedded", "--model", help="Model of the fresh store (without --store)."),
    out: Path = typer.Option(None, "--out", help="Also write the full JSON result (per-record rows included) here."),
    fmt: Format = FormatOpt,
):
    """Edit records and report ES, PS, NS, token accuracy and live greedy recall, before and after."""
    from memlog.experiments.knowledge_eval import METRICS, run_eval, sample_cases  # torch: loaded only for this command

    skipped: list[str] | None = [] if skip_invalid else None
    cases = sample_cases(read_cases(file, file_format, skipped=skipped), sample, seed)
    with tempfile.TemporaryDirectory() as tmp:
        if store is None:
            from memlog.core.model import ModelSpec
            from memlog.engine.open import init_memory

            quiet_model_loading()
            mem = init_memory(Path(tmp) / "store", ModelSpec(model=model), engine=EngineConfig(cap=max(50, 2 * len(cases))))
        else:
            mem = open_rw(store)
        try:
            with progress_bars(True) as progress:
                result = run_eval(mem, cases, sequential=sequential, known_only=known_only, chat=not no_chat, progress=progress)
        finally:
            mem.close()
    result.update({"file": str(file), "sample": sample, "seed": seed, "skipped_invalid": skipped or []})
    if result["n"] == 0:
        raise UserError(f"no record left to measure ({result['filtered_unknown']} filtered by --known-only)")
    if out is not None:
        out.write_text(json.dumps(result, indent=2))
    data = {k: v for k, v in result.items() if k not in ("rows", "base_neighbours")}

    def render(c, d, metrics=METRICS):
        rows = [[m, _fmt(d["before"]["all"][m]), _fmt(d["after"]["all"][m])] for m in metrics]
        c.print(table(f"eval ({d['protocol']}, {d['n']} records)", ["metric", "before", "after"], rows))
        if d["filtered_unknown"]:
            c.print(f"{d['filtered_unknown']} records filtered (the unedited model does not give their true answer)")
        if d["skipped_invalid"]:
            c.print(f"{len(d['skipped_invalid'])} malformed records skipped: {d['skipped_invalid'][0]}")

    emit(data, fmt, render)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def register(app: typer.Typer) -> None:
    app.command(name="eval")(eval_command)
