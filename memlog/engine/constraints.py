"""The constraint set of a sleep refresh, and what to do when it leaves no room.

A refresh is solved under the null-space constraint ``ΔW K_h = 0`` over the healthy facts'
keys ``K_h`` (one column per fact, per layer). Two cases leave no room for the edit and make
the solver raise ``NullSpaceError``:

- the healthy keys span the whole key space (more healthy facts than key dimensions, as on
  a small model with a few hundred facts), so every ``ΔW`` that spares them is zero;
- a healthy fact has (nearly) the same key as the fact being refreshed, typically the same
  subject with another relation, so sparing it forbids the edit itself.

``solve_refresh`` then retries once, under a deterministic subset of the healthy keys that
still leaves a null space (``room_leaving_subset``):

1. drop every key whose |cosine| with the refreshed fact's own key exceeds ``BLOCKING_COSINE``
   in some layer (it cannot be spared by an edit of this key);
2. of the rest, keep the ``d_in // 2`` keys most aligned with the refreshed key (mean |cosine|
   over the layers; ties by their place in the set): the healthy facts an edit of this key
   disturbs most. Half the key space stays free, so the edit does not need a large norm.

The kept columns stay in their original order, the same columns in every layer. If the
retry fails too (or the subset is the whole set), the error propagates and the engine
records ``RefreshFailed``, leaving the edit as it was.
"""

from __future__ import annotations

import torch

from memlog.core.facts import Fact
from memlog.core.solve import NullSpaceError

BLOCKING_COSINE = 0.99  # a healthy key this aligned with the refreshed key blocks any edit of it
FREE_FRACTION = 0.5  # at most this fraction of the key dimensions is constrained in the retry

KeySet = dict[int, torch.Tensor]  # layer -> (d_in × M) keys, one column per fact


def n_keys(keys: KeySet | None) -> int:
    """The number of constraint keys (columns) in a key set."""
    return 0 if not keys else int(next(iter(keys.values())).shape[1])


def concat_keys(base: KeySet | None, extra: KeySet) -> KeySet:
    """``base`` with ``extra``'s columns appended, per layer."""
    if not base:
        return dict(extra)
    return {layer: torch.cat([base[layer], extra[layer]], dim=1) for layer in base}


def room_leaving_subset(constraints: KeySet, own: KeySet) -> KeySet | None:
    """A deterministic subset of ``constraints`` that leaves room for ``own`` (see the module doc).

    None when the subset would be the whole set (retrying would fail the same way).
    """
    layers = sorted(constraints)
    m = n_keys(constraints)
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
    score = cos.mean(dim=0).tolist()
    candidates = [j for j in range(m) if not bool(blocking[j])]
    candidates.sort(key=lambda j: (-score[j], j))
    keep = sorted(candidates[:budget])
    if len(keep) == m:
        return None
    index = torch.tensor(keep, dtype=torch.long)
    return {layer: constraints[layer].index_select(1, index.to(constraints[layer].device)) for layer in layers}


def solve_refresh(editor, fact: Fact, constraints: KeySet | None):
    """Solve a refresh of ``fact`` under ``constraints``; on no room, retry once under a subset.

    Returns ``(result, keys used)``. Raises the solver's ``UserError`` when neither solve works.
    """
    try:
        return editor.edit([fact], constraint_keys=constraints), constraints
    except NullSpaceError:
        if not constraints:
            raise
        subset = room_leaving_subset(constraints, editor.keys([fact]))
        if subset is None:
            raise
        return editor.edit([fact], constraint_keys=subset), subset
