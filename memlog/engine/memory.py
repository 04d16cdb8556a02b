"""``Memory``: the Python API over a store (the CLI is a thin layer over it).

    mem = Memory.open("memlog-store")            # loads the model the store was made for
    mem.inject([Fact("Aria Nakamura", "lives in", "Thessaloniki")])
    mem.sleep(until_converged=True)
    mem.status(); mem.recall("Aria Nakamura lives in", at="cycle=1"); mem.replay("cycle=1")

Every change is an event. The engine folds each new event into its in-memory ledger at
once (so later steps of the same command see it), buffers it, and appends the buffer to
the log in one transaction per unit of work: one inject with its audit, one sleep cycle.
Blobs are written before the events that reference them. If anything fails mid-unit, the
buffer is dropped and the ledger and weights are rebuilt from the committed log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np
import torch

from typing import TYPE_CHECKING

from memlog.core.facts import Fact
from memlog.engine.audit_measures import PROBED_PHASES, probe_means, with_probes
from memlog.engine.config import EngineConfig
from memlog.errors import IntegrityError, ModelMismatchError, UserError
from memlog.projections.ledger import Ledger
from memlog.replay.points import Point, parse_point, resolve_point
from memlog.store.events import (
    AuditResult,
    CovarianceComputed,
    EditReverted,
    Event,
    FactInjected,
    FactRecord,
    LayerDelta,
    NeighbourProbe,
    RecallAudited,
    SleepTriggered,
    StoreCreated,
)
from memlog.store.blobs import to_numpy
from memlog.store.deltas import read_factors, write_layer_delta
from memlog.store.store import Store

if TYPE_CHECKING:
    from memlog.core.memit import EditResult, MemitConfig
    from memlog.engine.editor import Editor

ProgressFn = Callable[[str, int, int], None]


def no_progress(description: str, done: int, total: int) -> None:
    """A ``ProgressFn`` that shows nothing."""
    return None


@dataclass
class InjectOutcome:
    fact_id: str
    edit_id: str
    status: str  # "injected", "updated" or "duplicate"
    recalled: bool | None
    v_loss: float | None
    seconds: float
    seq: int


@dataclass
class InjectReport:
    facts: list[InjectOutcome] = field(default_factory=list)
    seq: int = 0
    recall: float | None = None
    degraded: int | None = None
    sleeps: list = field(default_factory=list)


def record_of(fact: Fact, neighbours_before: list[str] | None = None) -> FactRecord:
    """The stored form of ``fact``, its probes included; ``neighbours_before`` are the greedy
    completions of its neighbourhood prompts just before its edit (default: those it carries)."""
    before = neighbours_before or [n.before for n in fact.neighbours]
    return FactRecord(
        fact_id=fact.fact_id,
        subject=fact.subject,
        relation=fact.relation,
        object=fact.object,
        paraphrases=list(fact.paraphrases),
        neighbours=[NeighbourProbe(prompt=n.prompt, answer=n.answer, before=b) for n, b in zip(fact.neighbours, before)],
    )


def fact_of(record: FactRecord) -> Fact:
    return Fact.of(record)


class Memory:
    """A store opened with a model: the live weights are the projection of the log's head."""

    def __init__(self, store: Store, editor: "Editor", projector, config: EngineConfig | None = None):
        self.store = store
        self.editor = editor
        self.projector = projector
        self.header: StoreCreated = store.log.header()
        self.config = config or EngineConfig.from_dict(self.header.config.get("engine", {}))
        self._pending: list[Event] = []
        self._reload()

    # -- state -------------------------------------------------------------------------------

    def _reload(self) -> None:
        """Fold the committed log and project its head onto the model."""
        self._pending = []
        self.logged = self.store.log.read()
        self.ledger = Ledger.fold([(item.seq, item.event) for item in self.logged])
        self._next_seq = self.ledger.head_seq + 1
        self.project()

    def project(self) -> str:
        return self.projector.project(self.ledger.applied_entries())

    @property
    def head_seq(self) -> int:
        return self._next_seq - 1

    def emit(self, event: Event, project: bool = False) -> Event:
        """Fold ``event`` into the ledger now and buffer it for the next commit.

        With ``project``, the weights are rebuilt after the fold and the event records their hash.
        """
        seq = self._next_seq
        self.ledger.apply(seq, event)
        if project:
            sha = self.project()
            event = msgspec.structs.replace(event, weights_sha256=sha)
            self.ledger.last_weights_sha256 = sha
        self._pending.append(event)
        self._next_seq += 1
        return event

    def events(self) -> list[Event]:
        """Every event so far: the committed log, then the ones buffered in the current unit."""
        return [item.event for item in self.logged] + list(self._pending)

    def commit(self) -> int:
        if not self._pending:
            return self.head_seq
        expected_first = self.store.log.head_seq() + 1
        logged = self.store.append(self._pending)
        if logged and logged[0].seq != expected_first or len(logged) != len(self._pending):
            raise IntegrityError("the log's seq moved under this writer; reopen the store")
        self.logged.extend(logged)
        self._pending = []
        return self.head_seq

    @contextmanager
    def unit(self):
        """One unit of work: commit on success; on failure drop the buffer and rebuild from the log."""
        try:
            yield
            self.commit()
        except BaseException:
            self._reload()
            raise

    def write_deltas(self, result: "EditResult") -> list[LayerDelta]:
        """One packed blob per layer (written before the event that names it)."""
        return [
            write_layer_delta(self.store.blobs, layer, result.deltas[layer].u, result.deltas[layer].v, result.deltas[layer].keys)
            for layer in sorted(result.deltas)
        ]

    def write_stacked_deltas(self, previous: list[LayerDelta], result: "EditResult") -> list[LayerDelta]:
        """The previous version's factors with ``result``'s appended column-wise, per layer: the
        projection of the new version is the previous delta plus the correction, exactly."""
        old = {d.layer: read_factors(d, self.store.blobs.get) for d in previous}
        out = []
        for layer in sorted(result.deltas):
            new = (to_numpy(result.deltas[layer].u), to_numpy(result.deltas[layer].v), to_numpy(result.deltas[layer].keys))
            if layer in old:
                new = tuple(np.concatenate([before, after], axis=1) for before, after in zip(old[layer], new))
            out.append(write_layer_delta(self.store.blobs, layer, *new))
        return out

    # -- wake ----------------------------------------------------------------------------------

    def inject(
        self,
        facts: list[Fact],
        audit: bool | None = None,
        auto_sleep: float | None = None,
        progress: ProgressFn = no_progress,
    ) -> InjectReport:
        """Wake injection: unconstrained MEMIT, one fact at a time, each its own committed unit."""
        audit = self.config.audit_after_inject if audit is None else audit
        auto_sleep = self.config.auto_sleep if auto_sleep is None else auto_sleep
        report = InjectReport()
        for i, fact in enumerate(facts):
            progress("inject", i, len(facts))
            outcome = self._inject_one(fact, audit)
            report.facts.append(outcome)
            if audit and self.ledger.last_audit is not None:
                report.recall, report.degraded = self.ledger.last_audit.recall, self.ledger.last_audit.degraded
            if auto_sleep is not None and outcome.status != "duplicate" and self.ledger.pressure() > auto_sleep:
                with self.unit():
                    self.emit(SleepTriggered(pressure=self.ledger.pressure(), threshold=auto_sleep))
                report.sleeps.append(self.sleep(until_converged=True, progress=progress))
        progress("inject", len(facts), len(facts))
        report.seq = self.head_seq
        return report

    def _inject_one(self, fact: Fact, audit: bool) -> InjectOutcome:
        start = time.perf_counter()
        state = self.ledger.facts.get(fact.fact_id)
        if state is not None and state.active and state.fact.object == fact.object:
            return InjectOutcome(fact.fact_id, state.edit_id, "duplicate", None, None, 0.0, self.head_seq)
        with self.unit():
            if state is not None and state.active:
                entry = self.ledger.entries[state.edit_id]
                others = [e for e in self.ledger.applied_entries() if e.edit_id != entry.edit_id]
                self.projector.project(others)  # the update is computed without the superseded object
                edit_id, version, supersedes = entry.edit_id, entry.version + 1, entry.version
            else:
                edit_id, version, supersedes = self.ledger.next_edit_id(), 1, None
            before = self.editor.neighbour_completions([n.prompt for n in fact.neighbours]) if fact.neighbours else None
            result = self.editor.edit([fact])
            self.emit(
                FactInjected(
                    edit_id=edit_id,
                    version=version,
                    fact=record_of(fact, before),
                    deltas=self.write_deltas(result),
                    v_loss=float(result.v_loss),
                    supersedes_version=supersedes,
                    seconds=time.perf_counter() - start,
                ),
                project=True,
            )
            recalled = None
            if audit:
                self.record_audit("wake", None)
                mark = self.ledger.facts[fact.fact_id].last_audit
                recalled = mark.recalled if mark else None
        if recalled is None:
            recalled = self.editor.audit([fact])[0].recalled
        status = "updated" if supersedes is not None else "injected"
        return InjectOutcome(fact.fact_id, edit_id, status, recalled, float(result.v_loss), time.perf_counter() - start, self.head_seq)

    # -- audit ---------------------------------------------------------------------------------

    def record_audit(self, phase: str, cycle: int | None) -> RecallAudited:
        """Audit every active fact (one batched greedy pass) and emit the result."""
        start = time.perf_counter()
        states = self.ledger.active_facts()
        facts = [fact_of(s.fact) for s in states]
        results = self.editor.audit(facts)
        rows = [AuditResult(fact_id=s.fact.fact_id, edit_id=s.edit_id, recalled=r.recalled, completion=r.completion) for s, r in zip(states, results)]
        means = {}
        if phase in PROBED_PHASES and rows:
            rows, means = with_probes(rows, self.editor.probes(facts, [[n.before for n in s.fact.neighbours] for s in states]))
        hits = sum(r.recalled for r in rows)
        event = RecallAudited(
            phase=phase,
            cycle=cycle,
            results=rows,
            recall=hits / len(rows) if rows else 1.0,
            degraded=len(rows) - hits,
            seconds=time.perf_counter() - start,
            **means,
        )
        return self.emit(event)

    def audit(self) -> RecallAudited:
        with self.unit():
            event = self.record_audit("manual", None)
        return event

    def revert(self, edit_id: str, reason: str = "manual") -> int:
        """Take an edit's current version out of the weights (an event; the fact stays, degraded)."""
        entry = self.ledger.entries.get(edit_id)
        if entry is None:
            known = ", ".join(sorted(self.ledger.entries)[:10]) or "none"
            raise UserError(f"no edit {edit_id!r} in the ledger (known: {known}); see `memlog log --kind FactInjected`")
        if not entry.applied:
            raise UserError(f"edit {edit_id} v{entry.version} is already reverted")
        with self.unit():
            self.emit(EditReverted(edit_id=edit_id, version=entry.version, reason=reason, cycle=None), project=True)
        return self.head_seq

    # -- sleep ---------------------------------------------------------------------------------

    def sleep(self, cycles: int | None = None, until_converged: bool = False, progress: ProgressFn = no_progress, **overrides):
        from memlog.engine.sleep import run_sleep

        config = self.config.with_overrides(**overrides)
        return run_sleep(self, config, cycles=cycles, until_converged=until_converged, progress=progress)

    # -- reading -------------------------------------------------------------------------------

    def status(self) -> dict:
        return status_of(self.header, self.ledger, self.store.path, self.events())

    def point_seq(self, at: str | Point | None) -> int:
        if at is None:
            return self.head_seq
        point = parse_point(at) if isinstance(at, str) else at
        return resolve_point(point, self.logged)

    def ledger_at(self, seq: int) -> Ledger:
        return Ledger.fold([(item.seq, item.event) for item in self.logged if item.seq <= seq])

    @contextmanager
    def weights_at(self, at: str | Point | int | None):
        """Project the weights as they were at ``at`` for the duration of the block, then restore the head."""
        seq = at if isinstance(at, int) else self.point_seq(at)
        ledger = self.ledger_at(seq)
        try:
            sha = self.projector.project(ledger.applied_entries())
            yield seq, ledger, sha
        finally:
            self.project()

    def recall(self, prompt: str, at: str | Point | None = None, max_new_tokens: int = 8) -> dict:
        if not prompt.strip():
            raise UserError("the prompt is empty; pass the text to complete, e.g. 'Aria Nakamura lives in'")
        with self.weights_at(at) as (seq, ledger, _):
            completion = self.editor.complete([prompt], max_new_tokens)[0]
        return {"prompt": prompt, "completion": completion, "seq": seq, "cycle": ledger.cycle}

    def replay(self, until: str | Point, verify: bool = False) -> dict:
        from memlog.replay.replay import replay_report

        return replay_report(self, until, verify)

    def close(self, restore_base: bool = True) -> None:
        """Release the store; by default put the base weights back into the (possibly shared) model."""
        if restore_base:
            self.projector.project([])
        self.store.close()

    def __enter__(self) -> "Memory":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def status_of(header: StoreCreated, ledger: Ledger, store_path: Path, events=()) -> dict:
    """The store's state; with its ``events``, also the latest probe-audit means."""
    audit = ledger.last_audit
    return {
        "store": str(store_path),
        "model": header.model_id,
        "model_source": header.model_source,
        "fingerprint": header.fingerprint,
        "layers": list(header.layers),
        "active_facts": len(ledger.active_facts()),
        "ledger_size": ledger.ledger_size(),
        "recall": audit.recall if audit else None,
        "degraded": audit.degraded if audit else None,
        "audited_facts": len(audit.results) if audit else 0,
        "audit_seq": ledger.last_audit_seq,
        "pressure": ledger.pressure(),
        "cycle": ledger.cycle,
        "seq": ledger.head_seq,
        **probe_means(events),
    }


def covariances_from_log(store: Store, logged) -> dict[int, torch.Tensor]:
    covs: dict[int, torch.Tensor] = {}
    for item in logged:
        if isinstance(item.event, CovarianceComputed):
            covs[item.event.layer] = torch.from_numpy(store.blobs.get(item.event.cov).copy())
    return covs


def check_fingerprint(header: StoreCreated, actual: str, model_desc: str) -> None:
    if header.fingerprint != actual:
        raise ModelMismatchError(
            f"the store was created for model {header.model_id!r} (fingerprint {header.fingerprint[:19]}…), "
            f"but {model_desc} has fingerprint {actual[:19]}…; open it with the model it was made for"
        )


def memit_config_of(header: StoreCreated) -> "MemitConfig":
    from memlog.core.memit import MemitConfig

    data = dict(header.config.get("memit", {}))
    data["layers"] = tuple(header.layers)
    known = set(MemitConfig.__dataclass_fields__)
    return MemitConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known})
