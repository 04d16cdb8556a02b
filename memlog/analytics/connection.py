"""The read-only DuckDB connection ``memlog sql`` (and the report) runs queries on.

Queries from users run on a connection in which *every* database is read-only: the views
live in a small DuckDB file made for the connection and opened read-only, the log is
attached read-only, the instance is read-only (so a second ``ATTACH`` of the log is read-only
too), external access (files, ``COPY … TO``, extensions) is disabled and the configuration is
locked. ``DELETE``, ``UPDATE``, ``INSERT``, ``DROP`` and ``CREATE`` (outside ``temp``) are all
refused by DuckDB itself, with its own message.

Queries run on a *snapshot*: a copy of the log file taken while a read-only attach holds the
file's shared lock for the moment of the copy (so no writer is half-way through a commit).
A long query therefore never keeps a writer (``memlog inject`` or ``sleep`` in another
process) from its exclusive lock; it sees the log as it was when it started.

``connect`` yields such a connection for a store; ``log_path`` finds the store's log file;
``quote`` makes a SQL string literal.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from memlog.analytics.view_sql import create_views
from memlog.errors import UserError
from memlog.store.duck import LOCK_WAIT_S, attach
from memlog.store.store import LOG_NAME

LOG_ALIAS = "log"  # the name the views read the attached log by (``log.events``)


def log_path(store_dir: Path | str) -> Path:
    """The event log file of a store; UserError when there is none."""
    path = Path(store_dir) / LOG_NAME
    if not path.is_file():
        raise UserError(f"no memlog store at {store_dir} (no {LOG_NAME}); pass --store DIR or create one with `memlog init`")
    return path


def _attach_log(conn: duckdb.DuckDBPyConnection, path: Path, wait_s: float = LOCK_WAIT_S) -> None:
    """ATTACH the log read-only as ``log``, retrying while a writer holds it."""
    attach(conn, path, read_only=True, wait_s=wait_s, alias=LOG_ALIAS)


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def snapshot(log_file: Path, target: Path) -> Path:
    """Copy the log to ``target`` under a short read-only attach (waits out a writer's commit)."""
    conn = duckdb.connect(":memory:")
    try:
        _attach_log(conn, log_file)
        shutil.copyfile(log_file, target)
        wal = log_file.with_name(log_file.name + ".wal")
        if wal.exists():
            shutil.copyfile(wal, target.with_name(target.name + ".wal"))
    finally:
        conn.close()
    return target


def _build_views_file(views_file: Path, log_file: Path) -> None:
    conn = duckdb.connect(str(views_file))
    try:
        _attach_log(conn, log_file)
        create_views(conn)
        conn.execute(f"DETACH {LOG_ALIAS}")
    finally:
        conn.close()


@contextmanager
def connect(store_dir: Path | str, export_dir: Path | str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to a store's log in which every database is read-only, with the views.

    The views live in a DuckDB file made for this connection (in a temporary directory) and
    opened read-only; a snapshot of the log, in the same directory, is attached read-only as ``log``. External access is then
    disabled (no files read or written, no other databases attached) and the configuration
    locked, so nothing a query says can change the log. ``export_dir`` is the one directory
    that ``COPY … TO`` may then write into.
    """
    with tempfile.TemporaryDirectory(prefix="memlog-sql-") as tmp:
        log_file = snapshot(log_path(store_dir).resolve(), Path(tmp) / LOG_NAME)
        views_file = Path(tmp) / "views.duckdb"
        _build_views_file(views_file, log_file)
        conn = duckdb.connect(str(views_file), read_only=True)
        try:
            _attach_log(conn, log_file)
            if export_dir is not None:
                allowed = str(Path(export_dir).resolve()).rstrip("/") + "/"
                conn.execute(f"SET allowed_directories = [{quote(allowed)}]")
            conn.execute("SET enable_external_access = false")
            conn.execute("SET lock_configuration = true")
            yield conn
        finally:
            conn.close()
