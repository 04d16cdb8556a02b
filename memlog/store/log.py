"""The append-only event log: one DuckDB file (``<store>/log.duckdb``).

Tables (queryable with plain SQL, e.g. ``memlog sql``)::

    header(key VARCHAR PRIMARY KEY, value JSON)
        format         the on-disk format version of this log (FORMAT_VERSION)
        store_created  the StoreCreated event (model fingerprint, layers, dtype, config)
        model_id, fingerprint, created_at   copies for convenient SQL
    events(seq BIGINT PRIMARY KEY, ts TIMESTAMPTZ, kind VARCHAR, schema INTEGER,
           edit_id VARCHAR, version INTEGER, fact_id VARCHAR, cycle INTEGER, payload JSON)
    edit_versions(edit_id VARCHAR, version INTEGER, seq BIGINT, PRIMARY KEY (edit_id, version))
    chain(seq BIGINT PRIMARY KEY, hash VARCHAR)    the hash chain over the events (memlog.store.chain)

``seq`` is global and gap-free, starting at 1 with the StoreCreated event. ``payload`` is
the msgspec JSON encoding of the event (``encode_event``); the other columns are copies
for querying. ``edit_versions`` holds the (edit_id, version) each FactInjected or
EditRefreshed creates; its primary key makes a second creation of the same version
impossible.

Rules this module keeps:

* Rows are only ever inserted; nothing here updates or deletes events.
* ``append`` writes a whole batch in one transaction (DuckDB's appender, one flush per
  table), or nothing.
* The file is never held open between calls: every operation attaches it, works and
  detaches it, so a long-running writer (a sleep cycle computing for minutes) never keeps
  ``memlog status`` in another process from reading; opens that meet a conflicting lock
  are retried for a few seconds (``LOCK_WAIT_S``). The connection helpers live in
  ``memlog.store.duck``, the event/row conversions in ``memlog.store.rows``.
* Every appended event gets its link in the hash chain in the same transaction, and an
  append on top of a broken last link (or a chain that does not cover every event) is
  refused. Format 1 logs (no ``chain`` table) get the chain over all their events with
  their first append.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import duckdb
import msgspec

from memlog.errors import IntegrityError, UserError
from memlog.store.chain import CHAIN_DDL, GENESIS, ROW_COLUMNS, Head, chain_links, chain_tip, has_chain, row_for_link
from memlog.store.duck import LOCK_WAIT_S, Duck, transaction
from memlog.store.events import (
    EVENT_KINDS,
    AnyEvent,
    Event,
    StoreCreated,
    decode_event,
    edit_key,
    event_kind,
)
from memlog.store.batch_checks import batch_edit_keys, existing_keys, refused, require_blobs
from memlog.store.rows import decode_row, encode_checked, event_row, utc_from_epoch_us

__all__ = ["FORMAT_VERSION", "LOCK_WAIT_S", "EventLog", "LoggedEvent", "RawRow"]

FORMAT_VERSION = 2  # 2: the chain table; 1: no hash chain
_COLUMNS = "seq, ts, kind, schema, edit_id, version, fact_id, cycle, payload"  # the events table, in order

_DDL = """
CREATE TABLE header (
    key VARCHAR PRIMARY KEY,
    value JSON NOT NULL
);
CREATE TABLE events (
    seq BIGINT PRIMARY KEY,
    ts TIMESTAMPTZ NOT NULL,
    kind VARCHAR NOT NULL,
    schema INTEGER NOT NULL,
    edit_id VARCHAR,
    version INTEGER,
    fact_id VARCHAR,
    cycle INTEGER,
    payload JSON NOT NULL
);
CREATE TABLE edit_versions (
    edit_id VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (edit_id, version)
);
"""



class LoggedEvent(msgspec.Struct, frozen=True):
    """An event as committed: its global sequence number and commit time (UTC)."""

    seq: int
    ts: datetime
    event: AnyEvent


class RawRow(msgspec.Struct, frozen=True):
    """An events row before decoding (for integrity checks that must not stop at a bad row)."""

    seq: int
    kind: str
    schema: int
    payload: str

    def decode(self) -> Event:
        """The event; EventSchemaError (naming the seq) if it cannot be decoded."""
        return decode_row(self.seq, self.schema, self.kind, self.payload)


def _select_sql(since_seq: int | None, until_seq: int | None, kinds: list[str] | None) -> tuple[str, list]:
    where, params = [], []
    if since_seq is not None:
        where.append("seq >= ?")
        params.append(int(since_seq))
    if until_seq is not None:
        where.append("seq <= ?")
        params.append(int(until_seq))
    if kinds is not None:
        unknown = sorted(set(kinds) - set(EVENT_KINDS))
        if unknown:
            raise UserError(f"unknown event kind(s) {', '.join(unknown)}; known kinds: {', '.join(sorted(EVENT_KINDS))}")
        where.append("list_contains(?::VARCHAR[], kind)")
        params.append(list(kinds))
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    return clause, params


# --------------------------------------------------------------------- the log


class EventLog:
    """The append-only event log in one DuckDB file. Holds no open connection."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._duck = Duck()

    def __repr__(self) -> str:
        return f"EventLog({str(self.path)!r})"

    # ------------------------------------------------------------- lifecycle

    @classmethod
    def create(cls, path: Path | str, header_event: StoreCreated) -> "EventLog":
        """Create the log with its header and StoreCreated as event seq 1. Fails if ``path`` exists.

        The file is built under a temporary name and linked into place, so a crash never
        leaves a log without a header under the real name.
        """
        if not isinstance(header_event, StoreCreated):
            raise TypeError("the header of a log is a StoreCreated event")
        payload = encode_checked(header_event)
        ts = datetime.now(timezone.utc)
        header = {
            "format": FORMAT_VERSION,
            "store_created": msgspec.json.decode(payload),
            "model_id": header_event.model_id,
            "fingerprint": header_event.fingerprint,
            "created_at": ts.isoformat(),
        }
        return cls._create_file(Path(path), header, [event_row(1, ts, header_event, payload)], [])

    @classmethod
    def create_prefix(cls, path: Path | str, source: "EventLog", until_seq: int, note: dict) -> "EventLog":
        """A new log at ``path`` holding ``source``'s events 1..``until_seq`` row for row (same
        seqs, commit times and payloads, so the same chain links) and its header, with
        ``note`` added to the header (e.g. ``{"forked_from": …}``). Fails if ``path`` exists."""
        with source._duck.attached(source.path, read_only=True) as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM events WHERE seq <= ? ORDER BY seq", [until_seq]).fetchall()
            versions = conn.execute("SELECT edit_id, version, seq FROM edit_versions WHERE seq <= ? ORDER BY seq", [until_seq]).fetchall()
        if [row[0] for row in rows] != list(range(1, until_seq + 1)):
            raise IntegrityError(f"{source.path} does not hold events 1..{until_seq} without gaps")
        header = source.header_values() | {"format": FORMAT_VERSION, "created_at": datetime.now(timezone.utc).isoformat()} | note
        return cls._create_file(Path(path), header, rows, versions)

    @classmethod
    def _create_file(cls, path: Path, header: dict, rows: list[tuple], versions: list[tuple]) -> "EventLog":
        if path.exists():
            raise UserError(f"{path} already exists; refusing to overwrite an event log")
        log = cls(path)
        tmp = path.with_name(f".{path.name}.creating-{uuid.uuid4().hex}")
        try:
            log._build(tmp, header, rows, versions)
            wal = tmp.with_name(tmp.name + ".wal")
            if wal.exists() and wal.stat().st_size > 0:
                raise IntegrityError(f"creating {path}: the new log's write-ahead log was not checkpointed")
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise UserError(f"{path} already exists; refusing to overwrite an event log") from None
        finally:
            for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
                leftover.unlink(missing_ok=True)
        return log

    def _build(self, tmp: Path, header: dict, rows: list[tuple], versions: list[tuple]) -> None:
        with self._duck.attached(tmp, read_only=False) as conn:
            with transaction(conn):
                conn.execute(_DDL + CHAIN_DDL)
                appender = conn.appender("header")
                appender.append_rows([(key, msgspec.json.encode(value).decode()) for key, value in header.items()])
                appender.flush()
                _insert(conn, rows, versions, GENESIS)
            conn.execute("CHECKPOINT")

    @classmethod
    def open(cls, path: Path | str) -> "EventLog":
        """Open an existing log; refuses a missing file, a file that is not a memlog log, or a
        newer on-disk format."""
        log = cls(path)
        if not log.path.is_file():
            raise UserError(f"no event log at {log.path}")
        try:
            fmt = log.header_values().get("format")
        except (duckdb.CatalogException, duckdb.SerializationException) as exc:
            raise IntegrityError(f"{log.path} is not a memlog event log: {exc}") from exc
        except duckdb.IOException as exc:
            raise IntegrityError(f"{log.path} is not a readable DuckDB event log: {exc}") from exc
        if isinstance(fmt, int) and fmt > FORMAT_VERSION:
            raise IntegrityError(
                f"event log {log.path} has format version {fmt}, but this memlog understands up to "
                f"{FORMAT_VERSION}; upgrade memlog"
            )
        return log

    # ----------------------------------------------------------------- write

    def append(self, events: Sequence[Event], blobs=None) -> list[LoggedEvent]:
        """Commit ``events`` as one transaction with seq = head+1, head+2, …; all or nothing.

        Raises IntegrityError (and writes nothing) when an (edit_id, version) already
        exists or repeats in the batch, or, with ``blobs`` (a BlobStore), when an event
        names a blob that is not stored yet.
        """
        events = list(events)
        if not events:
            return []
        for event in events:
            if isinstance(event, StoreCreated):
                raise ValueError("StoreCreated is written once, by EventLog.create")
        payloads = [encode_checked(event) for event in events]
        keys = batch_edit_keys(events)
        if blobs is not None:
            require_blobs(events, blobs)
        ts = datetime.now(timezone.utc)
        with self._duck.attached(self.path, read_only=False) as conn:
            try:
                with transaction(conn):
                    head = _head(conn)
                    previous = chain_tip(conn, head, self.path, FORMAT_VERSION)
                    logged = [LoggedEvent(head + i + 1, ts, e) for i, e in enumerate(events)]
                    rows = [event_row(le.seq, le.ts, le.event, p) for le, p in zip(logged, payloads)]
                    versions = [(*edit_key(le.event), le.seq) for le in logged if edit_key(le.event) is not None]
                    _insert(conn, rows, versions, previous)
            except duckdb.ConstraintException as exc:
                # Rolled back. A repeated (edit_id, version) is the expected cause: name it.
                raise refused(existing_keys(conn, keys), len(events), exc) from exc
        return logged

    # ------------------------------------------------------------------ read

    def read(
        self,
        since_seq: int | None = None,
        until_seq: int | None = None,
        kinds: list[str] | None = None,
    ) -> list[LoggedEvent]:
        """Events with ``since_seq <= seq <= until_seq`` (both optional, inclusive), in seq order.

        ``kinds`` keeps only those event kinds (e.g. ``["FactInjected"]``). A row written by a
        newer memlog raises EventSchemaError naming its seq and schema version.
        """
        clause, params = _select_sql(since_seq, until_seq, kinds)
        sql = f"SELECT seq, epoch_us(ts), schema, kind, payload FROM events{clause} ORDER BY seq"
        with self._duck.attached(self.path, read_only=True) as conn:
            rows = conn.execute(sql, params).fetchall()
        return [
            LoggedEvent(seq, utc_from_epoch_us(us), decode_row(seq, schema, kind, payload))
            for seq, us, schema, kind, payload in rows
        ]

    def read_raw(self) -> list[RawRow]:
        """Every events row undecoded, in seq order (for integrity checks)."""
        with self._duck.attached(self.path, read_only=True) as conn:
            rows = conn.execute("SELECT seq, kind, schema, payload FROM events ORDER BY seq").fetchall()
        return [RawRow(seq, kind, schema, payload) for seq, kind, schema, payload in rows]

    def chained(self) -> bool:
        """Whether the log has a hash chain (format 2; format 1 logs get one with their next append)."""
        with self._duck.attached(self.path, read_only=True) as conn:
            return has_chain(conn)

    def chain_rows(self) -> tuple[list[tuple], list[tuple[int, str]]]:
        """Every events row as the chain hashes it, and the stored links (both in seq order)."""
        with self._duck.attached(self.path, read_only=True) as conn:
            rows = conn.execute(f"SELECT {ROW_COLUMNS} FROM events ORDER BY seq").fetchall()
            links = conn.execute("SELECT seq, hash FROM chain ORDER BY seq").fetchall() if has_chain(conn) else []
        return rows, links

    def chain_link(self, seq: int) -> str | None:
        """The chain hash stored for ``seq`` (None for a log without a chain, or no such link)."""
        with self._duck.attached(self.path, read_only=True) as conn:
            if not has_chain(conn):
                return None
            row = conn.execute("SELECT hash FROM chain WHERE seq = ?", [seq]).fetchall()
        return row[0][0] if row else None

    def chain_head(self) -> Head | None:
        """The last link of the chain (None for a log without one)."""
        with self._duck.attached(self.path, read_only=True) as conn:
            if not has_chain(conn):
                return None
            row = conn.execute("SELECT seq, hash FROM chain ORDER BY seq DESC LIMIT 1").fetchall()
        return Head(seq=row[0][0], hash=row[0][1]) if row else None

    def edit_versions(self) -> list[tuple[str, int, int]]:
        """The (edit_id, version, seq) index rows, in seq order."""
        with self._duck.attached(self.path, read_only=True) as conn:
            return conn.execute("SELECT edit_id, version, seq FROM edit_versions ORDER BY seq, edit_id").fetchall()

    def head_seq(self) -> int:
        """The seq of the last committed event (0 for an empty log)."""
        with self._duck.attached(self.path, read_only=True) as conn:
            return _head(conn)

    def count(self) -> int:
        with self._duck.attached(self.path, read_only=True) as conn:
            return conn.execute("SELECT count(*) FROM events").fetchall()[0][0]

    def header_values(self) -> dict:
        """The header table as a dict of JSON-decoded values."""
        with self._duck.attached(self.path, read_only=True) as conn:
            rows = conn.execute("SELECT key, value FROM header").fetchall()
        return {key: msgspec.json.decode(value) for key, value in rows}

    def header(self) -> StoreCreated:
        """The StoreCreated event this log was created with (model fingerprint and config)."""
        value = self.header_values().get("store_created")
        if value is None:
            raise IntegrityError(f"event log {self.path} has no header (store_created); the store is damaged")
        event = decode_event(msgspec.json.encode(value))
        if not isinstance(event, StoreCreated):
            raise IntegrityError(f"event log {self.path}: header holds a {event_kind(event)}, not StoreCreated")
        return event


def _head(conn: duckdb.DuckDBPyConnection) -> int:
    return conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchall()[0][0]


def _insert(conn: duckdb.DuckDBPyConnection, rows: list[tuple], versions: list[tuple], previous: str) -> None:
    """Batched inserts through DuckDB's appender: one statement per table per flush."""
    appender = conn.appender("events")
    appender.append_rows(rows)
    appender.flush()
    if versions:
        appender = conn.appender("edit_versions")
        appender.append_rows(versions)
        appender.flush()
    appender = conn.appender("chain")
    appender.append_rows(chain_links([row_for_link(row) for row in rows], previous))
    appender.flush()
