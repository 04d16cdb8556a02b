"""Converting between the engine's ``Fact`` and the log's ``FactRecord``.

The log stores a fact as a ``FactRecord`` (its id and its three strings); the engine and the
MEMIT math work on ``memlog.core.facts.Fact``. Every read model that hands a fact back to the
engine (sleep's refresh, replay's audit check, ``why``) converts here.
"""

from __future__ import annotations

from memlog.core.facts import Fact
from memlog.store.events import FactRecord


def record_of(fact: Fact) -> FactRecord:
    """The log's record of ``fact``."""
    return FactRecord(fact_id=fact.fact_id, subject=fact.subject, relation=fact.relation, object=fact.object)


def fact_of(record: FactRecord) -> Fact:
    """The ``Fact`` a log record describes."""
    return Fact(record.subject, record.relation, record.object)
