"""A long read never blocks a writer, and a writer that gives up leaves no blobs behind."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from memlog.core.facts import Fact
from memlog.errors import StoreLockedError
from tests.fakes import fake_memory

HOLD_A_QUERY = """
import sys, time
from memlog.analytics.connection import connect
with connect(sys.argv[1]) as conn:
    conn.execute("SELECT count(*) FROM log.events").fetchall()
    print("reading", flush=True)
    time.sleep(60)  # a query that runs for a minute
"""


def test_a_long_sql_read_does_not_block_a_writer(tmp_path):
    path = tmp_path / "s"
    mem = fake_memory(path)
    mem.inject([Fact("Aria Nakamura", "lives in", "Porto")])
    mem.close()
    reader = subprocess.Popen([sys.executable, "-c", HOLD_A_QUERY, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "reading"
        start = time.monotonic()
        mem = fake_memory(path)
        report = mem.inject([Fact("Bo Lindqvist", "lives in", "Lyon")])
        mem.close()
        elapsed = time.monotonic() - start
        assert report.facts[0].status == "injected"
        assert elapsed < 10, f"the writer waited {elapsed:.1f} s for the reader"  # the lock wait is 15 s
        assert reader.poll() is None  # the reader is still in its query
    finally:
        reader.kill()
        reader.wait()


def test_a_writer_that_gives_up_leaves_no_blobs(tmp_path, monkeypatch):
    mem = fake_memory(tmp_path / "s")
    mem.inject([Fact("Aria Nakamura", "lives in", "Porto")])
    blobs_before = mem.store.blobs.list_blobs()
    head = mem.head_seq

    def busy(events):
        raise StoreLockedError("event log stayed busy for 15 s (another process has it open)")

    monkeypatch.setattr(mem.store, "append", busy)
    with pytest.raises(StoreLockedError):
        mem.inject([Fact("Bo Lindqvist", "lives in", "Lyon")])
    assert mem.store.blobs.created_since(0)  # the failed inject did write its delta first
    assert mem.store.blobs.list_blobs() == blobs_before and mem.store.blobs.list_tmp() == []
    monkeypatch.undo()
    assert mem.head_seq == head
    report = mem.inject([Fact("Bo Lindqvist", "lives in", "Lyon")])  # and the writer carries on
    assert report.facts[0].status == "injected" and len(mem.store.blobs.list_blobs()) > len(blobs_before)
    mem.close()
