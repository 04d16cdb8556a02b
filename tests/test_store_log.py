"""The DuckDB event log: round trips, gap-free seq, atomic batches, schema guard, header."""

from __future__ import annotations

import re
from datetime import timezone
from pathlib import Path

import duckdb
import msgspec
import numpy as np
import pytest

from memlog.errors import IntegrityError, UserError
from memlog.store.events import (
    EditPruned,
    EditRefreshed,
    EditReverted,
    EventSchemaError,
    FactInjected,
    SCHEMA_VERSION,
    PerplexityMeasured,
    RecallAudited,
    SleepStarted,
    StoreCreated,
    encode_event,
)
from memlog.store.records import AuditResult, BlobRef, FactRecord, LayerDelta
from memlog.store.chain import link
from memlog.store.log import FORMAT_VERSION, EventLog, LoggedEvent
from memlog.store.store import Store, verify_store

HEADER = StoreCreated(
    model_id="tiny", model_source="test", fingerprint="sha256:abc", layers=[1, 2], dtype="float32", config={"lam": 0.1}
)


@pytest.fixture()
def store(tmp_path):
    with Store.create(tmp_path / "store", HEADER) as st:
        yield st


def _delta(store: Store, rng: np.random.Generator, layer: int) -> LayerDelta:
    return LayerDelta(
        layer=layer,
        u=store.blobs.put(rng.standard_normal((8, 1)).astype(np.float32)),
        v=store.blobs.put(rng.standard_normal((16, 1)).astype(np.float32)),
        keys=store.blobs.put(rng.standard_normal((16, 1)).astype(np.float32)),
    )


def _fact(i: int) -> FactRecord:
    return FactRecord(fact_id=f"f{i:04d}", subject=f"Person {i}", relation="lives in", object=f"City {i}")


def _inject(store: Store, edit_id: str, version: int = 1, seed: int = 0) -> FactInjected:
    rng = np.random.default_rng(seed)
    return FactInjected(
        edit_id=edit_id,
        version=version,
        fact=_fact(seed),
        deltas=[_delta(store, rng, 1), _delta(store, rng, 2)],
        v_loss=0.125,
        seconds=1.5,
        weights_sha256="ab" * 32,
    )


def test_append_read_roundtrip(store):
    inject = _inject(store, "e00001")
    events = [
        inject,
        RecallAudited(
            phase="wake",
            cycle=None,
            results=[AuditResult(fact_id="f0000", edit_id="e00001", recalled=True, completion=" City 0")],
            recall=1.0,
            degraded=0,
        ),
        SleepStarted(cycle=1, refresh_mode="in-place", cap=30, tau=0.5),
        EditRefreshed(
            edit_id="e00001", version=2, fact=inject.fact, deltas=inject.deltas, v_loss=0.5,
            n_constraint_keys=3, mode="in-place", cycle=1,
        ),
        EditReverted(edit_id="e00001", version=2, reason="test", cycle=1),
        PerplexityMeasured(ppl=12.345678901234567, phase="sleep-after", cycle=1, n_tokens=2048),
    ]
    logged = store.append(events)
    assert [le.seq for le in logged] == [2, 3, 4, 5, 6, 7]
    back = store.log.read()
    assert back[0].event == HEADER and back[0].seq == 1
    assert back[1:] == logged
    assert [le.event for le in back[1:]] == events
    assert all(le.ts.tzinfo is not None and le.ts.utcoffset().total_seconds() == 0 for le in back)
    # LoggedEvent survives msgspec JSON (the CLI prints it with --format json).
    raw = msgspec.json.encode(back[1])
    assert msgspec.json.decode(raw, type=LoggedEvent) == back[1]
    assert store.log.head_seq() == 7 and store.log.count() == 7


def test_query_columns_filled(store):
    store.append([_inject(store, "e00001"), SleepStarted(cycle=3, refresh_mode="copy", cap=5, tau=0.5)])
    with duckdb.connect(str(store.path / "log.duckdb"), read_only=True) as conn:
        rows = conn.execute("SELECT seq, kind, schema, edit_id, version, fact_id, cycle FROM events ORDER BY seq").fetchall()
        versions = conn.execute("SELECT edit_id, version, seq FROM edit_versions").fetchall()
    assert rows[1:] == [(2, "FactInjected", SCHEMA_VERSION, "e00001", 1, "f0000", None), (3, "SleepStarted", SCHEMA_VERSION, None, None, None, 3)]
    assert versions == [("e00001", 1, 2)]


def test_seq_gap_free_across_many_appends(store):
    rng = np.random.default_rng(1)
    expected = 1
    for i in range(25):
        batch = [PerplexityMeasured(ppl=float(rng.random()), phase="wake") for _ in range(int(rng.integers(1, 5)))]
        logged = store.append(batch)
        assert [le.seq for le in logged] == list(range(expected + 1, expected + 1 + len(batch)))
        expected += len(batch)
    assert [le.seq for le in store.log.read()] == list(range(1, expected + 1))
    assert store.log.head_seq() == expected
    assert store.append([]) == []
    assert store.log.head_seq() == expected


