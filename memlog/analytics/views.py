"""Stable SQL views over a store's event log: running queries and exporting them.

This is the public face of the views: ``run_sql`` and ``query`` run SQL over a store,
``execute`` runs it on an open connection, ``export_parquet`` writes every view to Parquet.
The view definitions (and what each view's columns mean) live in
``memlog.analytics.view_sql``; the locked-down read-only connection (in which no query can
change the log) in ``memlog.analytics.connection``. Both are re-exported here.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time as dtime
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import duckdb

from memlog.analytics.connection import LOG_ALIAS, connect, log_path, quote
from memlog.analytics.view_sql import EXAMPLE_QUERIES, VIEW_NAMES, VIEWS, create_views
from memlog.errors import UserError

__all__ = [
    "EXAMPLE_QUERIES",
    "LOG_ALIAS",
    "VIEWS",
    "VIEW_NAMES",
    "connect",
    "create_views",
    "execute",
    "export_parquet",
    "log_path",
    "query",
    "run_sql",
]


def _plain(value):
    """A Python value that JSON and people can read (Decimal → float, NaN → None, …)."""
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (datetime, date, dtime)):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def execute(conn: duckdb.DuckDBPyConnection, query: str) -> tuple[list[str], list[tuple]]:
    """Run ``query``; (column names, rows). DuckDB's error becomes a UserError carrying its message."""
    if not query or not query.strip():
        raise UserError("the query is empty; pass SQL, e.g. memlog sql \"SELECT * FROM cycles\"")
    try:
        result = conn.execute(query)
        columns = [d[0] for d in result.description] if result.description else []
        rows = result.fetchall() if result.description else []
    except duckdb.Error as exc:
        message = " ".join(str(exc).split())
        raise UserError(
            f"{message} (the log is read-only; views: {', '.join(VIEW_NAMES)}; raw tables: log.events, log.edit_versions, log.header)"
        ) from exc
    return columns, rows


def query(store_dir: Path | str, sql: str) -> tuple[list[str], list[list]]:
    """(columns, rows) of ``sql`` over a store, on a locked-down read-only connection."""
    with connect(store_dir) as conn:
        columns, rows = execute(conn, sql)
    return columns, [[_plain(v) for v in row] for row in rows]


def run_sql(store_dir: Path | str, sql: str) -> list[dict]:
    """The rows of ``sql`` over a store's views, as dicts (column → value)."""
    columns, rows = query(store_dir, sql)
    return [dict(zip(columns, row)) for row in rows]


def export_parquet(store_dir: Path | str, out_dir: Path | str, sql: str | None = None) -> dict[str, Path]:
    """Write every view as ``<out_dir>/<view>.parquet``, and ``sql``'s result as ``query.parquet``.

    Returns the paths written, by name. The connection is the same locked-down read-only one
    as for queries, except that ``out_dir`` may be written.
    """
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(name, f"SELECT * FROM {name}") for name in VIEW_NAMES]
    if sql is not None:
        jobs.append(("query", sql))
    written: dict[str, Path] = {}
    with connect(store_dir, export_dir=out) as conn:
        if sql is not None:
            execute(conn, sql)  # a bad query fails here, before any file is written
        for name, select in jobs:
            path = out / f"{name}.parquet"
            try:
                conn.execute(f"COPY ({select.strip().rstrip(';')}) TO {quote(str(path))} (FORMAT parquet)")
            except duckdb.Error as exc:
                raise UserError(f"export of {name} failed: {' '.join(str(exc).split())}") from exc
            written[name] = path
    return written
