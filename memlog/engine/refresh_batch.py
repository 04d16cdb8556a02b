"""Sleep's batched refresh: every degraded fact of a cycle in one constrained MEMIT solve.

With ``EngineConfig.batch_refresh`` (in-place mode), a cycle first tries to refresh all its
degraded edits (those not held by the user) together:

1. ``reinject``: project the weights without any of them (``correct``: keep the weights as they
   are, every edit applied); run one MEMIT solve for all their facts with the
   healthy facts protected as each would be alone (``Protection``: their audit keys, re-read
   at every edit layer on these weights; a healthy fact sharing a refreshed fact's subject is
   left out, ``memlog.engine.constraints.protectable``);
2. ``reinject``: log, per fact, ``EditReverted`` then (after all reverts) ``EditRefreshed``
   holding its column of the batch's factors (``memlog.engine.ingest.column_deltas``: exact,
   the columns sum to the batch's update). ``correct``: no revert; each ``EditRefreshed``
   holds the previous version's factors with its column of the correction appended
   (``Memory.write_stacked_deltas``), so the new versions sum to the old edits plus the
   batch's correction. The weights are projected once, after the last event;
3. with a perplexity bound, measure once; over the bound, every refresh of the batch is
   rolled back (one ``RefreshRolledBack`` per fact).

4. a batch of four or more that was rolled back is split in two halves, each tried the same
   way (the second protecting the first if it was kept). While exactly one half is rolled back
   it is split again (down to pieces of two or three facts), so one fact that pushes perplexity
   over the guard costs about 2·log₂ N more solves instead of one solve per fact; when both
   halves are rolled back (many such facts), or the cycle started over the store-wide
   ``ppl_budget`` (every piece would be), the splitting stops and the per-fact path takes what
   is left, so the worst case stays within a few solves of the per-fact path's.

When the batched solve raises (the constraint leaves no room for one of the keys), nothing is
kept from it; what no piece kept goes through the per-fact path (``memlog.engine.sleep``),
which retries under a key subset, records ``RefreshFailed`` and rolls back per fact as before.

When is it the same as the per-fact path? The per-fact path adds each refreshed fact to the
protected set of the next refresh; the batch solves them jointly. (The per-fact path reads
the protected keys on the weights without one degraded edit at a time, the batch without all
of them; below, the keys are taken as given.) With ``S_P`` the
constrained inverse covariance (``memlog.core.solve``), both give the same update at a layer
when the refreshed keys are ``S_P``-orthogonal (``k_iᵀ S_P k_j = 0`` for i ≠ j) and the
residuals are the same: then ``Kᵀ S_P K`` is diagonal, the batch's columns are the single
solves, and adding ``k_i`` to the constraints leaves ``S_P k_j`` unchanged. In general the
batch is the joint least-squares solution (``dense_constrained_update``); the per-fact path
instead protects the earlier refreshes of the cycle exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from memlog.engine import revert_check
from memlog.engine.config import finite_or_none
from memlog.engine.constraints import protectable
from memlog.engine.ingest import column_deltas
from memlog.engine.wake import protection_of
from memlog.errors import UserError
from memlog.projections.facts import fact_of, record_of
from memlog.store.deltas import write_target
from memlog.store.events import EditRefreshed, EditReverted, RefreshRolledBack


@dataclass
class BatchRefresh:
    """What the batched refresh did: ``done`` the fact ids it refreshed (the per-fact path skips
    them); ``reverted_ids`` and ``rolled_back_ids`` every fact id that a revert or a rollback
    touched in some attempt (the cycle counts facts, not attempts)."""

    done: set[str] = field(default_factory=set)
    tried: set[str] = field(default_factory=set)  # the fact ids of the last solve (kept or rolled back)
    refreshed: int = 0
    rolled_back: int = 0  # of the last solve: how many of its refreshes were rolled back
    reverted_ids: set[str] = field(default_factory=set)
    rolled_back_ids: set[str] = field(default_factory=set)
    protected: list = field(default_factory=list)

    def absorb(self, part: "BatchRefresh") -> None:
        self.done |= part.done
        self.refreshed += part.refreshed
        self.reverted_ids |= part.reverted_ids
        self.rolled_back_ids |= part.rolled_back_ids
        self.protected = part.protected


def applies(config) -> bool:
    return bool(config.batch_refresh) and config.refresh_mode == "in-place"


def refresh_together(
    mem, config, cycle: int, degraded: list, protected: list, ppl_before: float, ceiling: float | None, broken=None, n_reverted: int = 0
) -> BatchRefresh:
    """Refresh ``degraded`` (fact states) in one solve protecting ``protected`` (facts), halving
    a batch the perplexity guard rolled back (see the module doc). ``ceiling`` is the cycle's
    (``EngineConfig.ppl_ceiling``: a refresh that leaves more is rolled back; None: no check),
    ``ppl_before`` the reading it was set from. ``broken`` maps the facts the
    revert check moved into ``degraded`` to the completion it read (their reverts say so);
    ``n_reverted`` is how many edits it left out."""
    out = _refresh_once(mem, config, cycle, degraded, protected, ppl_before, ceiling, broken, n_reverted)
    if ceiling is not None and ppl_before >= ceiling:  # the cycle starts over the budget: no piece would do better
        return out
    pieces = [s for s in degraded if s.fact.fact_id in out.tried] if out.rolled_back >= 4 else []
    while pieces:  # halves of at least two facts each
        middle = len(pieces) // 2
        halves = (pieces[:middle], pieces[middle:])
        failed = []
        for half in halves:
            part = _refresh_once(mem, config, cycle, half, out.protected, ppl_before, ceiling, broken, n_reverted)
            out.absorb(part)
            if part.rolled_back:
                failed.append([s for s in half if s.fact.fact_id in part.tried])
        # split further only while one half is kept: the facts that raise perplexity are few and
        # bisection finds them in about 2·log₂ N solves; when both halves fail they are many,
        # and the per-fact path (one solve each) is cheaper than splitting on
        pieces = failed[0] if len(failed) == 1 and len(failed[0]) >= 4 else []
    return out


def _refresh_once(
    mem, config, cycle: int, degraded: list, protected: list, ppl_before: float, ceiling: float | None, broken=None, n_reverted: int = 0
) -> BatchRefresh:
    """One batched solve for ``degraded``, kept or rolled back as a whole."""
    broken = broken or {}
    ledger = mem.ledger
    pairs = [(s, ledger.entry_for_fact(s.fact.fact_id)) for s in degraded]
    pairs = [(s, e) for s, e in pairs if e is not None and not e.held]
    out = BatchRefresh(protected=list(protected))
    if len(pairs) < 2:
        return out
    ids = {e.edit_id for _, e in pairs}
    facts = [fact_of(s.fact) for s, _ in pairs]
    out.tried = {s.fact.fact_id for s, _ in pairs}
    correct = config.refresh_strategy == "correct"
    start = time.perf_counter()
    if not correct:  # reinject: solve on the weights without the degraded edits
        mem.projector.project([e for e in ledger.applied_entries() if e.edit_id not in ids])
    held = protectable(list(protected), facts, config.protect_positions)
    try:
        result = mem.editor.edit(facts, protect=protection_of(config, held))
    except UserError:
        if not correct:
            mem.project()
        return out
    share = (time.perf_counter() - start) / len(facts)
    losses = list(getattr(result, "v_losses", None) or [result.v_loss] * len(facts))
    before = result.v_losses_before or [None] * len(facts)
    versions, settings = [], mem.solve_settings(config, refresh=True)
    if not correct:  # reinject: every revert first, then the refreshes
        for state, entry in pairs:
            fid = state.fact.fact_id
            why = revert_check.reason(broken[fid], n_reverted) if fid in broken else "degraded"
            mem.emit(EditReverted(edit_id=entry.edit_id, version=entry.version, reason=why, cycle=cycle))
    for i, (fact, (_, entry)) in enumerate(zip(facts, pairs)):
        versions.append(entry.last_version + 1)
        event = EditRefreshed(
            edit_id=entry.edit_id,
            version=versions[-1],
            fact=record_of(fact),
            deltas=mem.write_stacked_deltas(entry.current.deltas, result, [i]) if correct else column_deltas(mem, result, [i]),
            v_loss=float(losses[i]),
            v_loss_before=None if before[i] is None else float(before[i]),
            n_constraint_keys=len(held),
            mode=config.refresh_mode,
            cycle=cycle,
            seconds=share,
            strategy=config.refresh_strategy,
            settings=settings,
            target=write_target(mem.store.blobs, getattr(result, "targets", None), i),
        )
        mem.emit(event, project=i == len(pairs) - 1)
    if not correct:
        out.reverted_ids = set(out.tried)
    if ceiling is not None:
        ppl_now = mem.editor.perplexity()
        if not ppl_now <= ceiling:  # NaN is over any ceiling
            for i, (_, entry) in enumerate(pairs):
                rolled = RefreshRolledBack(edit_id=entry.edit_id, version=versions[i], ppl_before=ppl_before, ppl_after=finite_or_none(ppl_now), cycle=cycle, ppl_limit=ceiling)
                mem.emit(rolled, project=i == len(pairs) - 1)
            out.rolled_back = len(pairs)
            out.rolled_back_ids = set(out.tried)
            return out
    out.done = {s.fact.fact_id for s, _ in pairs}
    out.refreshed = len(pairs)
    out.protected = list(protected) + facts
    return out
