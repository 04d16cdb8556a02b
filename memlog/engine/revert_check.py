"""Does removing a cycle's degraded edits break healthy facts? Check, and refresh those it breaks.

A refresh's protection (``memlog.engine.constraints``) keeps each healthy fact's audit key
fixed against the *new* update, on the weights as they are after the revert. It cannot keep
the revert itself from moving a healthy fact: the degraded edit's old delta, which the revert
removes, may be part of what made the healthy fact recalled (its output at the healthy key,
or a shift of the keys further up).

With ``EngineConfig.revert_check`` (in-place, ``reinject``) a cycle projects the weights
without every degraded edit it is about to refresh, audits the healthy facts there (one
batched greedy pass) and projects the weights back. A healthy fact that this audit does not
recall, and the ``sleep-pre`` audit did (exact prompt), is *broken by the reverts*: it leaves the healthy set and is refreshed in the same cycle
like a degraded fact; its ``EditReverted`` has reason ``broken-by-revert: ...`` with the
completion the check read. The check is a probe of weights the log never holds, so it is not
logged as an audit (which would become the facts' latest audit marks); the cycle's
``SleepEnded.step_seconds`` counts it: ``revert_edits`` (edits left out), ``revert_checked`` (healthy facts audited),
``revert_changed`` (completions that differ from the ``sleep-pre`` audit's) and
``revert_broken``. One pass: a fact broken by the revert of a broken fact's edit is left to
the next cycle.
"""

from __future__ import annotations

from memlog.projections.facts import fact_of

REASON = "broken-by-revert"


def applies(config) -> bool:
    return bool(config.revert_check) and config.refresh_mode == "in-place" and config.refresh_strategy == "reinject"


def broken_by_reverts(mem, degraded: list, healthy: list, pre) -> tuple[dict, dict]:
    """({fact_id: completion} of the ``healthy`` states that are not recalled on the weights
    without ``degraded``'s edits (those applied and not held), counts for ``step_seconds``).
    ``pre`` is the cycle's ``sleep-pre`` audit. The weights are projected back."""
    ledger = mem.ledger
    entries = [ledger.entry_for_fact(s.fact.fact_id) for s in degraded]
    ids = {e.edit_id for e in entries if e is not None and e.applied and not e.held}
    if not ids or not healthy:
        return {}, {}
    mem.projector.project([e for e in ledger.applied_entries() if e.edit_id not in ids])
    try:
        results = mem.editor.audit([fact_of(s.fact) for s in healthy])
    finally:
        mem.project()
    before = {r.fact_id: r for r in pre.results}
    was = {s.fact.fact_id for s in healthy if s.fact.fact_id in before and before[s.fact.fact_id].recalled}
    broken = {s.fact.fact_id: r.completion for s, r in zip(healthy, results) if not r.recalled and s.fact.fact_id in was}
    changed = sum(s.fact.fact_id not in before or r.completion != before[s.fact.fact_id].completion for s, r in zip(healthy, results))
    return broken, {"revert_edits": len(ids), "revert_checked": len(healthy), "revert_changed": changed, "revert_broken": len(broken)}


def reason(completion: str, n_reverted: int) -> str:
    """The ``EditReverted`` reason of a fact broken by the reverts."""
    return f"{REASON}: not recalled without the cycle's {n_reverted} degraded edit(s) (completion {completion!r})"
