"""The single-writer lock: a second writer is refused with the holder's PID; kill -9 frees it;
readers are never blocked by a writer that is busy computing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from memlog.errors import StoreLockedError
from memlog.store.events import PerplexityMeasured, StoreCreated
from memlog.store.lock import WriterLock
from memlog.store.store import Store

HEADER = StoreCreated(model_id="tiny", model_source="test", fingerprint="sha256:abc", layers=[1], dtype="float32", config={})
REPO = Path(__file__).resolve().parents[1]


def _python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kwargs,
    )


TRY_WRITE = """
    import sys
    from memlog.errors import StoreLockedError
    from memlog.store.store import Store
    try:
        Store.open(sys.argv[1], writable=True)
    except StoreLockedError as exc:
        print(exc)
        sys.exit(2)
    print("acquired")
"""

HOLD_WRITE = """
    import sys, time
    from memlog.store.events import PerplexityMeasured
    from memlog.store.store import Store
    store = Store.open(sys.argv[1], writable=True)
    store.append([PerplexityMeasured(ppl=5.0, phase="wake")])
    print("holding", flush=True)
    time.sleep(60)  # a long computation (a sleep cycle) while holding the writer lock
"""


@pytest.fixture()
def store_dir(tmp_path):
    Store.create(tmp_path / "store", HEADER).close()
    return tmp_path / "store"


def test_second_writer_in_subprocess_is_refused_with_pid(store_dir):
    with Store.open(store_dir, writable=True):
        child = _python(TRY_WRITE, str(store_dir))
        out, err = child.communicate(timeout=60)
        assert child.returncode == 2, err
        assert out.strip() == (
            f"store {store_dir} is locked by PID {os.getpid()} (another memlog process is writing); wait for it to finish"
        )
    child = _python(TRY_WRITE, str(store_dir))
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0 and out.strip() == "acquired", err


def test_kill_9_frees_the_lock_and_readers_are_not_blocked(store_dir):
    child = _python(HOLD_WRITE, str(store_dir))
    try:
        assert child.stdout.readline().strip() == "holding"
        with pytest.raises(StoreLockedError, match=f"locked by PID {child.pid} "):
            Store.open(store_dir, writable=True)
        # A reader (memlog status) works while the writer holds the lock and computes.
        start = time.monotonic()
        reader = Store.open(store_dir, writable=False)
        assert [le.event for le in reader.log.read(since_seq=2)] == [PerplexityMeasured(ppl=5.0, phase="wake")]
        assert time.monotonic() - start < 5
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    with Store.open(store_dir, writable=True) as store:
        assert store.writable
        store.append([PerplexityMeasured(ppl=6.0, phase="wake")])
        assert store.log.head_seq() == 3


def test_lock_in_process(tmp_path):
    first = WriterLock(tmp_path)
    with first:
        assert first.held
        assert (tmp_path / "LOCK").read_text().strip() == str(os.getpid())
        with pytest.raises(StoreLockedError, match=f"PID {os.getpid()}"):
            WriterLock(tmp_path).acquire()
    assert not first.held
    second = WriterLock(tmp_path).acquire()
    second.release()
    second.release()  # idempotent
    first.acquire()
    with pytest.raises(RuntimeError):
        first.acquire()
    first.release()


def test_store_close_releases(store_dir):
    store = Store.open(store_dir, writable=True)
    with pytest.raises(StoreLockedError):
        Store.open(store_dir, writable=True)
    store.close()
    assert not store.writable
    Store.open(store_dir, writable=True).close()


HOLD_DUCKDB = """
    import sys, time, duckdb
    conn = duckdb.connect(sys.argv[1])  # a writer in the middle of a (slow) append
    conn.begin()
    print("open", flush=True)
    time.sleep(float(sys.argv[2]))
    conn.rollback()
    conn.close()
"""


def test_reader_retries_while_the_log_file_is_busy(store_dir):
    child = _python(HOLD_DUCKDB, str(store_dir / "log.duckdb"), "0.7")
    try:
        assert child.stdout.readline().strip() == "open"
        start = time.monotonic()
        assert Store.open(store_dir).log.head_seq() == 1
        waited = time.monotonic() - start
    finally:
        child.communicate(timeout=30)
    assert 0.2 < waited < 10
