"""Hypothesis state machine over the event log: append random valid batches (and batches that
must fail atomically) and compare with a plain in-memory list after every step.

Properties: seq is gap-free from 1; events already read never change (byte-identical payload
and timestamp); ``read(until_seq=s)`` is the model's prefix; a batch with a duplicate
(edit_id, version) or a missing blob writes nothing.

Speed: every example starts from a copy of a freshly created store's log, and all examples
share one blob pool (``deltas.zarr`` is a symlink to it). Blobs are content-addressed and
write-once, so sharing them cannot leak state between examples; the log is what is tested.
Stores live in RAM (/dev/shm) where available: this test is about the log's logic, not
about fsync, which the crash test covers on a real disk.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from memlog.errors import IntegrityError
from memlog.store.events import (
    CovarianceComputed,
    EditPruned,
    EditRefreshed,
    EditReverted,
    Event,
    FactInjected,
    PerplexityMeasured,
    RecallAudited,
    RefreshRolledBack,
    SleepEnded,
    SleepStarted,
    SleepTriggered,
    StoreCreated,
    edit_key,
    encode_event,
)
from memlog.store.records import AuditResult, BlobRef, FactRecord, LayerDelta
from memlog.store.store import Store

HEADER = StoreCreated(model_id="tiny", model_source="test", fingerprint="sha256:abc", layers=[1, 2], dtype="float32", config={})
D_OUT, D_IN = 4, 6
POOL_SEEDS = 15  # factor seeds 0..14 are pre-written to the pool; seed 15 means "a fresh blob"


def _factor_array(seed: int, rows: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, 1)).astype(np.float32)


def _tmp_parent() -> str | None:
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


@functools.lru_cache(maxsize=1)
def _template() -> Path:
    """A created store (its log is copied per example) with a pre-filled blob pool."""
    root = Path(tempfile.mkdtemp(prefix="memlog-stateful-template-", dir=_tmp_parent()))
    atexit.register(shutil.rmtree, root, True)
    with Store.create(root / "store", HEADER) as store:
        for seed in range(POOL_SEEDS):
            store.blobs.put(_factor_array(seed, D_OUT))
            store.blobs.put(_factor_array(seed, D_IN))
    return root / "store"


def _fresh_store(dest: Path) -> Store:
    template = _template()
    dest.mkdir()
    shutil.copyfile(template / "log.duckdb", dest / "log.duckdb")
    (dest / "deltas.zarr").symlink_to(template / "deltas.zarr", target_is_directory=True)
    return Store.open(dest, writable=True)


floats = st.floats(allow_nan=False, allow_infinity=False)
small_text = st.text(max_size=12)
cycles = st.none() | st.integers(0, 50)


class EventLogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="memlog-stateful-", dir=_tmp_parent()))
        self.store = _fresh_store(self.dir / "store")
        self.model: list[bytes] = [encode_event(HEADER)]  # encoding of the event at seq i+1
        self.first_read: dict[int, tuple[object, bytes]] = {}  # seq -> (ts, bytes) when first read
        self.versions: dict[str, int] = {}  # edit_id -> highest version created
        self.facts: dict[str, FactRecord] = {}

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---------------------------------------------------------------- builders

    def _factor(self, seed: int, rows: int) -> BlobRef:
        return self.store.blobs.put(_factor_array(seed, rows))

    def _deltas(self, data) -> list[LayerDelta]:
        layers = data.draw(st.lists(st.sampled_from([1, 2]), min_size=1, max_size=2, unique=True))
        # mostly pooled factors (shared between edits, as content addressing allows), sometimes a new one
        seeds = st.integers(0, POOL_SEEDS).flatmap(
            lambda s: st.just(s) if s < POOL_SEEDS else st.integers(POOL_SEEDS, 2**32)
        )
        return [
            LayerDelta(layer=layer, u=self._factor(data.draw(seeds), D_OUT), v=self._factor(data.draw(seeds), D_IN),
                       keys=self._factor(data.draw(seeds), D_IN))
            for layer in layers
        ]

    def _new_fact(self, data, versions: dict[str, int]) -> FactInjected:
        edit_id = f"e{len(versions) + 1:05d}"
        fact = FactRecord(fact_id=f"f{len(versions):04d}", subject=data.draw(small_text), relation="lives in", object=data.draw(small_text))
        self.facts[edit_id] = fact
        versions[edit_id] = 1
        return FactInjected(edit_id=edit_id, version=1, fact=fact, deltas=self._deltas(data), v_loss=data.draw(floats),
                            seconds=data.draw(floats), weights_sha256=data.draw(st.sampled_from(["", "ab" * 32])))

    def _next_version(self, data, versions: dict[str, int]) -> Event:
        edit_id = data.draw(st.sampled_from(sorted(versions)))
        versions[edit_id] += 1
        version = versions[edit_id]
        if data.draw(st.booleans()):
            return EditRefreshed(edit_id=edit_id, version=version, fact=self.facts[edit_id], deltas=self._deltas(data),
                                 v_loss=data.draw(floats), n_constraint_keys=data.draw(st.integers(0, 40)),
                                 mode="in-place", cycle=data.draw(cycles))
        return FactInjected(edit_id=edit_id, version=version, fact=self.facts[edit_id], deltas=self._deltas(data),
                            v_loss=data.draw(floats), supersedes_version=version - 1)

    def _about_edit(self, data, versions: dict[str, int]) -> Event:
        edit_id = data.draw(st.sampled_from(sorted(versions)))
        version = data.draw(st.integers(1, versions[edit_id]))
        kind = data.draw(st.sampled_from([EditReverted, EditPruned, RefreshRolledBack]))
        if kind is RefreshRolledBack:
            return RefreshRolledBack(edit_id=edit_id, version=version, ppl_before=data.draw(floats),
                                     ppl_after=data.draw(floats), cycle=data.draw(cycles))
        return kind(edit_id=edit_id, version=version, reason=data.draw(small_text), cycle=data.draw(cycles))

    def _other(self, data) -> Event:
        choice = data.draw(st.sampled_from(["audit", "ppl", "sleep", "trigger", "end", "cov"]))
        if choice == "audit":
            results = [AuditResult(fact_id=f.fact_id, edit_id=e, recalled=data.draw(st.booleans()), completion=data.draw(small_text))
                       for e, f in sorted(self.facts.items())[:4]]
            return RecallAudited(phase="wake", cycle=data.draw(cycles), results=results, recall=data.draw(floats), degraded=len(results))
        if choice == "ppl":
            return PerplexityMeasured(ppl=data.draw(floats), phase="wake", cycle=data.draw(cycles), n_tokens=data.draw(st.integers(0, 4096)))
        if choice == "sleep":
            return SleepStarted(cycle=data.draw(st.integers(0, 50)), refresh_mode="in-place", cap=30, tau=data.draw(floats))
        if choice == "trigger":
            return SleepTriggered(pressure=data.draw(floats), threshold=data.draw(floats))
        if choice == "cov":
            return CovarianceComputed(layer=1, cov=self._factor(data.draw(st.integers(0, POOL_SEEDS - 1)), D_IN), n_samples=200,
                                      n_tokens=data.draw(st.integers(0, 10**6)), corpus_sha256="cd" * 32)
        return SleepEnded(cycle=1, recall_before=0.7, recall_after=data.draw(floats), degraded_before=3, degraded_after=0,
                          refreshed=3, reverted=0, pruned=0, rolled_back=0, ledger_size=30, active_facts=30,
                          ppl_before=10.0, ppl_after=data.draw(floats), seconds=1.0, step_seconds={"audit": data.draw(floats)})

    def _batch(self, data, versions: dict[str, int]) -> list[Event]:
        batch = []
        for _ in range(data.draw(st.integers(1, 4))):
            options = ["new", "other"] + (["version", "about"] if versions else [])
            choice = data.draw(st.sampled_from(options))
            if choice == "new":
                batch.append(self._new_fact(data, versions))
            elif choice == "version":
                batch.append(self._next_version(data, versions))
            elif choice == "about":
                batch.append(self._about_edit(data, versions))
            else:
                batch.append(self._other(data))
        return batch

    # ------------------------------------------------------------------- rules

    def _check_prefix(self, data) -> None:
        s = data.draw(st.integers(0, len(self.model) + 2), label="until_seq")
        assert [encode_event(le.event) for le in self.store.log.read(until_seq=s)] == self.model[:s]

    @rule(data=st.data())
    def append_batch(self, data):
        """Mostly valid batches; sometimes one that must be refused as a whole."""
        mode = data.draw(st.sampled_from(["valid", "valid", "valid", "duplicate", "repeat", "ghost"]), label="mode")
        if mode == "duplicate" and self.versions:
            self._refused_duplicate_version(data)
        elif mode == "repeat":
            self._refused_repeat_inside_batch(data)
        elif mode == "ghost":
            self._refused_missing_blob(data)
        else:
            self._valid(data)

    def _valid(self, data):
        versions = dict(self.versions)
        batch = self._batch(data, versions)
        logged = self.store.append(batch)
        assert [le.seq for le in logged] == list(range(len(self.model) + 1, len(self.model) + 1 + len(batch)))
        self.model.extend(encode_event(e) for e in batch)
        self.versions = versions
        self._check_prefix(data)

    def _refused_duplicate_version(self, data):
        versions = dict(self.versions)
        batch = self._batch(data, versions)
        edit_id = data.draw(st.sampled_from(sorted(self.versions)))
        version = data.draw(st.integers(1, self.versions[edit_id]))  # already in the log
        dup = FactInjected(edit_id=edit_id, version=version, fact=self.facts[edit_id], deltas=self._deltas(data), v_loss=0.0)
        batch.insert(data.draw(st.integers(0, len(batch))), dup)
        with pytest.raises(IntegrityError, match=f"edit {edit_id} v{version} "):
            self.store.append(batch)
        self._check_prefix(data)

    def _refused_repeat_inside_batch(self, data):
        versions = dict(self.versions)
        batch = self._batch(data, versions)
        created = [e for e in batch if edit_key(e) is not None]
        if not created:
            batch.append(self._new_fact(data, versions))
            created = batch[-1:]
        batch.append(data.draw(st.sampled_from(created)))
        with pytest.raises(IntegrityError, match="twice in one batch"):
            self.store.append(batch)

    def _refused_missing_blob(self, data):
        versions = dict(self.versions)
        batch = self._batch(data, versions)
        ghost = BlobRef(sha256=data.draw(st.sampled_from(["0", "f"])) * 64, shape=(D_IN, 1), dtype="float32")
        delta = LayerDelta(layer=1, u=self._factor(0, D_OUT), v=ghost, keys=self._factor(1, D_IN))
        edit_id = f"e{len(versions) + 1:05d}"
        fact = FactRecord(fact_id="ghost", subject="g", relation="r", object="o")
        batch.insert(data.draw(st.integers(0, len(batch))), FactInjected(edit_id=edit_id, version=1, fact=fact, deltas=[delta], v_loss=0.0))
        with pytest.raises(IntegrityError, match="not in the blob store"):
            self.store.append(batch)

    # -------------------------------------------------------------- invariants

    @invariant()
    def log_equals_model_and_never_changes(self):
        logged = self.store.log.read()
        assert [le.seq for le in logged] == list(range(1, len(self.model) + 1))
        assert [encode_event(le.event) for le in logged] == self.model
        for le in logged:
            seen = (le.ts, encode_event(le.event))
            assert self.first_read.setdefault(le.seq, seen) == seen


TestEventLogStateful = EventLogMachine.TestCase
TestEventLogStateful.settings = settings(
    max_examples=300,
    stateful_step_count=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
