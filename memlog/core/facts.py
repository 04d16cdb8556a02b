"""Facts: the (subject, relation, object) triples memlog stores, and their stable ids.

A fact's *prompt* is the text recall asks the model to continue with the object. The
relation is either a suffix of the subject (the shorthand ``"{subject} {relation}"``:
``Fact("Aria Nakamura", "lives in", "Thessaloniki")``) or a template holding ``{}`` once
where the subject stands (the ROME/MEMIT convention:
``Fact("Danielle Darrieux", "The mother tongue of {} is", "French")``). ``Fact.template``
gives both forms, ``Fact.prompt`` the text, ``Fact.subject_span`` where the subject stands in
it (keys are read at its last token). The rules themselves live in the leaf ``memlog.facttext``,
which the store's ``FactRecord`` reads too.

``fact_id`` identifies a fact by its normalised subject and relation (template included)
only, so re-stating "Aria Nakamura lives in" with a new city is an update of the same fact.
A fact may carry probes that never change its identity: paraphrases of its prompt and
neighbourhood prompts with their true answers (another subject, same relation), which
audits and ``memlog eval`` use to measure generalisation and specificity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from memlog.errors import UserError
from memlog.facttext import SLOT, WHITESPACE as _WHITESPACE, fact_id, normalise, prompt_of, template_of

__all__ = [
    "MAX_OBJECT_CHARS",
    "MAX_RELATION_CHARS",
    "MAX_SUBJECT_CHARS",
    "SLOT",
    "Fact",
    "Neighbour",
    "check_template",
    "fact_id",
    "normalise",
    "template_from_prompt",
]

MAX_OBJECT_CHARS = 200
MAX_SUBJECT_CHARS = 200
MAX_RELATION_CHARS = 200
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


def check_template(template: str) -> str:
    """``template`` if it holds ``{}`` exactly once and some text besides; a one-line error otherwise."""
    count = template.count(SLOT)
    if count != 1:
        where = "no" if count == 0 else f"{count}"
        raise UserError(f"the prompt template {template!r} has {where} '{{}}' slots; it needs exactly one, where the subject stands")
    if not template.replace(SLOT, "").strip():
        raise UserError(f"the prompt template {template!r} has no text besides the subject's slot")
    return template


def template_from_prompt(prompt: str, subject: str) -> str:
    """The template of a full prompt text: the subject's first occurrence replaced by ``{}``
    (an exact match, else a case-insensitive one); an error when the subject is absent."""
    if SLOT in prompt:
        return check_template(prompt)
    start = prompt.find(subject)
    if start < 0:
        start = prompt.casefold().find(subject.casefold())
    if start < 0 or not subject.strip():
        raise UserError(f"the subject {subject!r} does not occur in the prompt {prompt!r}")
    return prompt[:start] + SLOT + prompt[start + len(subject) :]


@dataclass(frozen=True)
class Neighbour:
    """A neighbourhood probe: a prompt about another subject, the answer it must keep, and the
    model's greedy completion of it just before the fact's first edit (empty until recorded)."""

    prompt: str
    answer: str
    before: str = ""


@dataclass(frozen=True)
class Fact:
    """One triple, e.g. ``Fact("Aria Nakamura", "lives in", "Thessaloniki")`` or
    ``Fact("Danielle Darrieux", "The mother tongue of {} is", "French")``.

    The fields are kept as given (apart from surrounding whitespace, which is stripped);
    ``fact_id`` is computed from normalised text. ``paraphrases`` and ``neighbours`` are probes:
    they travel with the fact but take no part in its identity or equality.
    """

    subject: str
    relation: str
    object: str
    paraphrases: tuple[str, ...] = field(default=(), compare=False)
    neighbours: tuple[Neighbour, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        for name in ("subject", "relation", "object"):
            value = _check_part(name, getattr(self, name))
            object.__setattr__(self, name, _WHITESPACE.sub(" ", value.strip()))
        for name, limit in (("subject", MAX_SUBJECT_CHARS), ("relation", MAX_RELATION_CHARS)):
            if len(getattr(self, name)) > limit:
                raise UserError(f"a fact's {name} is {len(getattr(self, name))} characters long; the limit is {limit}. Shorten it.")
        if SLOT in self.relation:
            check_template(self.relation)
        if len(self.object) > MAX_OBJECT_CHARS:
            raise UserError(
                f"a fact's object is {len(self.object)} characters long; the limit is {MAX_OBJECT_CHARS}. "
                "Store a short object (a name, a place, a word), not a passage."
            )
        object.__setattr__(self, "paraphrases", tuple(p.strip() for p in self.paraphrases if p and p.strip()))
        object.__setattr__(self, "neighbours", tuple(Neighbour(*n) if not isinstance(n, Neighbour) else n for n in self.neighbours))

    @classmethod
    def from_prompt(cls, prompt: str, subject: str, obj: str, **probes) -> "Fact":
        """A fact from a template (``"The mother tongue of {} is"``) or a full prompt that contains
        the subject (``"The mother tongue of Danielle Darrieux is"``)."""
        _check_part("subject", subject)
        _check_part("prompt", prompt)
        return cls(subject, template_from_prompt(prompt.strip(), subject.strip()), obj, **probes)

    @property
    def template(self) -> str:
        """The prompt with ``{}`` for the subject. The shorthand relation ``"lives in"`` reads
        ``"{} lives in"``; a possessive one (``"'s favourite colour is"``) joins without the space
        (``memlog.facttext``, the rule the store's ``FactRecord`` shares)."""
        return template_of(self.relation)

    @property
    def prompt(self) -> str:
        """The text recall completes: the template with the subject in its slot."""
        return prompt_of(self.subject, self.relation)

    @property
    def subject_span(self) -> tuple[int, int]:
        """Character span ``[start, end)`` of the subject in ``prompt``."""
        start = self.template.index(SLOT)
        return start, start + len(self.subject)

    @property
    def fact_id(self) -> str:
        return fact_id(self.subject, self.relation)

    @classmethod
    def of(cls, record) -> "Fact":
        """The fact of anything with ``subject``, ``relation`` and ``object`` attributes (a stored
        ``FactRecord``), probes included when it has them."""
        neighbours = tuple(Neighbour(n.prompt, n.answer, n.before) for n in getattr(record, "neighbours", ()))
        return cls(record.subject, record.relation, record.object, tuple(getattr(record, "paraphrases", ())), neighbours)

    def __str__(self) -> str:
        return f"{self.prompt} {self.object}"
