"""``Memory``: the Python API over a store (the CLI is a thin layer over it).

``memlog.open(path)`` and ``memlog.init(path, ...)`` (``memlog.api``) return one; see the
class docstring for a tour.

Every change is an event. The engine folds each new event into its in-memory ledger at
once (so later steps of the same command see it), buffers it, and appends the buffer to
the log in one transaction per unit of work: one inject with its audit, one sleep cycle.
Blobs are written before the events that reference them. If anything fails mid-unit, the
buffer is dropped and the ledger and weights are rebuilt from the committed log.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

import msgspec
import numpy as np

from memlog.core.determinism import pinned
from memlog.core.facts import Fact
from memlog.engine.audit_measures import PROBED_PHASES, is_healthy, with_probes
from memlog.engine.config import EngineConfig
from memlog.engine.consolidate import DEFAULT_RTOL, ConsolidationReport, consolidate, revert_consolidation
from memlog.engine.ingest import InjectReport, inject_batch, inject_one, plan, stored_so_far
from memlog.engine.status import status_of
from memlog.engine.sleep import run_sleep
from memlog.errors import IntegrityError, UserError
from memlog.progress import ProgressFn, no_progress
from memlog.projections.facts import fact_of
from memlog.projections.ledger import Ledger
from memlog.replay import timeline
from memlog.replay.points import Point
from memlog.replay.replay import replay_report
from memlog.store.blobs import to_numpy
from memlog.store.deltas import read_factors, write_layer_delta
from memlog.store.events import EditReverted, Event, FactReleased, PerplexityMeasured, RecallAudited, SleepTriggered, StoreCreated, blob_refs
from memlog.store.records import AuditResult, LayerDelta
from memlog.store.store import Store

if TYPE_CHECKING:
    from memlog.core.memit import EditResult
    from memlog.engine.editor import Editor


class Memory:
    """A store opened with a model: the live weights are the projection of the log's head.

    Example (runs as is; the first ``init`` computes the layers' key covariances, later ones
    read them from the cache)::

        import memlog

        with memlog.init("my-memory") as mem:
            mem.inject([memlog.Fact("Aria Nakamura", "lives in", "Thessaloniki")])
            mem.sleep(cycles=1)
            print(mem.status()["active_facts"])                   # 1
            print(mem.recall("Aria Nakamura lives in", at="cycle=0")["completion"])
            print(mem.replay("cycle=1")["weights_match"])         # True: replay is exact

    Create one with ``memlog.init`` / ``memlog.open`` rather than the constructor. Leaving the
    ``with`` block (or ``close()``) releases the store and puts the base weights back.
    """

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
        """One unit of work: commit on success; on failure drop the buffer, rebuild from the log,
        and remove the blobs the unit wrote that no committed event references (a writer that
        gives up leaves nothing behind; after a crash, ``memlog gc`` removes them)."""
        mark = self.store.blobs.mark()
        try:
            yield
            self.commit()
        except BaseException:
            self._reload()
            self._drop_orphans(self.store.blobs.created_since(mark))
            raise

    def _drop_orphans(self, written: list[str]) -> None:
        referenced = {ref.sha256 for item in self.logged for ref in blob_refs(item.event)}
        for sha in written:
            if sha not in referenced:
                try:
                    self.store.blobs.remove(sha)
                except OSError:
                    return  # left for `memlog gc`

    @property
    def base_ppl(self) -> float | None:
        """The base model's perplexity, read when the store was created (None: not recorded)."""
        for item in self.logged:
            if isinstance(item.event, PerplexityMeasured) and item.event.phase == "base":
                return item.event.ppl
        return None

    def solve_settings(self, config: EngineConfig | None = None, refresh: bool = False) -> dict:
        """The settings new edits are solved with in this session (header, then overrides), as
        ``FactInjected.settings`` and (``refresh``) ``EditRefreshed.settings`` record them: a
        wake edit's mode and, when constrained, what it held; a refresh (always constrained)
        what it held; both MEMIT's λ, norm penalty and v* stop."""
        config = config or self.config
        memit = getattr(self.editor, "config", None)
        held = refresh or config.wake == "constrained"
        return {
            **({} if refresh else {"wake": config.wake}),
            "protect_positions": config.protect_positions if held else None,
            "protect_energy": config.protect_energy if held else None,
            "lam": getattr(memit, "solve_lam", None),
            "norm_penalty": getattr(memit, "norm_penalty", None),
            "v_stop": getattr(memit, "v_stop", None),
        }

    def write_deltas(self, result: "EditResult") -> list[LayerDelta]:
        """One packed blob per layer (written before the event that names it)."""
        return [
            write_layer_delta(self.store.blobs, layer, result.deltas[layer].u, result.deltas[layer].v, result.deltas[layer].keys)
            for layer in sorted(result.deltas)
        ]

    def write_stacked_deltas(self, previous: list[LayerDelta], result: "EditResult", columns: list[int] | None = None) -> list[LayerDelta]:
        """The previous version's factors with ``result``'s appended column-wise, per layer: the
        projection of the new version is the previous delta plus the correction, exactly.
        ``columns``: only those columns of a batched correction (one fact's share of it)."""
        old = {d.layer: read_factors(d, self.store.blobs.get) for d in previous}
        out = []
        for layer in sorted(result.deltas):
            f = result.deltas[layer]
            new = tuple(to_numpy(m) if columns is None else to_numpy(m)[:, columns] for m in (f.u, f.v, f.keys))
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
        batch_size: int = 1,
    ) -> InjectReport:
        """Wake injection with MEMIT, unconstrained or under the healthy facts' null space
        (``EngineConfig.wake``, ``memlog.engine.wake``). ``batch_size`` 1 (default): one fact at a
        time, each its own committed unit with its audit; B > 1: B new facts per MEMIT solve and
        one audit per batch (``memlog.engine.ingest``).

        Refuses (UserError) before any MEMIT run or blob write when the store is read-only or closed.
        The solves run with deterministic kernels (``pinned(None)``); projections pin one thread.
        """
        self.store.require_writable("inject")
        if batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {batch_size}")
        if self.config.ppl_budget is not None:
            self.config.check_budget(self.base_ppl)  # neither the wake guard nor an auto-sleep could run: refuse before any write
        with pinned(None):
            return self._inject(facts, audit, auto_sleep, progress, batch_size)

    def _inject(self, facts: list[Fact], audit: bool | None, auto_sleep: float | None, progress: ProgressFn, batch_size: int = 1) -> InjectReport:
        audit = self.config.audit_after_inject if audit is None else audit
        auto_sleep = self.config.auto_sleep if auto_sleep is None else auto_sleep
        report = InjectReport()
        for kind, step in plan(self.ledger, facts, batch_size):
            progress("inject", len(report.facts), len(facts))
            try:
                if kind == "batch" and len(step) > 1:
                    outcomes = inject_batch(self, step, audit)
                else:
                    outcomes = [inject_one(self, step[0], audit)]
                report.facts.extend(outcomes)
                if audit and self.ledger.last_audit is not None:
                    report.recall, report.degraded = self.ledger.last_audit.recall, self.ledger.last_audit.degraded
                changed = any(o.status != "duplicate" for o in outcomes)
                if auto_sleep is not None and changed and self.ledger.pressure() > auto_sleep:
                    with self.unit():
                        self.emit(SleepTriggered(pressure=self.ledger.pressure(), threshold=auto_sleep))
                    report.sleeps.append(self.sleep(until_converged=True, progress=progress))
            except UserError as exc:
                if not report.facts:
                    raise
                raise type(exc)(f"{exc} {stored_so_far(report, len(facts), self.head_seq)}") from exc
        progress("inject", len(facts), len(facts))
        report.seq = self.head_seq
        return report

    # -- audit ---------------------------------------------------------------------------------

    def record_audit(self, phase: str, cycle: int | None, degraded_by: str = "exact", tau: float | None = None) -> RecallAudited:
        """Audit every active fact (one batched greedy pass) and emit the result; its recall and
        degraded count are by ``degraded_by`` (``memlog.engine.audit_measures.is_healthy``)."""
        start = time.perf_counter()
        states = self.ledger.active_facts()
        facts = [fact_of(s.fact) for s in states]
        results = self.editor.audit(facts)
        rows = [AuditResult(fact_id=s.fact.fact_id, edit_id=s.edit_id, recalled=r.recalled, completion=r.completion) for s, r in zip(states, results)]
        means = {}
        if phase in PROBED_PHASES and rows:
            rows, means = with_probes(rows, self.editor.probes(facts, [[n.before for n in s.fact.neighbours] for s in states]))
        tau = self.config.tau if tau is None else tau
        hits = sum(is_healthy(r, degraded_by, tau) for r in rows)
        event = RecallAudited(
            phase=phase,
            cycle=cycle,
            results=rows,
            recall=hits / len(rows) if rows else 1.0,
            degraded=len(rows) - hits,
            seconds=time.perf_counter() - start,
            degraded_by=degraded_by,
            **means,
        )
        return self.emit(event)

    def audit(self) -> RecallAudited:
        self.store.require_writable("audit")
        with self.unit():
            event = self.record_audit("manual", None)
        return event

    def revert(self, edit_id: str, reason: str = "manual") -> int:
        """Take an edit's current version out of the weights (an event; the fact stays, degraded)."""
        self.store.require_writable("revert")
        entry = self.ledger.entries.get(edit_id)
        if entry is None:
            known = ", ".join(sorted(self.ledger.entries)[:10]) or "none"
            raise UserError(f"no edit {edit_id!r} in the ledger (known: {known}); see `memlog log --kind FactInjected`")
        if not entry.applied:
            raise UserError(f"edit {edit_id} v{entry.version} is already reverted")
        with self.unit():
            self.emit(EditReverted(edit_id=edit_id, version=entry.version, reason=reason, cycle=None), project=True)
        return self.head_seq

    def release(self, edit_id: str, reason: str = "manual") -> int:
        """Stop looking after an active fact and leave its edit in the weights (``FactReleased``:
        no longer audited, protected or refreshed; nothing moves). A new inject supersedes it."""
        self.store.require_writable("release")
        entry = self.ledger.entries.get(edit_id)
        state = self.ledger.facts.get(entry.fact_id) if entry is not None else None
        if state is None or not state.active or state.edit_id != edit_id or self.config.refresh_mode != "in-place":
            raise UserError(f"edit {edit_id!r} does not hold an active fact of an in-place store; see `memlog status` and `memlog log`")
        with self.unit():
            self.emit(FactReleased(edit_id=edit_id, version=entry.version, reason=reason, cycle=None))
        return self.head_seq

    def consolidate(self, rtol: float | None = None, progress: ProgressFn = no_progress, joint: bool = False, lam: float | None = None) -> ConsolidationReport:
        """Project the applied edits through one factor pair per layer (``memlog.engine.consolidate``):
        their truncated SVD, or with ``joint`` their re-solve from the base weights at λ ``lam``
        (None: the store's; ``memlog.engine.joint``). ``rtol`` None: ``DEFAULT_RTOL``."""
        with pinned(None):
            return consolidate(self, DEFAULT_RTOL if rtol is None else rtol, progress, joint=joint, lam=lam)

    def revert_consolidation(self, consolidation_id: str | None = None) -> dict:
        """Give a consolidation's members back their own factors in the projection (bit-exact)."""
        return revert_consolidation(self, consolidation_id)

    # -- sleep ---------------------------------------------------------------------------------

    def sleep(self, cycles: int | None = None, until_converged: bool = False, progress: ProgressFn = no_progress, **overrides):
        """Run sleep cycles (``memlog.engine.sleep``): ``cycles`` of them, or until two clean cycles
        in a row with ``until_converged``; ``overrides`` change the engine policy for this call
        (``None``: as configured; ``memlog.OFF`` switches a setting off, e.g. ``stale_after``)."""
        self.store.require_writable("sleep")
        config = self.config.with_overrides(**overrides)
        if config.ppl_budget is not None:  # base_ppl scans the log: only when a budget needs it
            config.check_budget(self.base_ppl)  # before any event is written
        with pinned(None):
            return run_sleep(self, config, cycles=cycles, until_converged=until_converged, progress=progress)

    # -- reading -------------------------------------------------------------------------------

    def status(self) -> dict:
        """The store's model, layers, fact counts, last recall, pressure, cycle and head seq."""
        return status_of(self.header, self.ledger, self.store.path, self.events())

    def point_seq(self, at: str | Point | None) -> int:
        """The seq a point of the log (``"cycle=3"``, ``"seq=120"``, a time) resolves to; ``None`` is the head."""
        return timeline.point_seq(self.logged, at, self.head_seq)

    def ledger_at(self, seq: int) -> Ledger:
        """The ledger folded from the committed log up to and including ``seq``."""
        return timeline.ledger_at(self.logged, seq)

    def weights_at(self, at: str | Point | int | None):
        """Project the weights as they were at ``at`` for the duration of a ``with`` block, then
        restore the head; the block gets (seq, ledger there, weights sha256)."""
        seq = at if isinstance(at, int) else self.point_seq(at)
        return timeline.weights_at(self.projector, self.logged, seq, self.project)

    def recall(self, prompt: str, at: str | Point | None = None, max_new_tokens: int = 8) -> dict:
        """Greedy completion of ``prompt`` on the weights at ``at`` (default: the head)."""
        if not prompt.strip():
            raise UserError("the prompt is empty; pass the text to complete, e.g. 'Aria Nakamura lives in'")
        with self.weights_at(at) as (seq, ledger, _):
            completion = self.editor.complete([prompt], max_new_tokens)[0]
        return {"prompt": prompt, "completion": completion, "seq": seq, "cycle": ledger.cycle}

    def replay(self, until: str | Point, verify: bool = False) -> dict:
        """Rebuild the weights at ``until`` and list every fact known then (``memlog.replay.replay``)."""
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
