"""``memlog report``: a self-contained HTML page about a store, with matplotlib figures.

``write_report(store_dir, out_dir)`` reads the log through the read-only SQL views
(``memlog.analytics.views``; the sleep cycles through their Python fold,
``memlog.projections.readmodels``, which the ``cycles`` view equals) and writes
``out_dir/index.html`` with PNG figures beside it:

- ``wake.png``: the wake trajectory, recall and degraded count after each injection (the
  paper's Fig. 1 and Table 3), from the wake-phase ``RecallAudited`` after each
  ``FactInjected``; dotted lines mark where sleep cycles ran between injections;
- ``cycles_recall.png``: recall before and after each sleep cycle (Figs. 2 and 3);
- ``cycles_counts.png``: refreshed, pruned (and rolled back, blocked) per cycle (Table 6);
- ``ppl.png``: every perplexity measurement over the log's seq, by phase (Table 7);
- ``measures.png``: exact-prompt recall beside paraphrase recall, neighbourhood kept and
  chat-template recall at each audit that measured them (sleep and manual audits; the
  ``measures`` view), drawn when any fact has probes or chat was measured.

The page has no external references (inline CSS, relative image paths) and also holds the
cycles, probe measures, wake and facts tables. A store with nothing to show yet gets a page that says so.
Figures are drawn with matplotlib's object API on the Agg canvas, so no global backend is
changed and no display is needed.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from memlog.analytics.connection import quote
from memlog.analytics.figures import PROBE_MEASURES, draw_figures
from memlog.analytics.views import connect, execute
from memlog.projections.readmodels import CYCLE_EVENT_KINDS, fold_cycles
from memlog.store.rows import decode_row

@dataclass
class ReportData:
    """Everything the page shows, read once from the views."""

    summary: dict
    wake: list[dict] = field(default_factory=list)
    cycles: list[dict] = field(default_factory=list)
    facts: list[dict] = field(default_factory=list)
    ppl: list[dict] = field(default_factory=list)
    measures: list[dict] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.wake and not self.cycles and not self.facts


# ------------------------------------------------------------------------ data


def _rows(conn, sql: str) -> list[dict]:
    columns, rows = execute(conn, sql)
    return [dict(zip(columns, row)) for row in rows]


def _summary(conn) -> dict:
    header = {r["key"]: r["value"] for r in _rows(conn, "SELECT key, value::VARCHAR AS value FROM log.header")}
    counts = _rows(
        conn,
        "SELECT count(*) AS events, coalesce(max(seq), 0) AS head_seq, "
        "count(*) FILTER (WHERE kind = 'FactInjected') AS injections, "
        "count(*) FILTER (WHERE kind = 'SleepEnded') AS cycles FROM events",
    )[0]
    active = _rows(conn, "SELECT count(*) FILTER (WHERE active) AS active_facts, count(*) AS facts FROM facts")[0]
    audit = _rows(conn, "SELECT seq, recall, degraded, phase FROM events WHERE kind = 'RecallAudited' ORDER BY seq DESC LIMIT 1")
    return {
        "model_id": header.get("model_id", "").strip('"'),
        "fingerprint": header.get("fingerprint", "").strip('"'),
        **counts,
        **active,
        "last_audit": audit[0] if audit else None,
    }


def _cycles(conn) -> list[dict]:
    """The sleep cycles, folded in Python from the events (the ``cycles`` view equals this fold)."""
    kinds = ", ".join(quote(k) for k in CYCLE_EVENT_KINDS)
    _, rows = execute(conn, f"SELECT seq, schema, kind, payload FROM log.events WHERE kind IN ({kinds}) ORDER BY seq")
    return [row.to_dict() for row in fold_cycles((seq, decode_row(seq, schema, kind, payload)) for seq, schema, kind, payload in rows)]


def load_report_data(store_dir: Path | str) -> ReportData:
    """Read the summary, wake trajectory, cycles, facts and perplexity series of a store."""
    with connect(store_dir) as conn:
        return ReportData(
            summary=_summary(conn),
            wake=_rows(conn, "SELECT * FROM wake ORDER BY injection"),
            cycles=_cycles(conn),
            facts=_rows(conn, "SELECT * FROM facts ORDER BY first_seq"),
            ppl=_rows(conn, "SELECT seq, ppl, phase, cycle FROM events WHERE kind = 'PerplexityMeasured' AND ppl IS NOT NULL ORDER BY seq"),
            measures=[r for r in _rows(conn, MEASURES_SQL) if any(r[m] is not None for m in PROBE_MEASURES)],
        )


# the probe measures of each audit that took them, beside its exact-prompt recall (per fact, so
# that it is the exact prompt's whatever measure ``degraded_by`` made the audit's own recall)
MEASURES_SQL = """
SELECT m.seq, m.cycle, m.phase, m.audited, m.degraded_by,
       (SELECT avg(CASE WHEN a.recalled THEN 1.0 ELSE 0.0 END) FROM audits a WHERE a.seq = m.seq) AS exact_recall,
       m.paraphrase_recall, m.neighbour_unchanged, m.chat_recall
