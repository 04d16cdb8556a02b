"""Analytics commands: ``sql``, ``report`` and ``diff`` (none of them loads a model).

- ``memlog sql "SELECT …" [--export parquet DIR]``: SQL over the read-only views ``events``,
  ``edits``, ``facts``, ``cycles``, ``audits`` and ``wake`` (json: a list of row objects).
  A bad query, or one that tries to change the log, exits 1 with DuckDB's message.
- ``memlog report --out DIR``: a self-contained HTML report with plots and tables.
- ``memlog diff --from POINT --to POINT``: what changed, fact by fact, between two points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from memlog.cli.common import FormatOpt, StoreOpt, store_path
from memlog.cli.output import Format, emit, stderr, table
from memlog.core.facts import Fact
from memlog.errors import UserError
from memlog.replay.diff import diff_report

EXPORT_FORMATS = ("parquet",)


def _render_rows(console, columns: list[str], rows: list[list]) -> None:
    console.print(table(None, columns, rows, compact=True))
    console.print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


def sql(
    query: str = typer.Argument(None, help='SQL over the views events, edits, facts, cycles, audits, wake, e.g. "SELECT * FROM cycles".'),
    export: Optional[tuple[str, Path]] = typer.Option(None, "--export", metavar="parquet DIR", help="Also write every view (and the query's result as query.parquet) to DIR: --export parquet DIR."),
    store: Path = StoreOpt,
    fmt: Format = FormatOpt,
):
    """SQL over the log (read-only), with views events, edits, facts, cycles, audits and wake."""
    from memlog.analytics.views import export_parquet, query as run_query

    export_fmt, export_dir = export if export is not None else (None, None)
    if export_fmt is not None and export_fmt not in EXPORT_FORMATS:
        raise UserError(f"--export {export_fmt!r} is not supported; use --export parquet DIR")
    if query is None and export_dir is None:
        raise UserError('give a query, e.g. memlog sql "SELECT * FROM cycles", or --export parquet DIR')
    columns, rows = run_query(store_path(store), query) if query is not None else ([], [])
    written = export_parquet(store_path(store), export_dir, query) if export_dir is not None else {}
    for name, path in written.items():
        stderr().print(f"wrote {name}: {path}")
    if query is None:
        emit({"exported": {name: str(path) for name, path in written.items()}}, fmt, lambda c, d: c.print(f"exported {len(d['exported'])} table(s) to {export_dir}"))
        return
    emit([dict(zip(columns, row)) for row in rows], fmt, lambda c, _: _render_rows(c, columns, rows))


def report(
    out: Path = typer.Option(..., "--out", help="Directory for index.html and its PNG figures (created if missing)."),
    store: Path = StoreOpt,
    fmt: Format = FormatOpt,
):
    """HTML report: recall, degraded count and PPL per injection and per cycle, and the cycles and facts tables."""
    from memlog.analytics.report import write_report

    result = write_report(store_path(store), out)
    emit(result, fmt, lambda c, d: c.print(f"report written: {d['index']} ({len(d['figures'])} figure(s))"))


def render_diff(console, data: dict) -> None:
    """Print a diff report (``memlog.replay.diff.diff_report``) for people."""
    a, b = data["from"], data["to"]

    def side(s: dict) -> str:
        recall = "no audit" if s["recall"] is None else f"recall {s['recall']:.3f}, {s['degraded']} degraded"
        return f"{s['point']} (seq {s['seq']}, cycle {s['cycle']}, {s['active_facts']} active, {recall})"

    console.print(f"from {side(a)}\n  to {side(b)}")
    if not data["changes"]:
        console.print("no fact changed")
        return
    rows = [[c["change"], c["fact_id"], str(Fact(c["subject"], c["relation"], c["object"])), c["before"], c["after"]] for c in data["changes"]]
    console.print(table(None, ["change", "fact", "fact text", "before", "after"], rows))
    console.print(", ".join(f"{n} {name}" for name, n in data["summary"].items()))


def diff(
    from_point: str = typer.Option(..., "--from", help="Start point: cycle=N, seq=N, time=ISO or head."),
    to_point: str = typer.Option("head", "--to", help="End point (default: head)."),
    store: Path = StoreOpt,
    fmt: Format = FormatOpt,
):
    """What changed between two points: facts degraded, recovered, refreshed, pruned, injected, updated."""
    from memlog.store.store import Store

    with Store.open(store_path(store), writable=False) as st:
        logged = st.log.read()
    emit(diff_report(logged, from_point, to_point), fmt, render_diff)


def render_comparison(c, d: dict) -> None:
    from memlog.analytics.compare import aligned_cycles

    runs = d["runs"]
    columns = ["cycle", "facts"]
    for run in runs:
        columns += [f"{run['label']} recall (all)", f"{run['label']} ledger/active"]
    rows = []
    for cycle, known, present in aligned_cycles([run["cycles"] for run in runs]):
        row = [cycle, known]
        for r in present:
            if r is None:
                row += ["", ""]
                continue
            everyone = "—" if r["recall_injected"] is None else f"{r['recall_injected']:.3f}"
            row += [f"{r['recall_active']:.3f} ({everyone})", f"{r['ledger_size']}/{r['active_facts']}"]
        rows.append(row)
    c.print(table("recall after each cycle over active facts (over all facts injected so far)", columns, rows, compact=True))
    c.print(f"figure: {d['figure']}\ntable:  {d['table']}")


def compare(
    stores: list[Path] = typer.Argument(..., help="Two or more store directories (e.g. the same experiment in copy and in-place mode)."),
    out: Path = typer.Option(..., "--out", help="Directory for compare.png and compare.md (created if missing)."),
    labels: list[str] = typer.Option(None, "--label", help="A name per store, in order (default: its refresh mode)."),
    fmt: Format = FormatOpt,
):
    """Sleep cycles of several stores side by side: recall, perplexity, ledger size against active facts, one figure."""
    from memlog.analytics.compare import write_comparison

    emit(write_comparison(stores, out, labels or None), fmt, render_comparison)


def register(app: typer.Typer) -> None:
    app.command(name="sql")(sql)
    app.command(name="report")(report)
    app.command(name="diff")(diff)
    app.command(name="compare")(compare)
