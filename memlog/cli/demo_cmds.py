"""``memlog demo``: parse the options, run the demo protocol (``memlog.experiments.demo``), print.

The protocol narrates each step through a ``Narrator``; ``RichNarrator`` prints the steps, the
cycle table and the time-travel table with rich: on stdout in text format, on stderr in json
format (stdout then holds only the JSON document).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Group

from memlog.cli.common import FormatOpt, quiet_model_loading
from memlog.cli.output import Format, emit, progress_bars, stderr, stdout, styled, table
from memlog.errors import UserError
from memlog.projections.readmodels import cycle_cells, cycle_values

Say = Callable[[object], None]


class RichNarrator:
    """A demo ``Narrator`` that hands rich renderables to ``say``."""

    def __init__(self, say: Say) -> None:
        self.say = say

    def step(self, number: int, text: str) -> None:
        self.say(styled((f"{number}.", "bold"), f" {text}"))

    def note(self, text: str) -> None:
        self.say(f"   {text}")

    def cycles(self, cycles: list[dict]) -> None:
        self.say(cycle_table(cycles))

    def travel(self, travel: dict) -> None:
        self.say(travel_summary(travel))


DEMO_CYCLE_COLUMNS = ("cycle", "recall_before", "recall_after", "degraded_after", "refreshed", "pruned", "ppl_before", "ppl_after", "wall_seconds")


def cycle_table(cycles: list[dict]):
    """One row per sleep cycle (``CycleReport`` dicts), narrow enough for 80 columns: recall and
    PPL as before→after, the counts and the wall seconds (values formatted as in every cycle table)."""
    rows = []
    for c in cycles:
        cycle, r0, r1, degraded, refreshed, pruned, p0, p1, seconds = cycle_cells(cycle_values(c), DEMO_CYCLE_COLUMNS)
        rows.append([cycle, f"{r0}→{r1}", degraded, refreshed, pruned, f"{p0}→{p1}", seconds])
    return table(None, ["cycle", "recall", "degraded", "refreshed", "pruned", "ppl", "s"], rows, compact=True)


def _fmt_recall(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def travel_summary(travel: dict):
    rows = [[f["fact"], f["recorded_then"], f["recomputed_then"], f["now"]] for f in travel["facts"]]
    t = table(
        f"cycle=0 (seq {travel['seq']}): recall recorded then {_fmt_recall(travel['recall_recorded_then'])}, "
        f"recomputed on the rebuilt weights {_fmt_recall(travel['recall_recomputed_then'])}; now {_fmt_recall(travel['recall_now'])}",
        ["fact", "then (log)", "then (replayed)", "now"],
        rows,
        compact=True,
    )
    lines = [t, "   replay verified: the rebuilt weights reproduce the recorded audit" if travel["verified"] else styled(("   replay NOT verified", "red"))]
    ex = travel["example"]
    if ex:
        lines.append(f"   e.g. \"{ex['prompt']}\" → then {ex['then']!r}, now {ex['now']!r} (object: {ex['object']})")
        if ex.get("broken_by"):
            lines.append(f"   why it broke (memlog why, replayed): seq {ex['broken_at_seq']}, {ex['broken_by']}")
    return Group(*lines)


def _sayer(fmt: Format) -> Say:
    """Narration: stdout in text format, stderr in json format (stdout then holds only the document).

    The console is made at each call, so it writes through the progress display's redirection.
    """

    def say(message) -> None:
        (stdout() if fmt == Format.text else stderr()).print(message)

    return say


def demo(
    store: Path = typer.Option(None, "--store", help="Directory of the demo store (default ./memlog-demo); an older demo store there is replaced."),
    facts: int = typer.Option(30, "--facts", help="Inject at most this many pool facts."),
    stop_degraded: int = typer.Option(2, "--stop-degraded", help="Stop the wake once this many facts are not recalled."),
    fast: bool = typer.Option(False, "--fast", help="Edit layers 4-7 with 3 context prefixes: cheaper injections and a smaller capacity, for slow machines."),
    max_cycles: int = typer.Option(6, "--max-cycles", help="Most sleep cycles."),
    seed: int = typer.Option(0, "--seed", help="Seed for the fact pool and MEMIT."),
    fmt: Format = FormatOpt,
):
    """A short end-to-end run on the embedded model: wake until recall drops, sleep, time travel, report."""
    if facts < 1:
        raise UserError(f"--facts must be at least 1, got {facts}")
    if stop_degraded < 1:
        raise UserError(f"--stop-degraded must be at least 1, got {stop_degraded}")
    from memlog.experiments.demo import DEFAULT_DEMO_STORE, DemoSettings, create_embedded, run_demo
    from memlog.experiments.seeding import seed_everything

    settings = DemoSettings(max_facts=facts, stop_degraded=stop_degraded, fast=fast, seed=seed, max_cycles=max_cycles)
    seed_everything(seed)
    quiet_model_loading()
    with progress_bars(True) as progress:
        data = run_demo(Path(store or DEFAULT_DEMO_STORE), settings, create_embedded(settings, progress), RichNarrator(_sayer(fmt)), progress)
    emit(data, fmt, lambda c, d: c.print(f"demo finished in {d['wall_seconds']:.0f} s; report: {d['report']}"))


def register(app: typer.Typer) -> None:
    app.command(name="demo")(demo)
