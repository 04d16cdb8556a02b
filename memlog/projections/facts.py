"""Converting between the engine's ``Fact`` and the log's ``FactRecord``.

The log stores a fact as a ``FactRecord`` (its id and its three strings); the engine and the
MEMIT math work on ``memlog.core.facts.Fact``. Every read model that hands a fact back to the
engine (sleep's refresh, replay's audit check, ``why``) converts here.
"""

from __future__ import annotations

from memlog.core.facts import Fact
from memlog.store.records import FactRecord, NeighbourProbe


def record_of(fact: Fact, neighbours_before: list[str] | None = None) -> FactRecord:
    """The log's record of ``fact``, its probes included; ``neighbours_before`` are the greedy
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
    """The ``Fact`` a log record describes."""
    return Fact.of(record)
