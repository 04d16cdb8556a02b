"""DuckDB connection helpers for the event log: attach, retry on lock conflicts, transactions.

The log file is never held open between calls. Each operation attaches it to a private
in-memory DuckDB instance (``Duck``), works, and detaches it (closing the file and
checkpointing after writes), so a long-running writer never keeps another process from
reading. DuckDB refuses to open a file that another process holds in a conflicting mode;
such opens are retried for a few seconds (``LOCK_WAIT_S``) before StoreLockedError.

A file DuckDB cannot read (truncated, overwritten, failing its block checksums) raises
``LogDamagedError`` (an IntegrityError, exit 2) naming the file, whether the failure comes
from attaching it or from a query that reaches a damaged block; a file the process may not
open raises UserError.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

from memlog.errors import IntegrityError, StoreLockedError, UserError

LOCK_WAIT_S = 15.0
_ALIAS = "memlog_log"


class LogDamagedError(IntegrityError):
    """The event log file exists but DuckDB cannot read it."""


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else exc.__class__.__name__


def damaged(path: Path, exc: Exception) -> LogDamagedError:
    return LogDamagedError(
        f"event log {path} is damaged or truncated and cannot be read ({_first_line(exc)}); "
        f"restore {Path(path).name} from a backup of the store, then run `memlog verify`"
    )


def _is_permission_problem(exc: Exception) -> bool:
    text = str(exc).lower()
    return "permission denied" in text or "read-only file system" in text


def _is_damage(exc: Exception) -> bool:
    """Errors that come from the file's content, not from the SQL memlog sent."""
    return isinstance(exc, duckdb.Error) and not isinstance(exc, (duckdb.ProgrammingError, duckdb.IntegrityError))


def _is_lock_conflict(exc: Exception) -> bool:
    text = str(exc).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


def attach(conn: duckdb.DuckDBPyConnection, path: Path, read_only: bool, wait_s: float, alias: str = _ALIAS) -> None:
    """ATTACH the log file as ``alias``, retrying while another process holds it in a conflicting
    mode (a writer in the middle of an append, or readers while we want to write)."""
    mode = " (READ_ONLY)" if read_only else ""
    quoted = str(path).replace("'", "''")
    deadline = time.monotonic() + wait_s
    delay = 0.002
    while True:
        try:
            conn.execute(f"ATTACH '{quoted}' AS {alias}{mode}")
            return
        except duckdb.Error as exc:
            if not _is_lock_conflict(exc):
                if _is_permission_problem(exc):
                    raise UserError(f"cannot open the event log {path}: {_first_line(exc)}; check the store's permissions") from exc
                raise damaged(path, exc) from exc
            if time.monotonic() >= deadline:
                raise StoreLockedError(
                    f"event log {path} stayed busy for {wait_s:.0f} s (another process has it open): {exc}"
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


class Duck:
    """An in-memory DuckDB instance that attaches the log file for one operation at a time.

    Starting a DuckDB instance costs ~20 ms (catalog setup); attaching a file to a live
    instance costs ~2 ms. The file itself is opened by ATTACH and closed by DETACH
    around every operation, so nothing keeps the file (or its OS lock) open between
    calls. One operation at a time per instance (a mutex guards the shared alias).

    Detaching a file attached for writing checkpoints it (folds the write-ahead log into
    the database file), so readers never pay for replaying a write-ahead log.
    """

    def __init__(self) -> None:
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._mutex = threading.Lock()

    @contextmanager
    def attached(self, path: Path, read_only: bool, wait_s: float = LOCK_WAIT_S) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._mutex:
            if self._conn is None:
                self._conn = duckdb.connect(":memory:")
            conn = self._conn
            attach(conn, path, read_only, wait_s)
            try:
                conn.execute(f"USE {_ALIAS}")
                yield conn
            except duckdb.Error as exc:
                if _is_damage(exc):
                    raise damaged(path, exc) from exc
                raise
            finally:
                self._detach(conn)

    def _detach(self, conn: duckdb.DuckDBPyConnection) -> None:
        try:
            conn.execute("USE memory")
            conn.execute(f"DETACH {_ALIAS}")
        except duckdb.Error:
            # A damaged file can invalidate the whole instance; start a fresh one next time.
            self._conn = None
            conn.close()


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    conn.begin()
    try:
        yield
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
