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

4. a batch that was rolled back is split in two halves, each tried the same way (the second
   protecting the first if it was kept), down to pieces of two facts: a few facts that push
   perplexity over the bound cost about log₂ N more solves instead of one solve per fact.

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
from memlog.engine.constraints import protectable
from memlog.engine.ingest import column_deltas
from memlog.engine.wake import protection_of
from memlog.errors import UserError
from memlog.projections.facts import fact_of, record_of
from memlog.store.events import EditRefreshed, EditReverted, RefreshRolledBack


@dataclass
class BatchRefresh:
    """What the batched refresh did: ``done`` the fact ids it refreshed (the per-fact path skips them)."""

    done: set[str] = field(default_factory=set)
    tried: set[str] = field(default_factory=set)  # the fact ids of the last solve (kept or rolled back)
    refreshed: int = 0
    reverted: int = 0
    rolled_back: int = 0
    protected: list = field(default_factory=list)


def applies(config) -> bool:
    return bool(config.batch_refresh) and config.refresh_mode == "in-place"


def refresh_together(mem, config, cycle: int, degraded: list, protected: list, ppl_before: float, broken=None, n_reverted: int = 0) -> BatchRefresh:
    """Refresh ``degraded`` (fact states) in one solve protecting ``protected`` (facts), halving
    a batch the perplexity bound rolled back (see the module doc). ``broken`` maps the facts the
    revert check moved into ``degraded`` to the completion it read (their reverts say so);
    ``n_reverted`` is how many edits it left out."""
    out = _refresh_once(mem, config, cycle, degraded, protected, ppl_before, broken, n_reverted)
    if out.rolled_back < 4:  # halves of at least two facts each
        return out
    tried = [s for s in degraded if s.fact.fact_id in out.tried]
    middle = len(tried) // 2
    for half in (tried[:middle], tried[middle:]):
        part = refresh_together(mem, config, cycle, half, out.protected, ppl_before, broken, n_reverted)
        out.done |= part.done
        out.refreshed += part.refreshed
        out.reverted += part.reverted
        out.rolled_back += part.rolled_back
        out.protected = part.protected
    return out


def _refresh_once(mem, config, cycle: int, degraded: list, protected: list, ppl_before: float, broken=None, n_reverted: int = 0) -> BatchRefresh:
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
    held = protectable(list(protected), facts)
    try:
        result = mem.editor.edit(facts, protect=protection_of(config, held))
    except UserError:
        if not correct:
            mem.project()
        return out
    share = (time.perf_counter() - start) / len(facts)
    losses = list(getattr(result, "v_losses", None) or [result.v_loss] * len(facts))
    versions = []
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
            n_constraint_keys=len(held),
            mode=config.refresh_mode,
            cycle=cycle,
            seconds=share,
            strategy=config.refresh_strategy,
            settings=mem.solve_settings(config),
        )
        mem.emit(event, project=i == len(pairs) - 1)
    out.reverted = 0 if correct else len(pairs)
    ceiling = config.ppl_ceiling(ppl_before, mem.base_ppl)
    if ceiling is not None:
        ppl_now = mem.editor.perplexity()
        if ppl_now > ceiling:
            for i, (_, entry) in enumerate(pairs):
                rolled = RefreshRolledBack(edit_id=entry.edit_id, version=versions[i], ppl_before=ppl_before, ppl_after=ppl_now, cycle=cycle, ppl_limit=ceiling)
                mem.emit(rolled, project=i == len(pairs) - 1)
            out.rolled_back = len(pairs)
            return out
    out.done = {s.fact.fact_id for s, _ in pairs}
    out.refreshed = len(pairs)
    out.protected = list(protected) + facts
    return out
