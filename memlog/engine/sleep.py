"""Sleep: the paper's Algorithm 1, one committed unit per cycle.

A cycle:
1. health check: perplexity before;
2. curate: the active facts (their edits have scale > 0 or are due a refresh);
3. audit every active fact (batched, greedy);
4. split into degraded D (recall < tau, i.e. not recalled) and healthy H; ``degraded_by``
   chooses the measure (exact prompt by default; paraphrase, chat, or any of them);
5. for each degraded edit, in ledger order: solve its refresh on the weights without it,
   protecting H as a constrained wake edit does (``Protection``: each healthy fact's audit key,
   re-read at every edit layer on the weights as they are when the refresh is solved); then
   record the revert and the refresh. Each refreshed fact joins the protected set for the
   next refresh of the same cycle. When the protection leaves no room the solve is retried
   once protecting a subset that does (``memlog.engine.constraints``); when that fails too,
   ``RefreshFailed`` records why and the edit stays applied as it was. A refresh that raises perplexity beyond ``ppl_bound``
   (over the cycle's reading before it) or beyond ``ppl_budget`` (over the base model's) is
   rolled back (an event), and the edit's next version is numbered after the rolled-back
   one. An edit the user reverted is left alone (``held``);
6. prune, only when over the cap. With no count cap the null-space budget decides, and by
   default (``budget_action`` release) it releases facts instead of pruning them: they stop
   being audited, held and refreshed, and their edits stay in the weights, so no other fact
   moves (``FactReleased``);
7. validate: perplexity after, and a second audit; the cycle ends with a summary event.

``in-place`` refresh (default) replaces the fact's edit: same ``edit_id``, version + 1.
``copy`` mode reproduces the paper's bug (see docs/COPY_MODE.md): a refresh adds a new
ledger entry beside the reverted original, refreshes are blocked while the ledger is over
the cap, and each cycle over the cap prunes the ``copy_prune_count`` oldest entries.

A cycle's ``recall`` and ``degraded`` are over every fact ever injected (a pruned or released
fact counts as degraded, as in the paper); the audit's numbers over the active facts are kept
as ``recall_active`` and ``degraded_active``. Convergence is two cycles in a row with no
``open_degraded`` fact (see ``open_degraded``).

``refresh_strategy`` ``reinject`` is step 5 as written (the default with unconstrained wake).
``correct`` (in-place only; the default with constrained wake)
skips the revert: v* and the constrained solve run on the current weights, with the degraded
edit still applied, and the new version stores the old factors with the correction's appended
(``Memory.write_stacked_deltas``), so its projection is the old delta plus the correction.

``revert_check`` (in-place, ``reinject``) first audits H on the weights without D's edits and
moves the facts that the reverts alone break into D (``memlog.engine.revert_check``).

``batch_refresh`` (in-place, either strategy) first refreshes all of step 5's edits in one
constrained solve (``memlog.engine.refresh_batch``), halving a batch a perplexity guard rolls
back; what that cannot do goes one by one. The cycle's ``reverted`` and ``rolled_back`` count
facts, not attempts.

``joint_before_sleep``: before the first cycle, every applied edit is re-solved jointly from the
base weights (``memlog.engine.joint``); ``consolidate_above`` N: after the last cycle, the applied
edits are consolidated when the projection concatenates more than N factor columns at a layer
(``memlog.engine.consolidate``; each its own unit of work).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from functools import partial

from memlog.engine.audit_measures import is_healthy
from memlog.engine.config import COPY_MODE_CAP, EngineConfig, finite_or_none, finite_reading
from memlog.engine import revert_check
from memlog.engine.consolidate import DEFAULT_RTOL, consolidate, joint_due, projection_width
from memlog.engine.constraints import solve_refresh
from memlog.engine.refresh_batch import BatchRefresh, applies, refresh_together
from memlog.engine.stale import hold_back_stale, last_healthy
from memlog.engine.room import ROOM_RESERVE, budget_excess, budget_victims, record_room, room_now
from memlog.engine.wake import protection_of
from memlog.errors import UserError
from memlog.projections.facts import fact_of, record_of
from memlog.store.deltas import write_target
from memlog.store.events import (
    EditPruned,
    EditRefreshed,
    EditReverted,
    FactReleased,
    PerplexityMeasured,
    RefreshFailed,
    RefreshRolledBack,
    SleepEnded,
    SleepStarted,
)


@dataclass
class CycleReport:
    """One cycle. ``recall``/``degraded`` (and their ``_before``) are over every fact ever
    injected, a pruned fact counting as degraded (the paper's measure, §5.5); the ``_active``
    columns are over the facts the ledger still holds (the audits' own numbers).
    ``open_degraded`` is what the convergence test counts: the degraded facts sleep still has
    to repair (see ``open_degraded``)."""

    cycle: int
    recall_before: float
    recall: float
    degraded_before: int
    degraded: int
    recall_before_active: float
    recall_active: float
    degraded_before_active: int
    degraded_active: int
    facts_known: int
    open_degraded: int
    refreshed: int
    reverted: int
    rolled_back: int
    blocked: int
    pruned: int
    held: int
    ledger_size: int
    active_facts: int
    ppl_before: float
    ppl_after: float
    seconds: float
    step_seconds: dict = field(default_factory=dict)
    failed: list = field(default_factory=list)
    released: int = 0  # facts the budget released (their edits stay applied)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SleepReport:
    cycles: list[CycleReport]
    converged: bool
    seq: int
    consolidated: str | None = None  # the consolidation the sleep ended with (``consolidate_above``)
    resolved: str | None = None  # the joint re-solve the sleep started with (``joint_before_sleep``)

    def to_dict(self) -> dict:
        return {"cycles": [c.to_dict() for c in self.cycles], "converged": self.converged, "seq": self.seq, "consolidated": self.consolidated, "resolved": self.resolved}


def run_sleep(mem, config: EngineConfig, cycles: int | None, until_converged: bool, progress) -> SleepReport:
    if cycles is not None and cycles < 1:
        raise UserError(f"--cycles must be at least 1, got {cycles}")
    limit = cycles if cycles is not None else (config.max_cycles if until_converged else 1)
    resolved = consolidate(mem, DEFAULT_RTOL, progress, joint=True).consolidation_id if config.joint_before_sleep and joint_due(mem) else None
    reports: list[CycleReport] = []
    clean_streak = 0
    converged = False
    for i in range(limit):
        progress("sleep", i, limit)
        report = run_cycle(mem, config, progress)
        reports.append(report)
        clean_streak = clean_streak + 1 if report.open_degraded == 0 else 0
        if clean_streak >= 2:
            converged = True
            if until_converged:
                break
    progress("sleep", limit, limit)
    wide = config.consolidate_above is not None and len(mem.ledger.applied_entries()) > 1 and projection_width(mem) > config.consolidate_above
    consolidated = consolidate(mem, DEFAULT_RTOL, progress).consolidation_id if wide else None
    return SleepReport(cycles=reports, converged=converged, seq=mem.head_seq, consolidated=consolidated, resolved=resolved)


def run_cycle(mem, config: EngineConfig, progress) -> CycleReport:
    ledger = mem.ledger
    steps: dict[str, float] = {}
    start = time.perf_counter()
    with mem.unit():
        cycle = ledger.cycle + 1
        mem.emit(
            SleepStarted(cycle=cycle, refresh_mode=config.refresh_mode, cap=config.cap, tau=config.tau, refresh_strategy=config.refresh_strategy)
        )

        t = time.perf_counter()
        ppl_before = finite_reading(mem.editor.perplexity(), f"at the start of sleep cycle {cycle}")
        mem.emit(PerplexityMeasured(ppl=ppl_before, phase="sleep-before", cycle=cycle))
        ceiling = config.ppl_ceiling(ppl_before, mem.base_ppl)  # a refresh that leaves more is rolled back
        steps["ppl_before"] = time.perf_counter() - t

        t = time.perf_counter()
        pre = mem.record_audit("sleep-pre", cycle, config.degraded_by, config.tau)
        steps["audit"] = time.perf_counter() - t
        ok = _healthy_rule(config)  # the measure that defines the degraded set (EngineConfig.degraded_by)
        recalled = {r.fact_id: ok(r) for r in pre.results}
        healthy = [s for s in ledger.active_facts() if recalled.get(s.fact.fact_id)]
        degraded = [s for s in ledger.active_facts() if not recalled.get(s.fact.fact_id)]
        degraded = hold_back_stale(mem, degraded, cycle, config.stale_after, healthy=ok, progress=config.stale_progress)

        broken: dict[str, str] = {}
        checked: dict[str, int] = {}
        if revert_check.applies(config):  # healthy facts that the reverts alone break are refreshed too
            t = time.perf_counter()
            broken, checked = revert_check.broken_by_reverts(mem, degraded, healthy, pre)
            degraded = degraded + [s for s in healthy if s.fact.fact_id in broken]
            healthy = [s for s in healthy if s.fact.fact_id not in broken]
            steps["revert_check"] = time.perf_counter() - t
        protected = [fact_of(s.fact) for s in healthy]  # their audit keys, re-read at every refresh

        refreshed = blocked = held = 0
        reverted_ids: set[str] = set()  # facts, not attempts: a batch that is halved tries some facts twice
        rolled_back_ids: set[str] = set()
        failed: list[str] = []
        t = time.perf_counter()
        together = BatchRefresh()
        if applies(config):  # one solve for all of them first; what it leaves goes one by one below
            together = refresh_together(mem, config, cycle, degraded, protected, ppl_before, ceiling, broken, checked.get("revert_edits", 0))
            refreshed, reverted_ids, rolled_back_ids = together.refreshed, set(together.reverted_ids), set(together.rolled_back_ids)
            protected = together.protected
        for n, state in enumerate(degraded):
            progress("refresh", n, len(degraded))
            entry = ledger.entry_for_fact(state.fact.fact_id)
            if entry is None or state.fact.fact_id in together.done:
                continue
            if entry.held:  # the user reverted it: it stays reverted until the user says otherwise
                held += 1
                continue
            if config.refresh_mode == "copy" and ledger.ledger_size() > (config.cap or COPY_MODE_CAP):
                blocked += 1
                continue
            fact = fact_of(state.fact)
            correct = config.refresh_strategy == "correct"
            if not correct:  # reinject: solve on the weights without the degraded edit
                mem.projector.project([e for e in ledger.applied_entries() if e.edit_id != entry.edit_id])
            try:
                result, used = solve_refresh(mem.editor, fact, protected, partial(protection_of, config))
            except UserError as exc:  # e.g. the constraint set leaves no room: the edit stays as it was
                if not correct:
                    mem.project()
                mem.emit(
                    RefreshFailed(
                        edit_id=entry.edit_id, version=entry.version, reason=str(exc), n_constraint_keys=len(protected), cycle=cycle
                    )
                )
                failed.append(f"{state.fact.fact_id}: {exc}")
                continue
            if not correct:
                why = revert_check.reason(broken[fact.fact_id], checked["revert_edits"]) if fact.fact_id in broken else "degraded"
                mem.emit(EditReverted(edit_id=entry.edit_id, version=entry.version, reason=why, cycle=cycle), project=True)
                reverted_ids.add(fact.fact_id)
            if config.refresh_mode == "copy":
                edit_id, version, copy_of = ledger.next_edit_id(), 1, entry.edit_id
            else:
                edit_id, version, copy_of = entry.edit_id, entry.last_version + 1, None
            mem.emit(
                EditRefreshed(
                    edit_id=edit_id,
                    version=version,
                    fact=record_of(fact),
                    deltas=mem.write_stacked_deltas(entry.current.deltas, result) if correct else mem.write_deltas(result),
                    v_loss=float(result.v_loss),
                    v_loss_before=float(result.v_losses_before[0]) if result.v_losses_before else None,
                    n_constraint_keys=len(used),
                    mode=config.refresh_mode,
                    cycle=cycle,
                    copy_of=copy_of,
                    seconds=float(getattr(result, "seconds", 0.0)),
                    strategy=config.refresh_strategy,
                    settings=mem.solve_settings(config, refresh=True),
                    target=write_target(mem.store.blobs, getattr(result, "targets", None), 0),
                ),
                project=True,
            )
            if ceiling is not None:
                ppl_now = mem.editor.perplexity()
                if not ppl_now <= ceiling:  # NaN is over any ceiling
                    mem.emit(
                        RefreshRolledBack(edit_id=edit_id, version=version, ppl_before=ppl_before, ppl_after=finite_or_none(ppl_now), cycle=cycle, ppl_limit=ceiling),
                        project=True,
                    )
                    rolled_back_ids.add(fact.fact_id)
                    continue
            rolled_back_ids.discard(fact.fact_id)  # rolled back in a batch, kept alone
            refreshed += 1
            protected = protected + [fact]
        progress("refresh", len(degraded), len(degraded))
        steps["refresh"] = time.perf_counter() - t
        reverted, rolled_back = len(reverted_ids), len(rolled_back_ids - together.done)

        t = time.perf_counter()
        pruned, released = _prune(mem, config, cycle)
        steps["prune"] = time.perf_counter() - t

        t = time.perf_counter()
        ppl_after = finite_reading(mem.editor.perplexity(), f"after sleep cycle {cycle}'s refreshes and prunes")
        mem.emit(PerplexityMeasured(ppl=ppl_after, phase="sleep-after", cycle=cycle))
        steps["ppl_after"] = time.perf_counter() - t

        t = time.perf_counter()
        post = mem.record_audit("sleep-post", cycle, config.degraded_by, config.tau)
        steps["audit_after"] = time.perf_counter() - t
        seconds = time.perf_counter() - start
        known = len(ledger.facts)
        hits_before, hits = len(pre.results) - pre.degraded, len(post.results) - post.degraded
        report = CycleReport(
            cycle=cycle,
            recall_before=hits_before / known if known else 1.0,
            recall=hits / known if known else 1.0,
            degraded_before=known - hits_before,
            degraded=known - hits,
            recall_before_active=pre.recall,
            recall_active=post.recall,
            degraded_before_active=pre.degraded,
            degraded_active=post.degraded,
            facts_known=known,
            open_degraded=open_degraded(ledger, post, config.refresh_mode, healthy=ok),
            refreshed=refreshed,
            reverted=reverted,
            rolled_back=rolled_back,
            blocked=blocked,
            pruned=pruned,
            held=held,
            ledger_size=ledger.ledger_size(),
            active_facts=len(ledger.active_facts()),
            ppl_before=ppl_before,
            ppl_after=ppl_after,
            seconds=seconds,
            step_seconds=steps,
            failed=failed,
            released=released,
        )
        mem.emit(
            SleepEnded(
                cycle=cycle,
                recall_before=pre.recall,
                recall_after=post.recall,
                degraded_before=pre.degraded,
                degraded_after=post.degraded,
                refreshed=refreshed,
                reverted=reverted,
                pruned=pruned,
                rolled_back=rolled_back,
                ledger_size=report.ledger_size,
                active_facts=report.active_facts,
                ppl_before=ppl_before,
                ppl_after=ppl_after,
                seconds=seconds,
                step_seconds={**steps, "blocked": blocked, "failed": len(failed), "held": held, **checked},
                released=released,
            )
        )
    return report


def _healthy_rule(config: EngineConfig):
    """An audit row's health under ``config.degraded_by`` (exact-prompt recall by default)."""
    return lambda row: is_healthy(row, config.degraded_by, config.tau)


def open_degraded(ledger, audit, refresh_mode: str, healthy=None) -> int:
    """The degraded facts sleep still has to repair, for the convergence test.

    Active facts the audit found not recalled (not ``healthy``: the ``degraded_by`` rule), except
    those the user reverted (held: sleep leaves them alone). In copy mode, facts pruned away count too: there pruning is the
    paper's loss of a fact, and a sleep must not call itself converged by pruning its
    degraded facts (§5.5). In in-place mode a fact pruned by the cap policy left by design.
    """
    held = {e.fact_id for e in ledger.entries.values() if e.held and not e.applied}
    healthy = healthy or (lambda row: row.recalled)
    count = sum(1 for r in audit.results if not healthy(r) and r.fact_id not in held)
    if refresh_mode == "copy":
        count += sum(1 for s in ledger.facts.values() if not s.active)
    return count


def prune_order(mem, config: EngineConfig) -> list:
    """The active facts in the order the prune policy takes them out: least recently healthy
    (under sleep's ``degraded_by`` measure; never healthy first), or oldest, first."""
    ledger = mem.ledger
    created = {s.fact.fact_id: ledger.entries[s.edit_id].created_seq for s in ledger.active_facts()}
    if config.prune_policy == "least-recently-healthy":
        seen = last_healthy(mem.events(), _healthy_rule(config))
        return sorted(ledger.active_facts(), key=lambda s: (seen.get(s.fact.fact_id, -1), created[s.fact.fact_id]))
    return sorted(ledger.active_facts(), key=lambda s: created[s.fact.fact_id])


def _prune(mem, config: EngineConfig, cycle: int) -> tuple[int, int]:
    """Step 6: (pruned, released). Copy mode prunes the oldest entries over the cap; in place a
    count cap prunes by the policy, and the null-space budget (no cap) takes the same facts but
    releases them (``budget_action`` release, the default) or prunes them."""
    ledger = mem.ledger
    if config.refresh_mode == "copy":
        cap = config.cap or COPY_MODE_CAP
        if ledger.ledger_size() <= cap:
            return 0, 0
        victims = sorted(ledger.entries.values(), key=lambda e: e.created_seq)[: config.copy_prune_count]
        reason = f"copy mode: ledger {ledger.ledger_size()} over cap {cap}, oldest entries pruned"
    else:
        active = ledger.active_facts()
        room = room_now(mem, config) if config.cap is None or config.wake == "constrained" else None
        excess = budget_excess(mem, room) if config.cap is None else len(active) - config.cap
        if room is not None:
            record_room(mem, "sleep", cycle, room)
        if excess <= 0:
            return 0, 0
        order = prune_order(mem, config)
        if config.cap is None:
            excess = budget_victims(mem, room, order)
        victims = [ledger.entries[s.edit_id] for s in order[:excess]]
        if config.cap is None:
            reason = f"null-space budget: under {ROOM_RESERVE:.0%} of the key dimensions left ({config.prune_policy})"
            if config.budget_action == "release":
                for entry in victims:
                    mem.emit(FactReleased(edit_id=entry.edit_id, version=entry.version, reason=reason, cycle=cycle))
                return 0, len(victims)
        else:
            reason = f"over cap {config.cap} ({config.prune_policy})"
    for entry in victims:
        mem.emit(EditPruned(edit_id=entry.edit_id, version=entry.version, reason=reason, cycle=cycle), project=True)
    return len(victims), 0