FROM measures m WHERE m.phase IN ('sleep-pre', 'sleep-post', 'manual') ORDER BY m.seq
"""


# ------------------------------------------------------------------------ HTML

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; line-height: 1.4; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
.meta { color: #666; font-size: 0.9em; }
.cards { display: flex; flex-wrap: wrap; gap: 0.8em; margin: 1em 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.5em 1em; min-width: 8em; }
.card b { display: block; font-size: 1.3em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.5em; text-align: right; }
th { background: #f4f4f4; } td.text { text-align: left; }
tr.inactive td { color: #999; }
.scroll { overflow-x: auto; max-width: 100%; }
.empty { background: #fff8e1; border: 1px solid #f0d98c; padding: 1em; border-radius: 6px; }
"""

CAPTIONS = {
    "wake.png": "Wake trajectory (cf. the paper's Fig. 1 and Table 3): recall of all active facts and the number "
    "not recalled, from the wake audit after each injection. Dotted lines: sleep ran before that injection.",
    "cycles_recall.png": "Recall over every fact ever injected (a pruned fact counts as degraded) before (sleep-pre audit) and after (sleep-post audit) each sleep cycle, and after over the active facts only (cf. Figs. 2 and 3).",
    "cycles_counts.png": "Edits refreshed and pruned in each cycle (cf. Table 6; rolled back and blocked are shown when any).",
    "ppl.png": "Perplexity measurements by phase (cf. Table 7); grey bands are sleep cycles.",
    "measures.png": "At each sleep (pre, post) and manual audit: the fraction of active facts recalled on their own prompt, "
    "the mean paraphrase recall and neighbourhood kept (over facts with such probes) and chat-template recall.",
}

# Columns of memlog.projections.readmodels.CycleRow (the ``cycles`` view's names), in the page's order.
CYCLE_COLUMNS = (
    "cycle", "recall_before", "recall_after", "recall_after_active", "degraded_before", "degraded_after", "refreshed", "reverted",
    "pruned", "released", "rolled_back", "blocked", "failed", "ledger_size", "active_facts", "ppl_before", "ppl_after", "wall_seconds",
    "refresh_mode", "refresh_strategy", "cap", "min_rank_left", "mean_reach", "max_delta_norm",
)
MEASURE_COLUMNS = ("cycle", "phase", "seq", "audited", "degraded_by", "exact_recall", *PROBE_MEASURES)
WAKE_COLUMNS = ("injection", "seq", "subject", "object", "audited", "recall", "degraded", "recalled", "ppl", "cycles_before")
FACT_COLUMNS = (
    "fact_id", "subject", "relation", "object", "active", "first_seq", "pruned_seq", "released_seq", "edit_id", "version",
    "audits", "times_degraded", "cycles_degraded", "refreshes", "last_recalled", "last_completion",
)
TEXT_COLUMNS = {"fact_id", "subject", "relation", "object", "edit_id", "refresh_mode", "refresh_strategy", "last_completion", "phase", "degraded_by"}


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return html.escape(str(value))


