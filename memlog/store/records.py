"""The value records that events carry: tensor references, layer deltas, facts and audit results.

``BlobRef`` names a content-addressed tensor in the Zarr blob store (sha256, shape, dtype);
``LayerDelta`` one edit layer's factors as blob references (either on-disk layout);
``FactRecord`` a fact as the log stores it (with its probes: paraphrases and neighbours,
``NeighbourProbe``); ``AuditResult`` one fact's audit outcome. They are frozen msgspec structs,
encoded inside the events of ``memlog.store.events``.
"""

from __future__ import annotations

import msgspec

from memlog.facttext import prompt_of, template_of


class BlobRef(msgspec.Struct, frozen=True):
    """A content-addressed tensor in the blob store."""

    sha256: str
    shape: tuple[int, ...]
    dtype: str


class LayerDelta(msgspec.Struct, frozen=True, omit_defaults=True):
    """One edit's low-rank update at one layer: ΔW = U Vᵀ, plus the keys it was solved for.

    U is (d_out × N), V is (d_in × N), keys is (d_in × N) where N is the number of keys.
    Written since schema 2 as one ``packed`` blob, [U; V; keys] stacked by rows
    ((d_out + 2·d_in) × N, ``d_out`` recorded to split it): one file per layer and edit
    instead of three, which is what dominates the disk use of small models. Schema-1 logs
    hold ``u``, ``v`` and ``keys`` as separate blobs and stay readable
    (``memlog.store.deltas`` reads both layouts).
    """

    layer: int
    u: BlobRef | None = None
    v: BlobRef | None = None
    keys: BlobRef | None = None
    packed: BlobRef | None = None
    d_out: int = 0

    def __post_init__(self) -> None:
        separate = (self.u, self.v, self.keys)
        if self.packed is None and any(ref is None for ref in separate):
            raise ValueError(f"layer {self.layer} delta needs either packed or all of u, v and keys")
        if self.packed is not None:
            if any(ref is not None for ref in separate):
                raise ValueError(f"layer {self.layer} delta has both packed and separate factors")
            rows = self.packed.shape[0] if self.packed.shape else 0
            if len(self.packed.shape) != 2 or self.d_out <= 0 or (rows - self.d_out) <= 0 or (rows - self.d_out) % 2:
                raise ValueError(f"layer {self.layer} delta: packed shape {self.packed.shape} does not split with d_out={self.d_out}")

    def refs(self) -> list[tuple[str, BlobRef]]:
        """The blobs this delta names, with what each holds."""
        if self.packed is not None:
            return [("packed", self.packed)]
        return [("u", self.u), ("v", self.v), ("keys", self.keys)]


class NeighbourProbe(msgspec.Struct, frozen=True, omit_defaults=True):
    """A neighbourhood prompt of a fact, its true answer, and the model's greedy completion of
    it just before the fact's edit (the reference an audit compares against)."""

    prompt: str
    answer: str
    before: str = ""


class FactRecord(msgspec.Struct, frozen=True, omit_defaults=True):
    """A fact as stored: identity (``fact_id``) is derived from subject and relation (a relation
    holding ``{}`` is the prompt template). ``paraphrases`` and ``neighbours`` are the fact's
    probes (absent in logs written before they existed)."""

    fact_id: str
    subject: str
    relation: str
    object: str
    paraphrases: list[str] = []
    neighbours: list[NeighbourProbe] = []

    @property
    def template(self) -> str:
        """The prompt with ``{}`` for the subject (the rule of ``memlog.facttext``, as ``Fact``'s)."""
        return template_of(self.relation)

    @property
    def prompt(self) -> str:
        """The text recall completes (the same as ``Fact.prompt`` of this fact)."""
        return prompt_of(self.subject, self.relation)


class AuditResult(msgspec.Struct, frozen=True, omit_defaults=True):
    """One fact's audit: exact-prompt recall, and, for facts with probes, the fraction of its
    paraphrases recalled, the fraction of its neighbours unchanged, and chat-template recall
    (None: not measured)."""

    fact_id: str
    edit_id: str
    recalled: bool
    completion: str
    paraphrase: float | None = None
    neighbours: float | None = None
    chat: bool | None = None
