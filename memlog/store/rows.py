"""Row conversions between events and the log's ``events`` table.

``encode_checked`` turns an event into its payload JSON (refusing one that would not decode
back), ``event_row`` builds the ``events`` row (the payload plus the columns copied out of it
for querying), and ``decode_row`` turns a stored payload back into an event, naming the seq
when it cannot.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from memlog.store.events import (
    SCHEMA_VERSION,
    Event,
    EventSchemaError,
    decode_event,
    encode_event,
    event_kind,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def utc_from_epoch_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def epoch_us(ts: datetime) -> int:
    """Microseconds since the epoch, exactly (DuckDB's ``epoch_us(ts)``)."""
    return (ts - _EPOCH) // timedelta(microseconds=1)


def _fact_id(event: Event) -> str | None:
    fact = getattr(event, "fact", None)
    if fact is not None and hasattr(fact, "fact_id"):
        return fact.fact_id
    return getattr(event, "fact_id", None)


def encode_checked(event: Event) -> str:
    """The event's JSON, after making sure it decodes back to the very same bytes.

    An event that cannot be read back (NaN or inf floats encode as null, for instance)
    would make the log unreadable, so it is refused before anything is written.
    """
    if not isinstance(event, Event):
        raise TypeError(f"not an event: {event!r}")
    raw = encode_event(event)
    try:
        back = encode_event(decode_event(raw))
    except EventSchemaError as exc:
        raise ValueError(f"{event_kind(event)} event would not decode back from the log: {exc}") from exc
    if back != raw:
        raise ValueError(f"{event_kind(event)} event does not survive an encode/decode round trip")
    return raw.decode()


def event_row(seq: int, ts: datetime, event: Event, payload: str) -> tuple:
    return (
        seq,
        ts,
        event_kind(event),
        event.schema,
        getattr(event, "edit_id", None),
        getattr(event, "version", None),
        _fact_id(event),
        getattr(event, "cycle", None),
        payload,
    )


def decode_row(seq: int, schema: int, kind: str, payload: str) -> Event:
    """Decode one payload; errors name the seq (and the schema version when it is newer)."""
    if schema > SCHEMA_VERSION:
        raise EventSchemaError(
            f"event seq {seq} ({kind}) was written with schema version {schema}, but this memlog "
            f"understands up to version {SCHEMA_VERSION}; upgrade memlog"
        )
    try:
        return decode_event(payload)
    except EventSchemaError as exc:
        raise EventSchemaError(f"event seq {seq}: {exc}") from exc
