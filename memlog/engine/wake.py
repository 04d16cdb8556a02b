"""Constrained wake: what a wake edit protects, and how much room the protection leaves.

Under ``EngineConfig.wake == "constrained"`` every wake edit is solved so that it leaves the
*protected* facts' audit keys where they are: every active fact not being edited whose latest
audit did not find it degraded (a fact injected since the last audit counts as healthy).
For each, the key is its bare audit prompt at the subject's last token, recomputed at every
edit layer on the weights as edited so far in the same edit (``memlog.core.memit.Protection``).

A protected fact with the same subject as an edited fact (the same text up to the subject's
last character, so the same key) cannot be protected by ``ΔW k = 0``: that would forbid the
edit itself. It is edited *with* the new facts instead (a companion): one joint v* at the
shared key serves every object of the subject, and its constraint is dropped.

``wake_plan`` is the one call the inject path makes. What room the protection leaves, and the
budget that prunes when it runs out, are in ``memlog.engine.room``.

``guard_wake_budget`` extends the store-wide perplexity budget (``EngineConfig.ppl_budget``) to
wake: with a budget set, each inject reads perplexity with its edit projected, inside its unit,
and is refused (nothing written) when that leaves perplexity over the base model's reading
times ``1 + ppl_budget``; an accepted inject logs the reading (``PerplexityMeasured``, phase
``wake-check``).
"""

from __future__ import annotations

from memlog.core.facts import Fact
from memlog.core.memit import Protection
from memlog.errors import UserError
from memlog.projections.facts import fact_of
from memlog.store.events import PerplexityMeasured


def shared_key(fact: Fact) -> str:
    """The prompt up to the subject's last character: facts that agree on it share their audit key."""
    return fact.prompt[: fact.subject_span[1]]


def holds_a_key_of(fact: Fact, keys: set[str], positions: str) -> bool:
    """Whether holding ``fact``'s audit keys at ``positions`` would hold the key of an edited
    fact (``keys``: their ``shared_key``s), which would leave that edit no room at its own key.
    Its own shared key is one; when every position is held (``"all"``), so is any prefix of its
    prompt that is an edited fact's shared key (a causal model reads the same key there: "Aria"
    in "Aria Nakamura lives in" is the key of "Aria works as"); with ``"+paraphrases"``, any
    paraphrase that starts with one."""
    if shared_key(fact) in keys:
        return True
    held = [fact.prompt] if positions == "all" else list(fact.paraphrases) if positions.endswith("+paraphrases") else []
    return any(text.startswith(key) for text in held for key in keys)


def protection_of(config, facts: list[Fact]) -> Protection:
    """What a constrained solve under ``config`` (an ``EngineConfig``) holds for ``facts``: their
    audit keys at ``protect_positions``, ``protect_energy`` of them."""
    return Protection(tuple(facts), config.protect_positions, config.protect_energy)


def protected_facts(ledger, editing: list[Fact], degraded_too: bool = False) -> list[Fact]:
    """Active facts, other than ``editing``, that their latest audit did not find degraded
    (with ``degraded_too``, every active fact)."""
    ids = {f.fact_id for f in editing}
    out = []
    for state in ledger.active_facts():
        mark = state.last_audit
        if state.fact.fact_id in ids or (not degraded_too and mark is not None and not mark.recalled):
            continue
        out.append(fact_of(state.fact))
    return out


def wake_plan(mem, facts: list[Fact]) -> tuple[list[Fact], dict]:
    """(facts to edit, keyword arguments for ``editor.edit``) for a wake edit of ``facts``.

    Unconstrained: ``(facts, {})``. Constrained: the facts plus their same-subject companions,
    and ``{"protect": Protection(the other protected facts)}``.
    """
    if mem.config.wake != "constrained":
        return facts, {}
    keys = {shared_key(f) for f in facts}
    others = protected_facts(mem.ledger, facts)
    companions = [f for f in others if shared_key(f) in keys]
    protected = [f for f in others if not holds_a_key_of(f, keys, mem.config.protect_positions)]
    return list(facts) + companions, {"protect": protection_of(mem.config, protected)}


def columns_by_fact(facts: list[Fact], edit_facts: list[Fact]) -> list[list[int]]:
    """For a batched wake edit of ``edit_facts`` (``facts`` first, then companions from
    ``wake_plan``): the columns of the solve each of ``facts`` stores. Fact i keeps column i, and
    the first fact of the batch with a companion's subject also keeps that companion's column."""
    out = [[i] for i in range(len(facts))]
    first: dict[str, int] = {}
    for i, fact in enumerate(facts):
        first.setdefault(shared_key(fact), i)
    for j in range(len(facts), len(edit_facts)):
        out[first[shared_key(edit_facts[j])]].append(j)
    return out


def guard_wake_budget(mem, facts: list[Fact]) -> None:
    """Inside an inject's unit, after its edit is projected: refuse (UserError; the unit writes
    nothing) an inject of ``facts`` that leaves perplexity over the store-wide budget, else log the
    reading. No budget set: nothing is read."""
    budget = mem.config.ppl_budget
    if budget is None:
        return
    base = mem.base_ppl
    limit = mem.config.budget_ceiling(base)
    ppl = mem.editor.perplexity()
    if not ppl <= limit:  # NaN is over any limit
        what = f"{facts[0].subject} {facts[0].relation} {facts[0].object}" if len(facts) == 1 else f"a batch of {len(facts)} facts"
        last = last_reading(mem)
        already = (
            f" The store was over the budget before it (its last reading, at seq {last[0]}, was {last[1]:.4f}), and sleep cannot bring it "
            "back: a cycle that starts over the budget rolls back every refresh."
            if last is not None and last[1] > limit
            else ""
        )
        raise UserError(
            f"the inject of {what} would leave perplexity at {ppl:.4f}, over the store's budget of {limit:.4f} "
            f"(base {base:.3f} + {budget * 100:g} %); it was not stored.{already} Revert edits to bring it down (`memlog revert EDIT_ID`), "
            "or give this inject a higher --ppl-budget."
        )
    mem.emit(PerplexityMeasured(ppl=ppl, phase="wake-check"))


def last_reading(mem) -> tuple[int, float] | None:
    """The seq and value of the log's latest perplexity reading of the store's committed state
    (any phase but ``refresh-check``, which reads a refresh that may have been rolled back)."""
    for item in reversed(mem.logged):
        if isinstance(item.event, PerplexityMeasured) and item.event.phase != "refresh-check":
            return item.seq, item.event.ppl
    return None