def test_read_filters(store):
    store.append([_inject(store, "e00001"), PerplexityMeasured(ppl=1.0, phase="wake"), EditPruned(edit_id="e00001", version=1, reason="cap")])
    assert [le.seq for le in store.log.read(since_seq=3)] == [3, 4]
    assert [le.seq for le in store.log.read(until_seq=2)] == [1, 2]
    assert [le.seq for le in store.log.read(since_seq=2, until_seq=3)] == [2, 3]
    assert [le.seq for le in store.log.read(kinds=["EditPruned", "StoreCreated"])] == [1, 4]
    assert store.log.read(until_seq=0) == []
    with pytest.raises(UserError, match="unknown event kind"):
        store.log.read(kinds=["NoSuchEvent"])


def test_duplicate_edit_version_rolls_back_whole_batch(store):
    store.append([_inject(store, "e00001")])
    head = store.log.head_seq()
    before = store.log.read()
    batch = [PerplexityMeasured(ppl=2.0, phase="wake"), _inject(store, "e00002", seed=2), _inject(store, "e00001", seed=3)]
    with pytest.raises(IntegrityError, match=r"edit e00001 v1 already exists .*seq 2"):
        store.append(batch)
    assert store.log.head_seq() == head
    assert store.log.read() == before
    assert store.log.edit_versions() == [("e00001", 1, 2)]
    # The same version twice inside one batch is refused too.
    with pytest.raises(IntegrityError, match="twice in one batch"):
        store.append([_inject(store, "e00009"), _inject(store, "e00009", seed=4)])
    assert store.log.head_seq() == head
    # A refresh must bump the version; v2 is accepted, then v2 again is refused.
    refresh = EditRefreshed(
        edit_id="e00001", version=2, fact=_fact(0), deltas=[], v_loss=0.0, n_constraint_keys=0, mode="in-place", cycle=1
    )
    store.append([refresh])
    with pytest.raises(IntegrityError, match="e00001 v2 already exists"):
        store.append([refresh])
    assert store.log.head_seq() == head + 1
    assert verify_store(store) == []


def test_primary_key_is_the_last_line_of_defence(store):
    """Even when the friendly pre-check is bypassed, DuckDB's key refuses and rolls back."""
    store.append([_inject(store, "e00001")])
    with duckdb.connect(str(store.path / "log.duckdb")) as conn:
        with pytest.raises(duckdb.ConstraintException):
            conn.execute("INSERT INTO edit_versions VALUES ('e00001', 1, 99)")
    assert store.log.edit_versions() == [("e00001", 1, 2)]


def test_newer_schema_row_gives_clear_error(store):
    store.append([PerplexityMeasured(ppl=3.0, phase="wake")])
    future = '{"kind":"PerplexityMeasured","ppl":3.0,"phase":"wake","cycle":null,"n_tokens":0,"schema":7,"extra":1}'
    with duckdb.connect(str(store.path / "log.duckdb")) as conn:
        conn.execute(
            "INSERT INTO events VALUES (3, now(), 'PerplexityMeasured', 7, NULL, NULL, NULL, NULL, ?)", [future]
        )
    rows, links = store.log.chain_rows()  # a future memlog also chains what it writes
    with duckdb.connect(str(store.path / "log.duckdb")) as conn:
        conn.execute("INSERT INTO chain VALUES (3, ?)", [link(links[-1][1], rows[-1])])
    with pytest.raises(EventSchemaError, match=rf"seq 3 .*schema version 7.*up to version {SCHEMA_VERSION}; upgrade memlog"):
        store.log.read()
    assert [le.seq for le in store.log.read(until_seq=2)] == [1, 2]
    problems = verify_store(store)
    assert len(problems) == 1 and "seq 3" in problems[0] and "schema version 7" in problems[0]


def test_header(store, tmp_path):
    assert store.log.header() == HEADER
    values = store.log.header_values()
    assert values["format"] == FORMAT_VERSION == 2 and values["fingerprint"] == "sha256:abc" and values["model_id"] == "tiny"
    assert store.log.read(until_seq=1)[0].event == HEADER
    reopened = EventLog.open(store.path / "log.duckdb")
    assert reopened.header() == HEADER
    with pytest.raises(UserError, match="already holds a memlog store"):
        Store.create(store.path, HEADER)
    with pytest.raises(UserError, match="already exists"):
        EventLog.create(store.path / "log.duckdb", HEADER)
    missing = tmp_path / "nowhere"
    with pytest.raises(UserError, match=re.escape(f"no memlog store at {missing}; create one with `memlog init --store {missing}`")):
        Store.open(missing)
    assert sorted(p.name for p in store.path.iterdir()) == ["HEAD", "LOCK", "deltas.zarr", "log.duckdb"]


