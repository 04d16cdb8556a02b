"""What a sleep refresh protects, and what to do when the protection leaves no room.

A refresh is solved with the same protection as a constrained wake edit
(``memlog.core.memit.Protection``): for every protected fact h and every edit layer l,
``ΔW_l k_h,l = 0``, where ``k_h,l`` is h's bare audit prompt's key at the subject's last
token, read at layer l on the weights as they are when the refresh is solved (after the
revert of the degraded edit) with the layers below l already carrying the refresh. The
protected facts are the cycle's healthy facts plus the facts refreshed earlier in the cycle.

A protected fact whose prompt agrees with the refreshed fact's up to the subject's last
character has the same key: holding it would forbid the refresh itself, so it is left out
of that refresh's protection (``protectable``).

Two cases still leave no room and make the solver raise ``NullSpaceError``:

- the protected keys span the whole key space (more protected facts than key dimensions, as
  on a small model with a few hundred facts), so every ``ΔW`` that spares them is zero;
- a protected key is (nearly) parallel to the refreshed fact's own key.

``solve_refresh`` then retries once, protecting a deterministic subset of the facts that
still leaves a null space (``room_leaving_subset``), chosen on their audit keys read on the
current weights (``editor.audit_keys``):

1. drop every fact whose key's |cosine| with the refreshed fact's own key exceeds
   ``BLOCKING_COSINE`` in some layer (it cannot be spared by an edit of this key);
2. of the rest, keep the most aligned with the refreshed key (mean |cosine| over the layers;
   ties by their place in the set), the protected facts an edit of this key disturbs most,
   while the keys they hold (``editor.key_counts``: one per fact at the subject's last token,
   two with the first positions, about 3 with the object positions, about 10 with every
   position) fill at most ``d_in // 2`` dimensions. Half the key space stays free, so the edit does not need a large norm.

The kept facts stay in their original order. If the retry fails too (or the subset is the
whole set), the error propagates and the engine records ``RefreshFailed``, leaving the edit
as it was.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from memlog.core.facts import Fact
from memlog.core.memit import Protection
from memlog.core.solve import NullSpaceError
from memlog.engine.wake import holds_a_key_of, shared_key

BLOCKING_COSINE = 0.99  # a protected key this aligned with the refreshed key blocks any edit of it
FREE_FRACTION = 0.5  # at most this fraction of the key dimensions is constrained in the retry

KeySet = dict[int, torch.Tensor]  # layer -> (d_in × M) keys, one column per fact


def protectable(protected: list[Fact], editing: list[Fact], positions: str = "subject") -> list[Fact]:
    """``protected`` less the facts whose held keys at ``positions`` include the key of one of
    ``editing`` (the same subject; ``memlog.engine.wake.holds_a_key_of``)."""
    keys = {shared_key(f) for f in editing}
    return [f for f in protected if not holds_a_key_of(f, keys, positions)]


def room_leaving_subset(constraints: KeySet, own: KeySet, widths: list[int] | None = None) -> list[int] | None:
    """The columns of ``constraints`` that leave room for ``own`` (see the module doc).

    ``constraints`` has one column per protected fact (its subject key, for scoring); ``widths``
    says how many keys each of those facts holds in the solve (default one each). None when the
    subset would be the whole set (retrying would fail the same way).
    """
    layers = sorted(constraints)
    m = int(constraints[layers[0]].shape[1]) if layers else 0
    if m == 0:
        return None
    cosines = []
    for layer in layers:
        keys = constraints[layer].to(torch.float64)
        mine = own[layer].to(torch.float64)[:, :1]
        norms = keys.norm(dim=0).clamp_min(1e-30) * mine.norm().clamp_min(1e-30)
        cosines.append((mine.T @ keys).abs().squeeze(0) / norms)
    cos = torch.stack(cosines)  # layers × M
    blocking = (cos > BLOCKING_COSINE).any(dim=0)
    d_in = int(constraints[layers[0]].shape[0])
    budget = max(0, int(d_in * FREE_FRACTION))
    widths = widths if widths is not None else [1] * m
    if len(widths) != m:
        raise ValueError(f"{len(widths)} key counts for {m} protected facts")
    score = cos.mean(dim=0).tolist()
    candidates = [j for j in range(m) if not bool(blocking[j])]
    candidates.sort(key=lambda j: (-score[j], j))
    keep, used = [], 0
    for j in candidates:
        if used + widths[j] <= budget:
            keep.append(j)
            used += widths[j]
    keep.sort()
    return None if len(keep) == m else keep


def solve_refresh(editor, fact: Fact, protected: list[Fact], protection: Callable[[list[Fact]], Protection]):
    """Solve a refresh of ``fact`` protecting ``protected`` (``protection(facts)`` says what is
    held of them: ``memlog.engine.wake.protection_of``); on no room, retry once under a subset.

    Returns ``(result, facts protected)``. Raises the solver's ``UserError`` when neither solve works.
    """
    positions = protection([]).positions
    protected = protectable(protected, [fact], positions)
    try:
        return editor.edit([fact], protect=protection(protected)), protected
    except NullSpaceError:
        if not protected:
            raise
        # scored on one key per fact (columns are facts), budgeted on the keys each one holds
        keep = room_leaving_subset(editor.audit_keys(protected), editor.audit_keys([fact]), editor.key_counts(protected, positions))
        if keep is None:
            raise
        subset = [protected[j] for j in keep]
        return editor.edit([fact], protect=protection(subset)), subset
