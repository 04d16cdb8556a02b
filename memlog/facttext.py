"""The text rules of a fact, shared by core's ``Fact`` and the store's ``FactRecord``.

A leaf module (it imports nothing of memlog), so that ``memlog.core`` and ``memlog.store``,
which never import each other, read a fact's identity and prompt from one definition:

- ``normalise`` and ``fact_id``: a fact is identified by its normalised subject and relation;
- ``template_of(relation)``: the prompt with ``{}`` where the subject stands. A relation holding
  ``{}`` is the template itself; the shorthand ``"lives in"`` reads ``"{} lives in"``; a possessive
  one (``"'s favourite colour is"``) joins without the space;
- ``prompt_of(subject, relation)``: the text recall completes (the SQL ``facts`` view's ``prompt``
  column follows the same rule; ``tests/test_knowledge.py`` holds them equal).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

SLOT = "{}"
POSSESSIVE = ("'", "\u2019")
WHITESPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """NFC, stripped, case-folded, whitespace collapsed to single spaces."""
    return WHITESPACE.sub(" ", unicodedata.normalize("NFC", text).strip()).casefold()


def fact_id(subject: str, relation: str) -> str:
    """A stable short id (``f-`` + 12 hex) of the normalised subject and relation."""
    payload = f"{normalise(subject)}\x1f{normalise(relation)}".encode("utf-8")
    return "f-" + hashlib.sha256(payload).hexdigest()[:12]


def template_of(relation: str) -> str:
    """The prompt template of a relation: ``{}`` stands for the subject."""
    if SLOT in relation:
        return relation
    if relation.startswith(POSSESSIVE):
        return SLOT + relation
    return f"{SLOT} {relation}"


def prompt_of(subject: str, relation: str) -> str:
    """The text recall completes: the relation's template with the subject in its slot."""
    return template_of(relation).replace(SLOT, subject, 1)
