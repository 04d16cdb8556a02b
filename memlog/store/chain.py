"""Tamper evidence for the event log: a hash chain over the events and a head file beside it.

Every events row has a link in the log's ``chain(seq, hash)`` table: the sha256 of the
previous link's hash and the row's own columns (seq, commit time, kind, schema, the query
columns and the payload). Changing any stored event (a fact's text, say) breaks its link;
deleting one from the middle breaks the next link. Deleting the *last* events leaves a
consistent chain, so each commit also writes the head of the chain to ``<store>/HEAD``, a
small JSON file outside the log; a log that ends before the head recorded there lost events.

The chain is not a signature: someone who can rewrite the whole log and the head file can
forge both. It makes edits with a SQL tool, or a lost tail of the log, visible to
``memlog verify`` and refuses writes on top of them.

Logs written before the chain existed have no ``chain`` table; they stay readable and
replay as before, and their first write adds the chain over all their events.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import duckdb
import msgspec

from memlog.errors import IntegrityError
from memlog.store.rows import epoch_us

GENESIS = "0" * 64
HEAD_NAME = "HEAD"
ROW_COLUMNS = "seq, epoch_us(ts), kind, schema, edit_id, version, fact_id, cycle, payload"

CHAIN_DDL = "CREATE TABLE chain (seq BIGINT PRIMARY KEY, hash VARCHAR NOT NULL);"


class ChainBrokenError(IntegrityError):
    """The log's hash chain or head file shows that stored events were changed or removed."""


def link(previous: str, row: tuple) -> str:
    """The chain hash of one events row (``ROW_COLUMNS`` order, time in epoch microseconds)."""
    body = json.dumps([previous, *row], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def row_for_link(event_row: tuple) -> tuple:
    """An ``event_row`` tuple (time as a datetime) in the form ``link`` hashes."""
    seq, ts, *rest = event_row
    return (seq, epoch_us(ts), *rest)


def chain_links(rows: list[tuple], previous: str = GENESIS) -> list[tuple[int, str]]:
    """(seq, hash) for ``rows`` in order, continuing from ``previous``."""
    out = []
    for row in rows:
        previous = link(previous, row)
        out.append((row[0], previous))
    return out


def chain_problems(rows: list[tuple], links: list[tuple[int, str]]) -> list[str]:
    """What the stored links say about the stored rows (both in seq order).

    Each link is checked against the previous *stored* link, so one changed event is
    reported once, not as a cascade.
    """
    problems = []
    stored = dict(links)
    seqs = {row[0] for row in rows}
    for seq in sorted(set(stored) - seqs):
        problems.append(f"event seq {seq} is in the hash chain but not in the log: it was deleted")
    previous_seq = None
    for row in rows:
        seq = row[0]
        if seq not in stored:
            problems.append(f"event seq {seq} is not in the hash chain: it was added outside memlog")
        else:
            previous = GENESIS if seq == 1 else stored.get(seq - 1, stored.get(previous_seq, GENESIS))
            if link(previous, row) != stored[seq]:
                problems.append(
                    f"event seq {seq} does not match its link in the hash chain: its stored content, "
                    "or the event before it, was changed or removed"
                )
        previous_seq = seq
    return problems


# ------------------------------------------------------------- in the log's transaction


def has_chain(conn: duckdb.DuckDBPyConnection) -> bool:
    return bool(
        conn.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() AND table_name = 'chain'"
        ).fetchall()[0][0]
    )


def chain_tip(conn: duckdb.DuckDBPyConnection, head: int, path: Path, format_version: int) -> str:
    """The hash the next link continues from, after checking the last link.

    Run inside an append's transaction, with ``head`` the last event's seq. A format 1 log
    gets its chain here, over all its events (in the append's transaction).
    """
    if not has_chain(conn):
        rows = conn.execute(f"SELECT {ROW_COLUMNS} FROM events ORDER BY seq").fetchall()
        conn.execute(CHAIN_DDL)
        links = chain_links(rows)
        if links:
            conn.executemany("INSERT INTO chain VALUES (?, ?)", links)
        conn.execute("UPDATE header SET value = ? WHERE key = 'format'", [str(format_version)])
        return links[-1][1] if links else GENESIS
    n_events, n_links, last_link = conn.execute(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM chain), (SELECT coalesce(max(seq), 0) FROM chain)"
    ).fetchall()[0]
    refuse = f"; run `memlog verify --store {path.parent}`. Nothing was written"
    if n_events != n_links or last_link != head:
        raise ChainBrokenError(
            f"the event log's hash chain is broken: {n_events} events but {n_links} links (last link seq "
            f"{last_link}, last event seq {head}){refuse}"
        )
    if head == 0:
        return GENESIS
    (row,) = conn.execute(f"SELECT {ROW_COLUMNS} FROM events WHERE seq = ?", [head]).fetchall()
    tip, before = conn.execute(
        "SELECT (SELECT hash FROM chain WHERE seq = ?), "
        "(SELECT hash FROM chain WHERE seq < ? ORDER BY seq DESC LIMIT 1)",
        [head, head],
    ).fetchall()[0]
    if link(before or GENESIS, row) != tip:
        raise ChainBrokenError(f"the event log's hash chain is broken at its last event, seq {head}{refuse}")
    return tip


# -------------------------------------------------------------------- the head file


class Head(msgspec.Struct, frozen=True):
    seq: int
    hash: str


def head_path(store_dir: Path) -> Path:
    return Path(store_dir) / HEAD_NAME


def read_head(store_dir: Path) -> Head | None:
    """The head recorded by the last commit; None when there is no head file."""
    path = head_path(store_dir)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return msgspec.json.decode(raw, type=Head)
    except msgspec.DecodeError as exc:
        raise ChainBrokenError(f"{path} is unreadable ({exc}); the store's head record is damaged") from exc


def write_head(store_dir: Path, head: Head) -> None:
    """Replace the head file atomically (written after each commit)."""
    path = head_path(store_dir)
    fd, tmp = tempfile.mkstemp(prefix=".HEAD-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(msgspec.json.encode(head))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def head_problems(recorded: Head | None, links: list[tuple[int, str]], store_dir: Path) -> list[str]:
    """Compare the log's chain with the head file.

    A log *ahead* of the head file is what a crash between a commit and the head write
    leaves, and is accepted when the link at the recorded seq matches. A log that ends
    before the recorded seq lost its last events.
    """
    if not links:
        return []
    last_seq = links[-1][0]
    if recorded is None:
        if last_seq > 1:
            return [f"{head_path(store_dir)} is missing, so a removal of the log's last events cannot be ruled out"]
        return []
    stored = dict(links)
    if recorded.seq > last_seq:
        return [
            f"the log ends at seq {last_seq}, but {HEAD_NAME} records seq {recorded.seq}: "
            f"the last {recorded.seq - last_seq} event(s) were removed"
        ]
    if stored.get(recorded.seq) != recorded.hash:
        return [f"event seq {recorded.seq} does not match the head recorded in {HEAD_NAME}: the log was rewritten"]
    return []
