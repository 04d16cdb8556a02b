"""A writer that test_store_crash.py kills with SIGKILL at a random moment.

Usage: ``python tests/crash_writer.py STORE_DIR SEED``. Opens the store writable, prints
``ready``, then loops forever: writes U/V/keys blobs for a fake two-layer edit, appends a
FactInjected that references them (sometimes together with an EditReverted of an earlier
edit), and prints one line per committed event, ``<seq> <sha256 of its encoding>``,
flushed after each append. Whatever the parent reads is therefore known to be committed.
"""

from __future__ import annotations

import hashlib
import sys

import numpy as np

from memlog.store.events import EditReverted, FactInjected, encode_event
from memlog.store.records import FactRecord, LayerDelta
from memlog.store.store import Store

D_OUT, D_IN = 48, 96


def _delta(store: Store, rng: np.random.Generator, layer: int) -> LayerDelta:
    return LayerDelta(
        layer=layer,
        u=store.blobs.put(rng.standard_normal((D_OUT, 1)).astype(np.float32)),
        v=store.blobs.put(rng.standard_normal((D_IN, 1)).astype(np.float32)),
        keys=store.blobs.put(rng.standard_normal((D_IN, 1)).astype(np.float32)),
    )


def _batch(store: Store, rng: np.random.Generator, edit_id: str, injected: list[str]) -> list:
    fact = FactRecord(fact_id=f"f-{edit_id}", subject=f"Subject {edit_id}", relation="lives in", object="Porto")
    batch = [FactInjected(edit_id=edit_id, version=1, fact=fact, deltas=[_delta(store, rng, 1), _delta(store, rng, 2)], v_loss=0.5)]
    if injected and rng.random() < 0.3:
        victim = injected[int(rng.integers(len(injected)))]
        batch.append(EditReverted(edit_id=victim, version=1, reason="crash-test"))
    return batch


def main(store_dir: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    store = Store.open(store_dir, writable=True)
    injected = [le.event.edit_id for le in store.log.read(kinds=["FactInjected"])]
    print("ready", flush=True)
    while True:
        edit_id = f"e{store.log.head_seq() + 1:05d}"  # seqs are unique, so are these ids
        logged = store.append(_batch(store, rng, edit_id, injected))
        injected.append(edit_id)
        lines = [f"{le.seq} {hashlib.sha256(encode_event(le.event)).hexdigest()}" for le in logged]
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
