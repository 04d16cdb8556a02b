"""Sleep's policy for facts that refreshing does not help.

Some facts stay degraded however often sleep refreshes them (an object that the model keeps
continuing into a longer word, for instance: " sitcoms" for *sitcom*). Each refresh costs a
v* optimisation and a constrained solve, and perturbs the weights for nothing. A fact that was
refreshed in ``stale_after`` sleep cycles in a row without an audit finding it recalled in
between is *suspended*: a ``RefreshSuspended`` event says so and later cycles leave it out of
the refresh set. A cycle counts once however many times it tried the fact (a batched refresh
that was rolled back, its halves and the per-fact path may each try it), but not if every one
of those refreshes was rolled back because the reading *before* it was already over the limit
(``RefreshRolledBack.ppl_before >= ppl_limit``): a cycle that starts over a ``--ppl-budget``
rolls back every refresh whatever it does, which says nothing about the fact, and counting
those would suspend every degraded fact. A refresh rolled back because it pushed perplexity
over the limit itself does count: trying it again costs a solve and a reading every cycle.
A fact that is getting there is not fruitless either. A correction solved at a λ near the keys'
scale (``memlog init --lam``) moves a fact only part of the way, so it can take more than
``stale_after`` cycles to reach recall while every cycle brings it closer. With the ``correct``
strategy the object's NLL before a refresh (``EditRefreshed.v_loss_before``, v*'s first step on
the weights that still hold the fact's edit) measures where the fact stands. When it is at least
``stale_progress`` (a fraction) below the lowest NLL read before any of the fact's earlier
refreshes since its count last started, those refreshes helped and the count starts again from
this one. The lowest reading, not the latest, is the reference, so a fact whose NLL only swings
up and down (as other facts' corrections disturb it) does not restart its count on each swing.
With ``reinject`` the NLL is read on the weights without the fact's edit, which says nothing
about progress, so it is not used; nor is it in logs written before the field existed.
Something changing lifts the suspension: an audit that finds the fact recalled again, or a new
injection of it (an update or a re-statement). Suspended facts are still audited and still
count as degraded. "Recalled" is sleep's ``degraded_by`` measure (``healthy``; exact-prompt
recall by default).
"""

from __future__ import annotations

from collections.abc import Iterable

from memlog.store.events import EditRefreshed, Event, FactInjected, RecallAudited, RefreshRolledBack, RefreshSuspended


def fruitless_refreshes(events: Iterable[Event], healthy=None, progress: float | None = None) -> tuple[dict[str, int], set[str]]:
    """Per fact, the sleep cycles that refreshed it since it was last recalled, injected, or (with
    ``progress``, a fraction) found that fraction below its lowest object NLL so far (not
    counting a cycle whose every refresh of it was rolled back for starting over the limit), and
    the facts suspended since."""
    healthy = healthy or (lambda result: result.recalled)
    standing: dict[str, dict[object, int]] = {}  # fact -> cycle (or a refresh outside sleep) -> refreshes that count
    refreshed: dict[tuple[str, int], tuple[str, object]] = {}  # (edit, version) -> (fact, its slot)
    best: dict[str, float] = {}  # fact -> lowest object NLL before a correcting refresh since its count last started
    suspended: set[str] = set()
    for position, event in enumerate(events):
        if isinstance(event, FactInjected):
            standing[event.fact.fact_id] = {}
            best.pop(event.fact.fact_id, None)
            suspended.discard(event.fact.fact_id)
        elif isinstance(event, EditRefreshed):
            fact_id = event.fact.fact_id
            slot = event.cycle if event.cycle is not None else ("outside sleep", position)
            slots = standing.setdefault(fact_id, {})
            if progress is not None and event.strategy == "correct" and event.v_loss_before is not None:
                lowest = best.get(fact_id)
                if lowest is not None and event.v_loss_before <= lowest * (1.0 - progress):
                    slots.clear()  # a new low: the earlier refreshes brought the fact closer; count from this one
                best[fact_id] = event.v_loss_before if lowest is None else min(lowest, event.v_loss_before)
            slots[slot] = slots.get(slot, 0) + 1
            refreshed[(event.edit_id, event.version)] = (fact_id, slot)
        elif isinstance(event, RefreshRolledBack):
            fact_id, slot = refreshed.pop((event.edit_id, event.version), (None, None))
            started_over = event.ppl_limit is not None and event.ppl_before >= event.ppl_limit
            if started_over and fact_id is not None and slot in standing.get(fact_id, {}):
                standing[fact_id][slot] -= 1
        elif isinstance(event, RecallAudited):
            for result in event.results:
                if healthy(result):
                    standing[result.fact_id] = {}
                    best.pop(result.fact_id, None)
                    suspended.discard(result.fact_id)
        elif isinstance(event, RefreshSuspended):
            suspended.add(event.fact_id)
    count = {fact_id: sum(1 for n in slots.values() if n > 0) for fact_id, slots in standing.items()}
    return count, suspended


def last_healthy(events: Iterable[Event], healthy=None) -> dict[str, int]:
    """Per fact, the position in ``events`` of the latest audit that found it ``healthy`` (sleep's
    ``degraded_by`` measure; exact-prompt recall by default). Facts never found healthy are absent."""
    healthy = healthy or (lambda result: result.recalled)
    last: dict[str, int] = {}
    for position, event in enumerate(events):
        if isinstance(event, RecallAudited):
            for result in event.results:
                if healthy(result):
                    last[result.fact_id] = position
    return last


def hold_back_stale(mem, degraded: list, cycle: int, stale_after: int | None, healthy=None, progress: float | None = None) -> list:
    """The degraded fact states sleep should refresh this cycle; emits ``RefreshSuspended`` for
    each fact that just reached ``stale_after`` fruitless refreshes (``progress``: as in
    ``fruitless_refreshes``)."""
    if stale_after is None:
        return degraded
    count, suspended = fruitless_refreshes(mem.events(), healthy, progress)
    keep = []
    for state in degraded:
        fact_id = state.fact.fact_id
        if fact_id in suspended:
            continue
        if count.get(fact_id, 0) >= stale_after:
            mem.emit(RefreshSuspended(fact_id=fact_id, edit_id=state.edit_id, refreshes=count[fact_id], cycle=cycle))
            continue
        keep.append(state)
    return keep