def html_table(rows: list[dict], columns: tuple[str, ...], row_class=None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cls = f' class="{row_class(row)}"' if row_class and row_class(row) else ""
        cells = "".join(f'<td{" class=text" if c in TEXT_COLUMNS else ""}>{_cell(row.get(c))}</td>' for c in columns)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<div class=scroll><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def _cards(summary: dict) -> str:
    audit = summary["last_audit"]
    items = [
        ("head seq", summary["head_seq"]),
        ("facts injected", summary["injections"]),
        ("active facts", summary["active_facts"]),
        ("sleep cycles", summary["cycles"]),
        ("latest recall", f"{audit['recall']:.3f}" if audit and audit["recall"] is not None else "—"),
        ("degraded now", audit["degraded"] if audit else "—"),
    ]
    return '<div class="cards">' + "".join(f'<div class="card"><b>{html.escape(str(v))}</b>{html.escape(k)}</div>' for k, v in items) + "</div>"


def _figures_html(figures: list[Path]) -> str:
    parts = []
    for path in figures:
        caption = CAPTIONS.get(path.name, "")
        parts.append(f'<figure><img src="{html.escape(path.name)}" alt="{html.escape(path.stem)}"><figcaption>{html.escape(caption)}</figcaption></figure>')
    return "".join(parts)


def render_html(data: ReportData, figures: list[Path], store_dir: Path, generated: datetime) -> str:
    s = data.summary
    sections = [
        f"<h1>memlog report</h1><p class=meta>store <code>{html.escape(str(store_dir))}</code> · model "
        f"<code>{html.escape(s['model_id'])}</code> · fingerprint <code>{html.escape(s['fingerprint'][:23])}</code> · "
        f"generated {html.escape(generated.strftime('%Y-%m-%d %H:%M:%S UTC'))}</p>",
        _cards(s),
    ]
    if data.empty:
        sections.append(
            '<p class="empty">Nothing to report yet: no fact has been injected into this store. '
            "Inject some (<code>memlog inject SUBJECT RELATION OBJECT</code>), let it sleep "
            "(<code>memlog sleep --until-converged</code>), then run <code>memlog report</code> again.</p>"
        )
    if figures:
        sections.append("<h2>Figures</h2>" + _figures_html(figures))
    if data.cycles:
        sections.append("<h2>Sleep cycles</h2>" + html_table(data.cycles, CYCLE_COLUMNS))
    elif not data.empty:
        sections.append("<h2>Sleep cycles</h2><p>No sleep cycle yet (<code>memlog sleep</code>).</p>")
    if data.measures:
        sections.append(
            "<h2>Recall by measure</h2><p class=meta>Exact-prompt recall beside paraphrase recall, neighbourhood kept and "
            "chat-template recall, at each audit that measured them (empty: no fact had that probe).</p>"
            + html_table(data.measures, MEASURE_COLUMNS)
        )
    if data.wake:
        sections.append("<h2>Wake trajectory</h2>" + html_table(data.wake, WAKE_COLUMNS))
    if data.facts:
        sections.append(
            "<h2>Facts</h2><p class=meta>Grey rows: facts no longer looked after (pruned, or released: the edit stays in the weights).</p>"
            + html_table(data.facts, FACT_COLUMNS, row_class=lambda r: "" if r["active"] else "inactive")
        )
    body = "\n".join(sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>memlog report — {html.escape(s['model_id'])}</title><style>{CSS}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def write_report(store_dir: Path | str, out_dir: Path | str) -> dict:
    """Write ``out_dir/index.html`` and its figures; returns ``{"index", "figures", "empty", "seq"}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = load_report_data(store_dir)
    figures = draw_figures(data, out)
    index = out / "index.html"
    index.write_text(render_html(data, figures, Path(store_dir), datetime.now(timezone.utc)), encoding="utf-8")
    return {
        "index": str(index),
        "figures": [str(p) for p in figures],
        "empty": data.empty,
        "seq": data.summary["head_seq"],
    }
