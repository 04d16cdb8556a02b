"""Facts: the (subject, relation, object) triples memlog stores, and their stable ids.

A fact's *prompt* is ``"{subject} {relation}"``; recall asks the model to continue the
prompt with the object. ``fact_id`` identifies a fact by its normalised subject and
relation only, so re-stating "Aria Nakamura lives in" with a new city is an update of the
same fact, not a new one.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

from memlog.errors import UserError

MAX_OBJECT_CHARS = 200
MAX_SUBJECT_CHARS = 200
MAX_RELATION_CHARS = 200
_WHITESPACE = re.compile(r"\s+")
_POSSESSIVE = ("'", "\u2019")


def normalise(text: str) -> str:
    """NFC, stripped, case-folded, whitespace collapsed to single spaces."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text).strip()).casefold()


def fact_id(subject: str, relation: str) -> str:
    """A stable short id (``f-`` + 12 hex) of the normalised subject and relation."""
    payload = f"{normalise(subject)}\x1f{normalise(relation)}".encode("utf-8")
    return "f-" + hashlib.sha256(payload).hexdigest()[:12]


def _check_part(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise UserError(f"a fact's {name} must be text, got {type(value).__name__}")
    if not value.strip():
        raise UserError(f"a fact's {name} is empty; give a non-blank {name}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UserError(f"a fact's {name} is not valid Unicode text (unpaired surrogate {value[exc.start]!r}); pass UTF-8 text") from None
    return value


@dataclass(frozen=True)
class Fact:
    """One triple, e.g. ``Fact("Aria Nakamura", "lives in", "Thessaloniki")``.

    The fields are kept as given (apart from surrounding whitespace, which is stripped);
    ``fact_id`` is computed from normalised text.
    """

    subject: str
    relation: str
    object: str

    def __post_init__(self) -> None:
        for name in ("subject", "relation", "object"):
            value = _check_part(name, getattr(self, name))
            object.__setattr__(self, name, _WHITESPACE.sub(" ", value.strip()))
        for name, limit in (("subject", MAX_SUBJECT_CHARS), ("relation", MAX_RELATION_CHARS)):
            if len(getattr(self, name)) > limit:
                raise UserError(f"a fact's {name} is {len(getattr(self, name))} characters long; the limit is {limit}. Shorten it.")
        if len(self.object) > MAX_OBJECT_CHARS:
            raise UserError(
                f"a fact's object is {len(self.object)} characters long; the limit is {MAX_OBJECT_CHARS}. "
                "Store a short object (a name, a place, a word), not a passage."
            )

    @property
    def prompt(self) -> str:
        """The text recall completes: ``"{subject} {relation}"``.

        A possessive relation (one that starts with an apostrophe, as ``'s favourite colour is``)
        is joined without the space: ``"Aria Nakamura's favourite colour is"``.
        """
        if self.relation.startswith(_POSSESSIVE):
            return f"{self.subject}{self.relation}"
        return f"{self.subject} {self.relation}"

    @property
    def fact_id(self) -> str:
        return fact_id(self.subject, self.relation)

    def __str__(self) -> str:
        return f"{self.prompt} {self.object}"
