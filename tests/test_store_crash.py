"""Crash safety: a writer killed with SIGKILL at random moments never leaves a dangling event.

One store lives through all trials. Each trial starts ``tests/crash_writer.py`` on it, kills
it after a random (seeded) delay, and checks: the store opens writable (the kernel dropped
the flock), ``verify_store`` finds nothing wrong, every event the child reported as
committed is there byte for byte (the head may be one batch further: killed between commit
and print), only orphan blobs and tmp leftovers remain, and ``gc`` removes exactly those.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from memlog.store.events import StoreCreated, blob_refs, encode_event
from memlog.store.store import Store, gc, verify_store

REPO = Path(__file__).resolve().parents[1]
WRITER = Path(__file__).with_name("crash_writer.py")
HEADER = StoreCreated(model_id="tiny", model_source="test", fingerprint="sha256:abc", layers=[1, 2], dtype="float32", config={})
TRIALS = 20
MAX_BATCH = 2  # FactInjected, sometimes followed by an EditReverted


def _run_and_kill(store_dir: Path, seed: int, delay: float) -> list[tuple[int, str]]:
    """Start the writer, SIGKILL it ``delay`` s after it is ready; return the complete lines it printed."""
    child = subprocess.Popen(
        [sys.executable, str(WRITER), str(store_dir), str(seed)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
    )
    try:
        ready = child.stdout.readline()
        assert ready == b"ready\n", child.stderr.read().decode()
        time.sleep(delay)
    finally:
        child.send_signal(signal.SIGKILL)
        out, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, err.decode()
    complete = out.decode().split("\n")[:-1]  # a line cut off by the kill has no newline
    return [(int(seq), sha) for seq, sha in (line.split() for line in complete)]


def _referenced(store: Store) -> set[str]:
    return {ref.sha256 for le in store.log.read() for ref in blob_refs(le.event)}


def test_sigkill_never_leaves_a_dangling_event(tmp_path):
    store_dir = tmp_path / "store"
    Store.create(store_dir, HEADER).close()
    rng = random.Random(20260)
    reported: dict[int, str] = {}
    last_head = 1
    crashes_with_leftovers = 0
    for trial in range(TRIALS):
        lines = _run_and_kill(store_dir, seed=trial, delay=rng.uniform(0.0, 0.6))
        reported.update(lines)
        last_printed = lines[-1][0] if lines else last_head
        with Store.open(store_dir, writable=True) as store:
            assert verify_store(store) == [], f"trial {trial}"
            logged = store.log.read()
            head = logged[-1].seq
            assert [le.seq for le in logged] == list(range(1, head + 1))
            assert last_printed <= head <= last_printed + MAX_BATCH, f"trial {trial}: head {head}, printed {last_printed}"
            digests = {le.seq: hashlib.sha256(encode_event(le.event)).hexdigest() for le in logged}
            assert all(digests[seq] == sha for seq, sha in reported.items()), f"trial {trial}: a reported event changed"
            referenced = _referenced(store)
            assert referenced <= store.blobs.list_blobs()
            orphans = store.blobs.list_blobs() - referenced
            leftovers = store.blobs.list_tmp()
            crashes_with_leftovers += bool(orphans or leftovers)
            removed = gc(store)
            assert sorted(removed) == sorted([f"tmp/{n}" for n in leftovers] + [f"blob {s}" for s in orphans])
            assert store.blobs.list_blobs() == referenced and store.blobs.list_tmp() == []
            assert verify_store(store) == []
            last_head = head
    assert last_head > TRIALS  # the writer made progress between crashes
    print(f"{TRIALS} crashes, {last_head} events, {crashes_with_leftovers} crashes left orphans or tmp leftovers")