def test_newer_format_refused(store):
    with duckdb.connect(str(store.path / "log.duckdb")) as conn:
        conn.execute("UPDATE header SET value = '99' WHERE key = 'format'")  # as a future memlog would write
    with pytest.raises(IntegrityError, match="format version 99"):
        EventLog.open(store.path / "log.duckdb")


def test_event_referencing_missing_blob_is_refused(store):
    inject = _inject(store, "e00001")
    ghost = BlobRef(sha256="0" * 64, shape=(16, 1), dtype="float32")
    bad_delta = LayerDelta(layer=3, u=inject.deltas[0].u, v=ghost, keys=inject.deltas[0].keys)
    bad = msgspec.structs.replace(inject, edit_id="e00002", deltas=[bad_delta])
    head = store.log.head_seq()
    with pytest.raises(IntegrityError, match=r"edit e00002 v1 .*references blob 0{64}.*write deltas before"):
        store.append([inject, bad])
    assert store.log.head_seq() == head
    # Without a blob store attached the log itself cannot check; the Store always attaches one.
    with pytest.raises(IntegrityError):
        store.log.append([bad], blobs=store.blobs)


def test_unreadable_event_refused_before_writing(store):
    head = store.log.head_seq()
    with pytest.raises(ValueError, match="would not decode back"):
        store.append([PerplexityMeasured(ppl=2.0, phase="wake"), PerplexityMeasured(ppl=float("nan"), phase="wake")])
    with pytest.raises(ValueError, match="StoreCreated is written once"):
        store.append([HEADER])
    assert store.log.head_seq() == head


def test_read_only_sql_cannot_modify(store):
    store.append([PerplexityMeasured(ppl=1.0, phase="wake")])
    with duckdb.connect(str(store.path / "log.duckdb"), read_only=True) as conn:
        for sql in ("DELETE FROM events", "UPDATE events SET kind = 'x'", "DROP TABLE events"):
            with pytest.raises(duckdb.Error, match="read-only"):
                conn.execute(sql)
    assert store.log.count() == 2


def test_append_needs_the_writer_lock(store):
    reader = Store.open(store.path, writable=False)
    with pytest.raises(UserError, match="writable"):
        reader.append([PerplexityMeasured(ppl=1.0, phase="wake")])


def test_store_code_never_updates_or_deletes_events():
    source = "\n".join(p.read_text() for p in (Path(__file__).parents[1] / "memlog" / "store").glob("*.py"))
    assert not re.search(r"UPDATE\s+events|DELETE\s+FROM\s+events", source, re.IGNORECASE)


def test_encoding_is_stable(store):
    event = _inject(store, "e00007", seed=7)
    store.append([event])
    (back,) = store.log.read(since_seq=2)
    assert encode_event(back.event) == encode_event(event)
    assert back.ts.tzinfo is not None and back.ts.astimezone(timezone.utc) == back.ts


def test_not_a_log(tmp_path):
    (tmp_path / "log.duckdb").write_text("garbage")
    with pytest.raises(IntegrityError, match="damaged or truncated"):
        EventLog.open(tmp_path / "log.duckdb")
    with duckdb.connect(str(tmp_path / "other.duckdb")):
        pass
    with pytest.raises(IntegrityError, match="not a memlog event log"):
        EventLog.open(tmp_path / "other.duckdb")


def test_verify_reports_gaps_and_index_mismatch(store):
    store.append([PerplexityMeasured(ppl=1.0, phase="wake")])
    payload = encode_event(PerplexityMeasured(ppl=2.0, phase="wake")).decode()
    with duckdb.connect(str(store.path / "log.duckdb")) as conn:
        conn.execute("INSERT INTO events VALUES (5, now(), 'PerplexityMeasured', 1, NULL, NULL, NULL, NULL, ?)", [payload])
        conn.execute("INSERT INTO edit_versions VALUES ('e00042', 1, 4)")
    assert verify_store(store) == [
        "seq gap: 2 is followed by 5 (missing 3..4)",
        "event seq 5 is not in the hash chain: it was added outside memlog",
        "edit_versions index lists edit e00042 v1 at seq 4, but no event creates it",
    ]
    # nothing is written on top of a log that was changed outside memlog
    with pytest.raises(IntegrityError, match="hash chain is broken"):
        store.append([PerplexityMeasured(ppl=3.0, phase="wake")])
    assert store.log.head_seq() == 5


def test_an_unknown_event_kind_says_a_newer_memlog_may_have_written_it():
    from memlog.store.events import decode_event

    with pytest.raises(EventSchemaError, match=r"unknown event kind 'Teleported' .*newer memlog.*upgrade memlog"):
        decode_event(b'{"kind":"Teleported","schema":2}')
