"""Sleep's policy for facts that refreshing does not help.

Some facts stay degraded however often sleep refreshes them (an object that the model keeps
continuing into a longer word, for instance: " sitcoms" for *sitcom*). Each refresh costs a
v* optimisation and a constrained solve, and perturbs the weights for nothing. A fact that was
refreshed in ``stale_after`` sleep cycles in a row without an audit finding it recalled in
between is *suspended* (a cycle counts once however many times it tried the fact: a batched
refresh that was rolled back, its halves and the per-fact path may each try it): a ``RefreshSuspended`` event says so and later cycles leave it out of the refresh
set. Something changing lifts the suspension: an audit that finds the fact recalled again, or a
new injection of it (an update or a re-statement). Suspended facts are still audited and still
count as degraded. "Recalled" is sleep's ``degraded_by`` measure (``healthy``; exact-prompt
recall by default).
"""

from __future__ import annotations

from collections.abc import Iterable

from memlog.store.events import EditRefreshed, Event, FactInjected, RecallAudited, RefreshSuspended


def fruitless_refreshes(events: Iterable[Event], healthy=None) -> tuple[dict[str, int], set[str]]:
    """Per fact, the sleep cycles that refreshed it since it was last recalled or injected, and
    the facts suspended since."""
    healthy = healthy or (lambda result: result.recalled)
    count: dict[str, int] = {}
    last_cycle: dict[str, int | None] = {}
    suspended: set[str] = set()
    for event in events:
        if isinstance(event, FactInjected):
            count[event.fact.fact_id] = 0
            last_cycle.pop(event.fact.fact_id, None)
            suspended.discard(event.fact.fact_id)
        elif isinstance(event, EditRefreshed):
            fact_id = event.fact.fact_id
            if event.cycle is None or last_cycle.get(fact_id) != event.cycle:
                count[fact_id] = count.get(fact_id, 0) + 1
            last_cycle[fact_id] = event.cycle
        elif isinstance(event, RecallAudited):
            for result in event.results:
                if healthy(result):
                    count[result.fact_id] = 0
                    last_cycle.pop(result.fact_id, None)
                    suspended.discard(result.fact_id)
        elif isinstance(event, RefreshSuspended):
            suspended.add(event.fact_id)
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


def hold_back_stale(mem, degraded: list, cycle: int, stale_after: int | None, healthy=None) -> list:
    """The degraded fact states sleep should refresh this cycle; emits ``RefreshSuspended`` for
    each fact that just reached ``stale_after`` fruitless refreshes."""
    if stale_after is None:
        return degraded
    count, suspended = fruitless_refreshes(mem.events(), healthy)
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
