"""Compare runs: several stores' sleep cycles side by side (``memlog compare``).

Made for the question the paper's §5.5 raises: from the same seed and the same facts, what does
the refresh policy change? ``compare_runs`` reads each store's sleep cycles (read-only, no model:
the ``CycleRow`` fold of ``memlog.projections.readmodels``, which the ``cycles`` view equals) and
lines the runs up cycle by cycle:

* recall after each cycle over the *active* facts (what the sleep audit measures), and over
  *all facts injected so far*, where a fact pruned out of the ledger counts as forgotten;
* the reference perplexity before and after each cycle;
* the ledger size against the active facts and the cap (copy mode's ledger outgrows its facts);
* refreshed, pruned and blocked counts.

``write_comparison`` draws one PNG with the three panels and writes the table as Markdown beside
it; the returned document is what ``--format json`` prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from memlog.analytics.figures import DPI
from memlog.analytics.report import load_report_data
from memlog.errors import UserError

COLOURS = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#7f7f7f")
MODE_COLOURS = {"copy": "#d62728", "in-place": "#2ca02c"}  # the paper's bug in red, the fix in green
FIGURE = "compare.png"
TABLE = "compare.md"


@dataclass(frozen=True)
class Run:
    label: str
    store: str
    cycles: list[dict]

    def to_dict(self) -> dict:
        return {"label": self.label, "store": self.store, "cycles": self.cycles}


def _cycle_row(c: dict) -> dict:
    injected = c.get("facts_known") or 0
    return {
        "cycle": c["cycle"],
        "facts_known": injected,
        "active_facts": c["active_facts"],
        "ledger_size": c["ledger_size"],
        "cap": c.get("cap"),
        "recall_before": c["recall_before_active"],
        "recall_active": c["recall_after_active"],
        "recall_injected": c["recall_after"] if injected else None,
        "refreshed": c["refreshed"],
        "pruned": c["pruned"],
        "blocked": c.get("blocked") or 0,
        "refresh_mode": c.get("refresh_mode"),
        "refresh_strategy": c.get("refresh_strategy"),
        "ppl_before": c.get("ppl_before"),
        "ppl_after": c.get("ppl_after"),
    }


def _label(store: Path, cycles: list[dict], taken: set[str]) -> str:
    modes = sorted(
        {
            c["refresh_mode"] + (f" ({c['refresh_strategy']})" if c.get("refresh_strategy") not in (None, "reinject") else "")
            for c in cycles
            if c.get("refresh_mode")
        }
    )
    label = "/".join(modes) or store.name
    if label in taken:
        label = f"{label} ({store.name})"
    return label


def compare_runs(stores: list[Path | str], labels: list[str] | None = None) -> list[Run]:
    """One ``Run`` per store, in the order given; a store without sleep cycles is a UserError."""
    if len(stores) < 2:
        raise UserError("compare needs at least two stores")
    if labels is not None and len(labels) != len(stores):
        raise UserError(f"{len(labels)} labels for {len(stores)} stores; pass one --label per store, or none")
    runs: list[Run] = []
    for i, store in enumerate(map(Path, stores)):
        data = load_report_data(store)
        if not data.cycles:
            raise UserError(f"{store} has no sleep cycles to compare; run `memlog sleep` (or an experiment) in it first")
        label = labels[i] if labels else _label(store, data.cycles, {r.label for r in runs})
        runs.append(Run(label=label, store=str(store), cycles=[_cycle_row(c) for c in data.cycles]))
    return runs


def plot_comparison(runs: list[Run], path: Path) -> Path:
    """Left: recall over active facts before (hollow) and after (filled) each cycle, and after each
    cycle over all facts injected so far (dashed). Middle: reference perplexity before (hollow) and
    after (filled) each cycle. Right: ledger size (solid) against active facts (dotted), with the cap."""
    fig = Figure(figsize=(15.0, 4.0), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    recall_ax, ppl_ax, ledger_ax = fig.subplots(1, 3)
    caps = set()
    spare = iter(COLOURS * (len(runs) // len(COLOURS) + 1))
    used: set[str] = set()
    for run in runs:
        modes = {c["refresh_mode"] for c in run.cycles}
        colour = MODE_COLOURS.get(modes.pop()) if len(modes) == 1 else None
        if colour is None or colour in used:  # two runs of one mode: tell them apart
            colour = next(spare)
        used.add(colour)
        x = [c["cycle"] for c in run.cycles]
        # a sawtooth over active facts: each cycle's pre-audit (hollow, half a cycle before) then its result
        saw_x = [v for c in run.cycles for v in (c["cycle"] - 0.5, c["cycle"])]
        saw_y = [v for c in run.cycles for v in (c["recall_before"], c["recall_active"])]
        recall_ax.plot(saw_x, saw_y, color=colour, linewidth=1.2, label=f"{run.label}: active facts (before → after)")
        recall_ax.plot(saw_x[0::2], saw_y[0::2], linestyle="none", marker="o", markerfacecolor="white", color=colour)
        recall_ax.plot(x, [c["recall_active"] for c in run.cycles], linestyle="none", marker="o", color=colour)
        recall_ax.plot(x, [c["recall_injected"] for c in run.cycles], linestyle="--", color=colour, label=f"{run.label}: all injected")
        ppl_y = [v for c in run.cycles for v in (c["ppl_before"], c["ppl_after"])]
        ppl_ax.plot(saw_x, ppl_y, color=colour, linewidth=1.2, label=run.label)
        ppl_ax.plot(saw_x[0::2], ppl_y[0::2], linestyle="none", marker="o", markerfacecolor="white", color=colour)
        ppl_ax.plot(x, ppl_y[1::2], linestyle="none", marker="o", color=colour)
        ledger_ax.plot(x, [c["ledger_size"] for c in run.cycles], marker="o", color=colour, label=f"{run.label}: ledger entries")
        ledger_ax.plot(x, [c["active_facts"] for c in run.cycles], linestyle=":", color=colour, label=f"{run.label}: active facts")
        caps.update(c["cap"] for c in run.cycles if c["cap"])
        for prev, cur in zip(run.cycles, run.cycles[1:]):
            if cur["facts_known"] != prev["facts_known"]:
                for ax in (recall_ax, ppl_ax, ledger_ax):
                    ax.axvline(cur["cycle"] - 0.5, color="#888888", linestyle=":", linewidth=1)
    for cap in sorted(caps):
        ledger_ax.axhline(cap, color="#555555", linewidth=1, linestyle="-.", label=f"cap {cap}")
    recall_ax.set_ylim(-0.02, 1.05)
    recall_ax.set_ylabel("recall (hollow: the cycle's pre-audit)")
    recall_ax.set_title("Recall per sleep cycle")
    ppl_ax.set_ylabel("reference perplexity (hollow: before the cycle)")
    ppl_ax.set_title("Perplexity per sleep cycle")
    ledger_ax.set_ylabel("count")
    ledger_ax.set_title("Ledger entries vs active facts")
    for ax in (recall_ax, ppl_ax, ledger_ax):
        ax.set_xlabel("sleep cycle (dotted lines: new facts injected before)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="x-small")
    fig.savefig(path, format="png", dpi=DPI)
    return path


def _fmt(value) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def aligned_cycles(cycles_per_run: list[list[dict]]) -> list[tuple[int, str, list[dict | None]]]:
    """(cycle, facts known so far, each run's row or None) for every cycle any run reached; the facts
    column holds one value when the runs agree, else each distinct value."""
    by_cycle = [{c["cycle"]: c for c in cycles} for cycles in cycles_per_run]
    aligned = []
    for cycle in sorted({n for cycles in by_cycle for n in cycles}):
        rows = [cycles.get(cycle) for cycles in by_cycle]
        known = sorted({r["facts_known"] for r in rows if r})
        aligned.append((cycle, " / ".join(map(str, known)), rows))
    return aligned


def markdown_table(runs: list[Run]) -> str:
    """Cycle by cycle: per run, recall (active / all injected), PPL after, ledger / active, refreshed, pruned, blocked."""
    header = ["cycle", "facts injected"]  # distinct facts so far (one value when the runs agree)
    for run in runs:
        header += [f"{run.label} recall (active / all)", f"{run.label} PPL after", f"{run.label} ledger / active", f"{run.label} refreshed / pruned / blocked"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for cycle, known, rows in aligned_cycles([run.cycles for run in runs]):
        cells = [str(cycle), known]
        for r in rows:
            if r is None:
                cells += ["", "", "", ""]
                continue
            cells += [
                f"{_fmt(r['recall_active'])} / {_fmt(r['recall_injected'])}",
                f"{r['ppl_after']:.3f}" if r["ppl_after"] is not None else "",
                f"{r['ledger_size']} / {r['active_facts']}",
                f"{r['refreshed']} / {r['pruned']} / {r['blocked']}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_comparison(stores: list[Path | str], out_dir: Path | str, labels: list[str] | None = None) -> dict:
    """Write ``compare.png`` and ``compare.md`` into ``out_dir``; return the runs and the paths."""
    runs = compare_runs(stores, labels)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a directory")
    out.mkdir(parents=True, exist_ok=True)
    figure = plot_comparison(runs, out / FIGURE)
    table = out / TABLE
    table.write_text(markdown_table(runs))
    return {"runs": [r.to_dict() for r in runs], "figure": str(figure), "table": str(table)}
