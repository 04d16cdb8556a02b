"""Projection terms: which stored factors, with which coefficient, make up a projection.

Without consolidations a projection of ``entries`` is one term per entry, ``(its current
deltas, its scale)``, in the order given: exactly the sum the projector always computed.

A ``Consolidation`` (``memlog.projections.ledger``) stands for its members: one factor pair
per layer, ``A Bᵀ ≈ Σ_members s_m U_m V_mᵀ`` (``memlog.engine.consolidate``). The members'
own factors stay stored, so any projection can still be written exactly in terms of them:

- ``present``: the entries of ``entries`` that are members in the very state the
  consolidation replaced (applied, same version: ``LedgerEntry.consolidated_in``);
- ``missing``: the other members (reverted, refreshed to a new version, updated, pruned, or
  simply left out of ``entries`` by a caller that projects "everything but X").

When ``len(present) >= len(missing)`` (and present is not empty) the terms are the
consolidation's factors with coefficient 1, followed by each missing member's stored factors
with coefficient ``-s_m`` (the consolidated sum minus what is no longer in it); otherwise the
present members are summed one by one, as if there were no consolidation. A joint re-solve
(``method`` "joint", ``memlog.engine.joint``) is not a sum of its members' factors, so summing
them would put back weights it replaced: it stands for its members while any is present. A refreshed or
updated member's new version is never a member: it is always its own term. The choice only
depends on the ledger and ``entries``, so the same ledger always gives the same terms, in the
same order, and hence bit-identical weights; once a consolidation is reverted no entry points
at it and the terms are those of the log without it, bit for bit.

Order: entries in the given order; a used consolidation's block (its factors, then its missing
members in member order) takes the place of its first present member.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from memlog.projections.ledger import Consolidation, LedgerEntry
from memlog.store.events import ConsolidatedLayer
from memlog.store.records import LayerDelta


@dataclass(frozen=True)
class Term:
    """Stored factors (an edit version's deltas, or a consolidation's layers) times ``coef``."""

    factors: "tuple[LayerDelta, ...] | tuple[ConsolidatedLayer, ...]"
    coef: float


def _used(entries: Sequence[LedgerEntry]) -> dict[int, tuple[Consolidation, set[str]]]:
    present: dict[int, tuple[Consolidation, set[str]]] = {}
    for entry in entries:
        c = entry.consolidated_in()
        if c is not None:
            present.setdefault(id(c), (c, set()))[1].add(entry.edit_id)
    return {key: (c, ids) for key, (c, ids) in present.items() if c.method == "joint" or len(ids) >= len(c.members) - len(ids)}


def projection_terms(entries: Sequence[LedgerEntry]) -> list[Term]:
    """The terms whose sum is the projection of ``entries`` (see the module docstring)."""
    used = _used(entries)
    terms: list[Term] = []
    emitted: set[int] = set()
    for entry in entries:
        c = entry.consolidated_in()
        if c is None or id(c) not in used:
            terms.append(Term(tuple(entry.current.deltas), entry.scale))
            continue
        if id(c) in emitted:
            continue
        emitted.add(id(c))
        present = used[id(c)][1]
        terms.append(Term(tuple(c.layers), 1.0))
        terms.extend(Term(tuple(m.deltas), -m.scale) for edit_id, m in c.members.items() if edit_id not in present)
    return terms


def stacked_columns(entries: Sequence[LedgerEntry], layer: int) -> int:
    """Factor columns the projection of ``entries`` concatenates at ``layer`` (its matmul's inner size)."""
    return sum(
        f.factors.shape[1] if isinstance(f, ConsolidatedLayer) else (f.packed or f.u).shape[1]
        for t in projection_terms(entries)
        for f in t.factors
        if f.layer == layer
    )
