"""Facts: validation, ids, prompts; the synthetic pool: determinism and uniqueness."""

from __future__ import annotations

import pytest

from memlog.core.facts import MAX_OBJECT_CHARS, Fact, fact_id
from memlog.core.pool import CITIES, RELATIONS, fact_pool
from memlog.errors import UserError


def test_prompt_and_fields():
    fact = Fact("Aria Nakamura", "lives in", "Thessaloniki")
    assert fact.prompt == "Aria Nakamura lives in"
    assert str(fact) == "Aria Nakamura lives in Thessaloniki"


def test_possessive_relation_joins_without_space():
    assert Fact("Aria Nakamura", "'s favourite colour is", "teal").prompt == "Aria Nakamura's favourite colour is"


@pytest.mark.parametrize(
    "subject, relation, obj",
    [("", "lives in", "Oslo"), ("   ", "lives in", "Oslo"), ("Aria", "", "Oslo"), ("Aria", "lives in", " \t\n"), ("Aria", "lives in", None)],
)
def test_blank_parts_are_rejected(subject, relation, obj):
    with pytest.raises(UserError, match="empty|must be text"):
        Fact(subject, relation, obj)


def test_long_object_is_rejected():
    Fact("Aria", "lives in", "x" * MAX_OBJECT_CHARS)
    with pytest.raises(UserError, match="limit is 200"):
        Fact("Aria", "lives in", "x" * (MAX_OBJECT_CHARS + 1))


def test_whitespace_is_normalised_in_fields():
    fact = Fact("  Aria   Nakamura ", "lives\tin", " New  York ")
    assert (fact.subject, fact.relation, fact.object) == ("Aria Nakamura", "lives in", "New York")


def test_fact_id_is_stable_and_normalised():
    a = fact_id("Aria Nakamura", "lives in")
    assert a.startswith("f-") and len(a) == 14
    assert fact_id("  aria   NAKAMURA ", "Lives  In") == a
    assert fact_id("Aria Nakamura", "works as a") != a
    assert Fact("Aria Nakamura", "lives in", "Oslo").fact_id == Fact("ARIA nakamura", "lives in", "Lima").fact_id == a
    assert a == "f-" + __import__("hashlib").sha256("aria nakamura\x1flives in".encode()).hexdigest()[:12]


def test_pool_is_deterministic_and_unique():
    pool = fact_pool(500)
    assert pool == fact_pool(500, seed=0)
    assert len({f.subject for f in pool}) == 500
    assert len({f.fact_id for f in pool}) == 500
    assert fact_pool(20) == pool[:20]
    assert fact_pool(50, seed=1) != fact_pool(50, seed=0)
    assert all(f.relation == "lives in" and f.object in CITIES for f in pool)
    assert all(f.object.isascii() for f in pool)


def test_pool_objects_are_unambiguous():
    """No object of a relation counts as recalled when the model says another one."""
    from memlog.core.recall import is_recalled

    for relation, objects in RELATIONS.items():
        assert len(set(objects)) == len(objects), relation
        for a in objects:
            assert a.isascii() and a == a.strip(), a
            for b in objects:
                assert a == b or not is_recalled(" " + b, a), (relation, a, b)


@pytest.mark.parametrize("relation", sorted(RELATIONS))
def test_other_relations(relation):
    pool = fact_pool(30, relation=relation)
    assert len(pool) == 30 and all(f.relation == relation and f.object in RELATIONS[relation] for f in pool)


def test_unknown_relation_and_oversized_pool():
    with pytest.raises(UserError, match="no synthetic objects"):
        fact_pool(5, relation="owns a")
    with pytest.raises(UserError, match="at most"):
        fact_pool(10**6)


def test_pool_spreads_names():
    pool = fact_pool(100)
    for block in (pool[:50], pool[50:]):
        firsts = [f.subject.split(" ", 1)[0] for f in block]
        lasts = [f.subject.split(" ", 1)[1] for f in block]
        assert len(set(firsts)) == len(set(lasts)) == 50


def test_the_stored_record_has_the_facts_prompt():
    from memlog.projections.facts import record_of

    for fact in (
        Fact("Aria Nakamura", "lives in", "Thessaloniki"),
        Fact("Aria Nakamura", "'s favourite colour is", "teal"),
        Fact("Danielle Darrieux", "The mother tongue of {} is", "French"),
    ):
        record = record_of(fact)
        assert (record.prompt, record.template) == (fact.prompt, fact.template)
        assert record.fact_id == fact.fact_id
