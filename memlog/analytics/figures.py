"""The HTML report's figures (``memlog report``), drawn with matplotlib's object API on the Agg
canvas, so no global backend is changed and no display is needed. What each figure shows is
listed in ``memlog.analytics.report``'s docstring."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

FIGURE_NAMES: tuple[str, ...] = ("wake.png", "cycles_recall.png", "cycles_counts.png", "ppl.png", "measures.png")
DPI = 110
FIGSIZE = (8.0, 3.8)

PHASE_COLOURS = {
    "base": "#555555",
    "wake": "#1f77b4",
    "sleep-before": "#ff7f0e",
    "sleep-after": "#2ca02c",
    "refresh-check": "#9467bd",
    "wake-check": "#8c564b",
}
PROBE_MEASURES = ("paraphrase_recall", "neighbour_unchanged", "chat_recall")


def _new_figure() -> tuple[Figure, object]:
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, format="png", dpi=DPI)
    return path


def plot_wake(rows: list[dict], path: Path) -> Path:
    """Recall (left axis) and degraded count (right axis) after each injection."""
    fig, ax = _new_figure()
    audited = [r for r in rows if r["recall"] is not None]
    x = [r["injection"] for r in audited]
    ax.plot(x, [r["recall"] for r in audited], marker="o", color="#1f77b4", label="recall")
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("injection (facts injected so far)")
    ax.set_ylabel("recall", color="#1f77b4")
    right = ax.twinx()
    right.bar(x, [r["degraded"] for r in audited], color="#d62728", alpha=0.35, label="degraded")
    right.set_ylabel("degraded facts", color="#d62728")
    right.set_ylim(0, max([r["degraded"] for r in audited] + [1]) * 1.25)
    for prev, cur in zip(rows, rows[1:]):
        if cur["cycles_before"] != prev["cycles_before"]:
            ax.axvline(cur["injection"] - 0.5, color="#888888", linestyle=":", linewidth=1)
    ax.set_zorder(right.get_zorder() + 1)  # the recall line above the bars
    ax.patch.set_visible(False)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    right.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Wake trajectory: recall and degraded after each injection")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_cycle_recall(rows: list[dict], path: Path) -> Path:
    """Recall before and after each sleep cycle, over every fact ever injected; after, over the active facts too."""
    fig, ax = _new_figure()
    x = [r["cycle"] for r in rows]
    ax.plot(x, [r["recall_before"] for r in rows], marker="s", linestyle="--", color="#ff7f0e", label="before (sleep-pre audit, all injected)")
    ax.plot(x, [r["recall_after"] for r in rows], marker="o", color="#2ca02c", label="after (sleep-post audit, all injected)")
    ax.plot(x, [r["recall_after_active"] for r in rows], marker=".", linestyle=":", color="#1f77b4", label="after, active facts only")
    ax.set_ylim(-0.02, 1.05)
    ax.set_xticks(x)
    ax.set_xlabel("sleep cycle")
    ax.set_ylabel("recall")
    ax.set_title("Recall per sleep cycle")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_cycle_counts(rows: list[dict], path: Path) -> Path:
    """Grouped bars: refreshed and pruned per cycle, plus rolled back and blocked when any."""
    fig, ax = _new_figure()
    series = [("refreshed", "#2ca02c"), ("pruned", "#d62728")]
    series += [(name, colour) for name, colour in (("rolled_back", "#9467bd"), ("blocked", "#7f7f7f")) if any(r.get(name) for r in rows)]
    width = 0.8 / len(series)
    x = [r["cycle"] for r in rows]
    for i, (name, colour) in enumerate(series):
        offset = (i - (len(series) - 1) / 2) * width
        ax.bar([c + offset for c in x], [r.get(name) or 0 for r in rows], width=width, color=colour, label=name.replace("_", " "))
    ax.set_xticks(x)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("sleep cycle")
    ax.set_ylabel("edits")
    ax.set_title("Refreshed and pruned per cycle")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def plot_ppl(rows: list[dict], cycles: list[dict], path: Path) -> Path:
    """Every perplexity measurement over the log's seq, by phase, with sleep cycles shaded."""
    fig, ax = _new_figure()
    for c in cycles:
        if c["started_seq"] is not None:
            ax.axvspan(c["started_seq"], c["ended_seq"], color="#dddddd", alpha=0.5, linewidth=0)
    ax.plot([r["seq"] for r in rows], [r["ppl"] for r in rows], color="#bbbbbb", linewidth=1, zorder=1)
    for phase in sorted({r["phase"] for r in rows}):
        sel = [r for r in rows if r["phase"] == phase]
        ax.scatter([r["seq"] for r in sel], [r["ppl"] for r in sel], label=phase, color=PHASE_COLOURS.get(phase, "#17becf"), zorder=2, s=22)
    ax.set_xlabel("log seq (grey bands: sleep cycles)")
    ax.set_ylabel("perplexity")
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    ax.set_title("Perplexity over time")
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_measures(rows: list[dict], path: Path) -> Path:
    """Exact, paraphrase, neighbourhood-kept and chat measures at each probed audit."""
    fig, ax = _new_figure()
    x = list(range(len(rows)))
    series = [("exact_recall", "exact prompt", "#1f77b4", "o"), ("paraphrase_recall", "paraphrase", "#ff7f0e", "s")]
    series += [("neighbour_unchanged", "neighbourhood kept", "#2ca02c", "^"), ("chat_recall", "chat template", "#9467bd", "D")]
    for key, label, colour, marker in series:
        points = [(i, r[key]) for i, r in zip(x, rows) if r[key] is not None]
        if points:
            ax.plot([i for i, _ in points], [v for _, v in points], marker=marker, color=colour, label=label)
    ax.set_xticks(x, [_audit_label(r) for r in rows], rotation=45 if len(rows) > 8 else 0, fontsize="small")
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("audit (c = sleep cycle)")
    ax.set_ylabel("fraction of facts")
    ax.set_title("Recall by measure at each sleep and manual audit")
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _audit_label(row: dict) -> str:
    if row["cycle"] is None:
        return f"{row['phase']} @{row['seq']}"
    return f"c{row['cycle']} {row['phase'].removeprefix('sleep-')}"


def draw_figures(data, out: Path) -> list[Path]:
    """Draw every figure of a ``memlog.analytics.report.ReportData`` that has data into ``out``;
    remove stale ones from an earlier report."""
    drawn: list[Path] = []
    if any(r["recall"] is not None for r in data.wake):
        drawn.append(plot_wake(data.wake, out / "wake.png"))
    if data.cycles:
        drawn.append(plot_cycle_recall(data.cycles, out / "cycles_recall.png"))
        drawn.append(plot_cycle_counts(data.cycles, out / "cycles_counts.png"))
    if data.ppl and (data.wake or data.cycles):
        drawn.append(plot_ppl(data.ppl, data.cycles, out / "ppl.png"))
    if data.measures:
        drawn.append(plot_measures(data.measures, out / "measures.png"))
    for name in FIGURE_NAMES:
        if out / name not in drawn:
            (out / name).unlink(missing_ok=True)
    return drawn
