"""Batched wake ingestion: B new facts per MEMIT solve, one audit per batch.

``Memory.inject(facts, batch_size=B)`` with B > 1 groups the new facts into batches of B
(``plan``); each batch is one committed unit:

1. one MEMIT solve for the whole batch (``Editor.edit``: v* is one batched optimisation with a
   per-fact early stop, then one N-key least-squares solve per layer), under the protection
   ``memlog.engine.wake.wake_plan`` decides for the batch (none: unconstrained wake; a stored
   fact sharing a batch fact's subject is edited with it and its column kept by that fact);
2. one ``FactInjected`` per fact, in input order, each holding *its share* of the batch's
   update: with ``ΔW_l = U Vᵀ`` solved for the N keys at layer l, fact i stores column i of U,
   of V and of the keys (``column_deltas``). ``Σ_i u_i v_iᵀ = U Vᵀ``, and since the projection
   concatenates the applied entries' factors in creation order before one matmul, the batch's
   N consecutive rank-1 entries project to the very same matrix as one rank-N entry would:
   bit for bit, not only up to rounding. Each fact is its own ledger entry, so a single fact
   of a batch can be reverted, refreshed, updated or pruned like any other (its share leaves
   the weights; the other facts keep theirs: their keys may lose the share's cross-talk
   ``u_i v_iᵀ k_j``, which the audit measures and sleep repairs);
3. the weights are projected once, after the batch's last event, which records the weights
   hash; the events before it in the batch record none (a replay to a point inside a batch
   has no recorded hash to compare with, see ``Ledger.last_weights_sha256``);
4. with ``audit``, one ``RecallAudited`` of every active fact at the batch's end.

Facts that are not new (an update of an active fact's object, a duplicate, or a fact given
twice in the input) close the current batch and go through the single-fact path, in input
order (``inject_one``). ``batch_size=1`` is the single-fact path for every fact, exactly as before batching
(an audit after each inject, as the experiments expect).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from memlog.core.facts import Fact
from memlog.engine.room import note_wake_room
from memlog.engine.wake import columns_by_fact, guard_wake_budget, wake_plan
from memlog.projections.facts import record_of
from memlog.store.deltas import write_layer_delta, write_target
from memlog.store.events import FactInjected
from memlog.store.records import LayerDelta


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


def is_new(ledger, fact: Fact) -> bool:
    """True unless ``fact``'s id is active in the ledger (then it is a duplicate or an update) or
    released (then its inject supersedes the released edit, one fact at a time)."""
    state = ledger.facts.get(fact.fact_id)
    return state is None or (not state.active and ledger.released_entry(fact.fact_id) is None)


def column_deltas(mem, result, columns: list[int]) -> list[LayerDelta]:
    """A fact's share of a batched edit: its ``columns`` of each layer's U, V and keys, one blob per layer."""
    out = []
    for layer in sorted(result.deltas):
        f = result.deltas[layer]
        if columns == list(range(columns[0], columns[-1] + 1)):
            u, v, k = (m[:, columns[0] : columns[-1] + 1] for m in (f.u, f.v, f.keys))
        else:
            u, v, k = (m[:, columns] for m in (f.u, f.v, f.keys))
        out.append(write_layer_delta(mem.store.blobs, layer, u, v, k))
    return out


def _befores(editor, facts: list[Fact]) -> list[list[str] | None]:
    """Each fact's neighbourhood completions before the batch's edit, in one call."""
    prompts = [n.prompt for f in facts for n in f.neighbours]
    done = editor.neighbour_completions(prompts) if prompts else []
    out, at = [], 0
    for f in facts:
        out.append(done[at : at + len(f.neighbours)] if f.neighbours else None)
        at += len(f.neighbours)
    return out


def inject_batch(mem, facts: list[Fact], audit: bool) -> list[InjectOutcome]:
    """One committed unit: one MEMIT solve for ``facts`` (all new), one event per fact, one audit."""
    start = time.perf_counter()
    with mem.unit():
        befores = _befores(mem.editor, facts)
        edit_facts, options = wake_plan(mem, facts)
        result = mem.editor.edit(edit_facts, **options)
        columns = columns_by_fact(facts, edit_facts)
        share = (time.perf_counter() - start) / len(facts)
        losses = list(getattr(result, "v_losses", None) or [result.v_loss] * len(facts))
        edit_ids, settings = [], mem.solve_settings()
        for i, fact in enumerate(facts):
            edit_ids.append(mem.ledger.next_edit_id())
            event = FactInjected(
                edit_id=edit_ids[-1],
                version=1,
                fact=record_of(fact, befores[i]),
                deltas=column_deltas(mem, result, columns[i]),
                v_loss=float(losses[i]),
                seconds=share,
                settings=settings,
                target=write_target(mem.store.blobs, getattr(result, "targets", None), i),
            )
            mem.emit(event, project=i == len(facts) - 1)
        guard_wake_budget(mem, facts)
        note_wake_room(mem, result, options)
        if audit:
            mem.record_audit("wake", None)
    if audit:
        marks = [mem.ledger.facts[f.fact_id].last_audit for f in facts]
        recalled = [m.recalled if m else None for m in marks]
    else:
        recalled = [r.recalled for r in mem.editor.audit(facts)]
    seconds = (time.perf_counter() - start) / len(facts)
    return [
        InjectOutcome(f.fact_id, e, "injected", r, float(loss), seconds, mem.head_seq) for f, e, r, loss in zip(facts, edit_ids, recalled, losses)
    ]


def stored_so_far(report: InjectReport, asked: int, head_seq: int) -> str:
    """What an inject that stopped part-way had written: its committed steps, by status."""
    counts = {status: sum(o.status == status for o in report.facts) for status in ("injected", "updated", "duplicate")}
    done = f"{counts['injected']} new fact(s) stored" + (f", {counts['updated']} updated" if counts["updated"] else "")
    skipped = f", {counts['duplicate']} already stored" if counts["duplicate"] else ""
    return f"Before it: {done}{skipped} (log head seq {head_seq}); the other {asked - len(report.facts)} of the {asked} given were not stored."


def plan(ledger, facts: list[Fact], batch_size: int):
    """Yield ``("batch", facts)`` and ``("single", [fact])`` steps in input order (see the module doc).

    Whether a fact is new is decided when its step runs (a fact given twice is a duplicate or
    an update the second time), so the caller must run each step before asking for the next.
    """
    pending: list[Fact] = []
    ids: set[str] = set()
    for fact in facts:
        if is_new(ledger, fact) and fact.fact_id not in ids:
            pending.append(fact)
            ids.add(fact.fact_id)
            if len(pending) == batch_size:
                yield "batch", pending
                pending, ids = [], set()
            continue
        if pending:
            yield "batch", pending
            pending, ids = [], set()
        yield "single", [fact]
    if pending:
        yield "batch", pending


def inject_one(mem, fact: Fact, audit: bool) -> InjectOutcome:
    """The single-fact path: one fact, one committed unit (an update of an active fact's object
    supersedes its edit; a released fact's edit is superseded too; a duplicate writes nothing)."""
    start = time.perf_counter()
    state = mem.ledger.facts.get(fact.fact_id)
    if state is not None and state.active and state.fact.object == fact.object:
        return InjectOutcome(fact.fact_id, state.edit_id, "duplicate", None, None, 0.0, mem.head_seq)
    released = mem.ledger.released_entry(fact.fact_id)  # its edit is still in the weights: supersede it
    with mem.unit():
        if (state is not None and state.active) or released is not None:
            entry = released or mem.ledger.entries[state.edit_id]
            others = [e for e in mem.ledger.applied_entries() if e.edit_id != entry.edit_id]
            mem.projector.project(others)  # the update is computed without the superseded object
            edit_id, version, supersedes = entry.edit_id, entry.last_version + 1, entry.version
        else:
            edit_id, version, supersedes = mem.ledger.next_edit_id(), 1, None
        before = mem.editor.neighbour_completions([n.prompt for n in fact.neighbours]) if fact.neighbours else None
        edit_facts, options = wake_plan(mem, [fact])
        result = mem.editor.edit(edit_facts, **options)
        mem.emit(
            FactInjected(
                edit_id=edit_id,
                version=version,
                fact=record_of(fact, before),
                deltas=mem.write_deltas(result),
                v_loss=float(result.v_loss),
                supersedes_version=supersedes,
                seconds=time.perf_counter() - start,
                settings=mem.solve_settings(),
                target=write_target(mem.store.blobs, getattr(result, "targets", None), 0),
            ),
            project=True,
        )
        guard_wake_budget(mem, [fact])
        note_wake_room(mem, result, options)
        recalled = None
        if audit:
            mem.record_audit("wake", None)
            mark = mem.ledger.facts[fact.fact_id].last_audit
            recalled = mark.recalled if mark else None
    if recalled is None:
        recalled = mem.editor.audit([fact])[0].recalled
    status = "updated" if supersedes is not None and released is None else "injected"
    return InjectOutcome(fact.fact_id, edit_id, status, recalled, float(result.v_loss), time.perf_counter() - start, mem.head_seq)
