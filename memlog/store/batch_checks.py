"""Checks on a batch of events before the log appends it: no (edit_id, version) created twice,
every referenced blob already stored, and the error naming an edit version the log already holds.
"""

from __future__ import annotations

from typing import Sequence

import duckdb

from memlog.errors import IntegrityError
from memlog.store.events import Event, blob_refs, edit_key, event_kind



def batch_edit_keys(events: Sequence[Event]) -> list[tuple[str, int]]:
    """The (edit_id, version) pairs the batch creates; a repeat inside the batch is refused."""
    keys: list[tuple[str, int]] = []
    seen: set[tuple[str, int]] = set()
    for event in events:
        key = edit_key(event)
        if key is None:
            continue
        if key in seen:
            raise IntegrityError(
                f"edit {key[0]} v{key[1]} is created twice in one batch; nothing from the batch was written"
            )
        seen.add(key)
        keys.append(key)
    return keys


def require_blobs(events: Sequence[Event], blobs) -> None:
    """Every blob an event names must already be in the blob store (deltas before events)."""
    for index, event in enumerate(events):
        for ref in blob_refs(event):
            if not blobs.exists(ref):
                key = edit_key(event)
                what = f"edit {key[0]} v{key[1]}" if key else event_kind(event)
                raise IntegrityError(
                    f"{what} (event {index + 1} of the batch) references blob {ref.sha256}, which is not "
                    "in the blob store; write deltas before the event that names them. Nothing was written"
                )


def existing_keys(conn: duckdb.DuckDBPyConnection, keys: list[tuple[str, int]]) -> list[tuple[str, int, int]]:
    """Which of ``keys`` the log already holds, as (edit_id, version, seq)."""
    if not keys:
        return []
    return conn.execute(
        "SELECT v.edit_id, v.version, v.seq FROM edit_versions v "
        "JOIN (SELECT unnest(?::VARCHAR[]) AS edit_id, unnest(?::INTEGER[]) AS version) k "
        "USING (edit_id, version) ORDER BY v.seq",
        [[k[0] for k in keys], [k[1] for k in keys]],
    ).fetchall()


def refused(existing: list[tuple[str, int, int]], batch_size: int, exc: Exception) -> IntegrityError:
    if existing:
        edit_id, version, seq = existing[0]
        return IntegrityError(
            f"edit {edit_id} v{version} already exists in the log (seq {seq}); an edit version is created "
            f"once. Nothing from the batch of {batch_size} events was written"
        )
    return IntegrityError(f"append refused, nothing from the batch of {batch_size} events was written: {exc}")
