"""A memlog store on disk: the event log, the blob store and the writer lock, together.

Layout of a store directory::

    <store>/log.duckdb     the append-only event log (EventLog)
    <store>/deltas.zarr/   delta factors, keys and covariances (BlobStore)
    <store>/LOCK           the writer lock (WriterLock); holds the writer's PID
    <store>/HEAD           the head of the log's hash chain after the last commit (memlog.store.chain)

``Store.open(dir, writable=True)`` takes the writer lock and keeps it until ``close()``;
readers (``writable=False``) take no lock; a writable open first checks the log's hash chain
and head file and refuses (ChainBrokenError) when stored events were changed or removed.
``verify_store`` lists integrity problems and
``gc`` removes blobs that no event references (the leftovers of a crash between writing
a delta and committing its event).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

from memlog.errors import IntegrityError, UserError
from memlog.store.blobs import BlobStore
from memlog.store.chain import ChainBrokenError, chain_problems, head_path, head_problems, read_head, write_head
from memlog.store.events import (
    CovarianceComputed,
    EditRefreshed,
    Event,
    EventSchemaError,
    FactInjected,
    StoreCreated,
    blob_refs,
    edit_key,
)
from memlog.store.lock import LOCK_NAME, WriterLock
from memlog.store.log import EventLog, LoggedEvent, RawRow

LOG_NAME = "log.duckdb"
BLOBS_NAME = "deltas.zarr"


def is_store(path: Path | str) -> bool:
    """Whether ``path`` holds a memlog store (its event log exists)."""
    return (Path(path) / LOG_NAME).is_file()


class Store:
    """An opened store. ``.log`` is the EventLog, ``.blobs`` the BlobStore, ``.path`` the directory."""

    def __init__(self, path: Path, log: EventLog, blobs: BlobStore, lock: WriterLock | None):
        self._path = path
        self._log = log
        self._blobs = blobs
        self._lock = lock
        self._closed = False

    def __repr__(self) -> str:
        mode = "writable" if self.writable else "read-only"
        return f"Store({str(self._path)!r}, {mode})"

    # --------------------------------------------------------------- opening

    @staticmethod
    def exists(path: Path | str) -> bool:
        """Whether ``path`` holds a memlog store."""
        return is_store(path)

    @classmethod
    def create(cls, path: Path | str, header: StoreCreated) -> "Store":
        """Create a store in ``path`` (made if missing) and return it opened writable.

        Refuses (UserError) when ``path`` already holds a store.
        """
        path = Path(path)
        if is_store(path):
            raise UserError(f"{path} already holds a memlog store; use it, or pass another --store directory")
        path.mkdir(parents=True, exist_ok=True)
        lock = WriterLock(path).acquire()
        try:
            if is_store(path):  # created by another process while we took the lock
                raise UserError(f"{path} already holds a memlog store; use it, or pass another --store directory")
            blobs = BlobStore(path / BLOBS_NAME)
            log = EventLog.create(path / LOG_NAME, header)
            write_head(path, log.chain_head())
        except BaseException:
            lock.release()
            raise
        return cls(path, log, blobs, lock)

    def discard(self, remove_dir: bool) -> None:
        """Close, then delete everything ``create`` wrote (and the directory itself when
        ``remove_dir``): for a store whose first unit failed, so that no half-made store stays
        behind to refuse the next ``init``."""
        self.close()
        head_path(self._path).unlink(missing_ok=True)
        for name in (LOG_NAME, LOG_NAME + ".wal", LOCK_NAME):
            (self._path / name).unlink(missing_ok=True)
        shutil.rmtree(self._path / BLOBS_NAME, ignore_errors=True)
        if remove_dir:
            try:
                self._path.rmdir()
            except OSError:  # something else appeared in it: leave it
                pass

    @classmethod
    def open(cls, path: Path | str, writable: bool = False) -> "Store":
        """Open an existing store; ``writable`` takes the writer lock (StoreLockedError if held)."""
        path = Path(path)
        if not is_store(path):
            raise UserError(f"no memlog store at {path}; create one with `memlog init --store {path}`")
        lock = WriterLock(path).acquire() if writable else None
        try:
            if not (path / BLOBS_NAME / "zarr.json").is_file():
                raise IntegrityError(f"store {path} has an event log but no {BLOBS_NAME}/; the store is damaged")
            log = EventLog.open(path / LOG_NAME)
            blobs = BlobStore(path / BLOBS_NAME)
            if writable:
                _refuse_broken_chain(path, log)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        return cls(path, log, blobs, lock)

    def close(self) -> None:
        """Release the writer lock (if held). The log and blobs hold nothing else open."""
        self._closed = True
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------ properties

    @property
    def path(self) -> Path:
        return self._path

    @property
    def log(self) -> EventLog:
        return self._log

    @property
    def blobs(self) -> BlobStore:
        return self._blobs

    @property
    def writable(self) -> bool:
        return self._lock is not None and self._lock.held

    @property
    def closed(self) -> bool:
        return self._closed

    def require_writable(self, what: str) -> None:
        """UserError unless this store is open with the writer lock (checked before any work)."""
        if self._closed:
            raise UserError(f"{what} needs an open store, but {self._path} was closed; open it again")
        if not self.writable:
            raise UserError(f"{what} needs the store opened writable (the writer lock): {self._path}")

    # ----------------------------------------------------------------- write

    def append(self, events: Sequence[Event]) -> list[LoggedEvent]:
        """Append events under the writer lock, refusing any that name a blob not yet stored."""
        self.require_writable("appending events")
        logged = self._log.append(events, blobs=self._blobs)
        if logged:
            write_head(self._path, self._log.chain_head())
        return logged


def chain_check(path: Path, log: EventLog) -> list[str]:
    """Problems the hash chain and the head file show (stored events changed, added or removed)."""
    rows, links = log.chain_rows()
    recorded = read_head(path)
    if not links:
        if recorded is not None:
            return [f"the log has no hash chain, but {head_path(path)} records one: the chain was removed"]
        return []  # a log written before the chain existed
    return chain_problems(rows, links) + head_problems(recorded, links, path)


def _refuse_broken_chain(path: Path, log: EventLog) -> None:
    problems = chain_check(path, log)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise ChainBrokenError(
            f"refusing to write to {path}: {problems[0]}{more}; run `memlog verify --store {path}` and restore "
            "the store from a backup"
        )


# ------------------------------------------------------------------ verification


def _seq_problems(rows: list[RawRow]) -> list[str]:
    problems = []
    expected = 1
    for row in rows:
        if row.seq != expected:
            if expected == 1:
                problems.append(f"the log starts at seq {row.seq}, not 1")
            else:
                problems.append(f"seq gap: {expected - 1} is followed by {row.seq} (missing {expected}..{row.seq - 1})")
        expected = row.seq + 1
    return problems


def _decode_rows(rows: list[RawRow]) -> tuple[list[tuple[int, Event]], list[str]]:
    events, problems = [], []
    for row in rows:
        try:
            events.append((row.seq, row.decode()))
        except EventSchemaError as exc:
            problems.append(f"event seq {row.seq} cannot be decoded: {exc}")
    return events, problems


def _header_problems(store: Store, events: list[tuple[int, Event]]) -> list[str]:
    problems = []
    header = None
    try:
        header = store.log.header()
    except (IntegrityError, EventSchemaError) as exc:
        problems.append(f"header missing or unreadable: {exc}")
    first = events[0][1] if events and events[0][0] == 1 else None
    if not events:
        problems.append("the log holds no events (StoreCreated is missing)")
    elif first is not None and not isinstance(first, StoreCreated):
        problems.append(f"event seq 1 is {type(first).__name__}, not StoreCreated")
    elif header is not None and first is not None and first != header:
        problems.append("the header and the StoreCreated event at seq 1 disagree")
    return problems


def _edit_index_problems(
    events: list[tuple[int, Event]], index: list[tuple[str, int, int]], undecodable: set[int]
) -> list[str]:
    problems = []
    created: dict[tuple[str, int], int] = {}
    for seq, event in events:
        key = edit_key(event)
        if key is None:
            continue
        if key in created:
            problems.append(f"edit {key[0]} v{key[1]} is created twice (seq {created[key]} and seq {seq})")
        else:
            created[key] = seq
    indexed = {(edit_id, version): seq for edit_id, version, seq in index}
    for key, seq in created.items():
        if indexed.get(key) != seq:
            problems.append(f"edit {key[0]} v{key[1]} (seq {seq}) is missing from the edit_versions index")
    for key, seq in indexed.items():
        if key not in created and seq not in undecodable:
            problems.append(f"edit_versions index lists edit {key[0]} v{key[1]} at seq {seq}, but no event creates it")
    return problems


def _blob_problems(events: list[tuple[int, Event]], blobs: BlobStore) -> list[str]:
    problems = []
    checked: dict[str, str | None] = {}

    def check(ref) -> str | None:
        if ref.sha256 not in checked:
            checked[ref.sha256] = blobs.check(ref)
        return checked[ref.sha256]

    for seq, event in events:
        if isinstance(event, (FactInjected, EditRefreshed)):
            for delta in event.deltas:
                for factor, ref in delta.refs():
                    problem = check(ref)
                    if problem:
                        problems.append(
                            f"edit {event.edit_id} v{event.version} layer {delta.layer}: {problem} [{factor}, seq {seq}]"
                        )
            problem = check(event.target) if event.target is not None else None
            if problem:
                problems.append(f"edit {event.edit_id} v{event.version} target: {problem} [seq {seq}]")
        elif isinstance(event, CovarianceComputed):
            problem = check(event.cov)
            if problem:
                problems.append(f"covariance of layer {event.layer}: {problem} [seq {seq}]")
        else:
            for ref in blob_refs(event):
                problem = check(ref)
                if problem:
                    problems.append(f"event seq {seq}: {problem}")
    return problems


def verify_store(store: Store) -> list[str]:
    """Integrity problems of the store as human-readable strings; an empty list means intact.

    Checks: the header, gap-free seq from 1, the hash chain and the head file, every event
    decodes, the edit_versions index agrees with the events, and every referenced blob
    exists with the right shape, dtype and sha256.
    """
    rows = store.log.read_raw()
    events, decode_problems = _decode_rows(rows)
    problems = _header_problems(store, events)
    problems += _seq_problems(rows)
    problems += chain_check(store.path, store.log)
    problems += decode_problems
    undecodable = {row.seq for row in rows} - {seq for seq, _event in events}
    problems += _edit_index_problems(events, store.log.edit_versions(), undecodable)
    problems += _blob_problems(events, store.blobs)
    return problems


# ---------------------------------------------------------------------------- gc


def referenced_blobs(store: Store) -> set[str]:
    """The sha256 of every blob some event references. Raises if any event is unreadable,
    because then the set would be incomplete."""
    rows = store.log.read_raw()
    events, problems = _decode_rows(rows)
    if problems:
        raise IntegrityError(
            "cannot tell which blobs are in use: " + "; ".join(problems) + ". Nothing was removed"
        )
    return {ref.sha256 for _seq, event in events for ref in blob_refs(event)}


def gc(store: Store) -> list[str]:
    """Remove blobs that no event references and leftover temporary writes.

    Needs the writer lock (no writer can be between writing a delta and committing its
    event). Returns what was removed, e.g. ``["tmp/5c1e…", "blob 3fa2…"]``.
    """
    store.require_writable("gc")
    referenced = referenced_blobs(store)
    removed = [f"tmp/{name}" for name in store.blobs.remove_tmp()]
    for sha in sorted(store.blobs.list_blobs() - referenced):
        store.blobs.remove(sha)
        removed.append(f"blob {sha}")
    return removed
