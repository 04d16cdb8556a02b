"""The joint re-solve: every applied edit written again as one MEMIT batch from the base weights.

A store's edits are solved one batch at a time, each on top of the weights the earlier ones
left, and a constrained solve can write only the part of a new key that the held keys leave
free (docs/MEMIT.md, "Room, not rank"). MEMIT itself is a batch editor: v* targets for all the
facts, then one least-squares solve per layer for all of them together, on the unedited
weights. Every edit version stores its fact's v* target ``z*`` (the residual at the last edit
layer its edit aims at; ``FactInjected.target``), so the batch can be solved again at any time
without running v*:

1. the weights are projected to the base (no edit applied);
2. ``Editor.solve_targets`` runs MEMIT's layer loop (``memlog.core.memit.solve_layers``) for
   every applied edit's fact with its stored target, unconstrained, at the store's λ (or
   ``lam``);
3. ``memlog.engine.consolidate`` stores each layer's ``U Vᵀ`` as a ``Consolidated`` event with
   ``method`` "joint" that stands for all the members in the projection. Its revert gives back
   the members' own factors bit for bit, and replay reads the stored factors, so it is exact.

Facts that share their subject's key (the prompt up to the subject's last character: two
relations of one person) share one target: the one of the member written last, whose v* was
optimised for the group (``memlog.engine.wake.wake_plan`` edits a fact with its stored
companions). A member that leaves later (reverted, refreshed, pruned) is subtracted as its own
factors, as for any consolidation: for a joint solve that is an approximation of the solve
without it, which the next audit measures.
"""

from __future__ import annotations

import numpy as np
import torch

from memlog.core.memit_hparams import MemitConfig
from memlog.engine.wake import shared_key
from memlog.errors import UserError
from memlog.projections.facts import fact_of


def check_lam(lam: float | None) -> None:
    """UserError for a λ ``MemitConfig`` would refuse, before anything is solved."""
    MemitConfig(lam=lam)


def group_targets(entries, load) -> np.ndarray:
    """(d_model × N) float32: each entry's stored target, the latest-written one of its shared-key group."""
    keys = [shared_key(fact_of(e.current.fact)) for e in entries]
    latest: dict[str, object] = {}
    for key, entry in zip(keys, entries):
        if key not in latest or entry.current.seq > latest[key].current.seq:
            latest[key] = entry
    columns = [load(latest[key].current.target) for key in keys]
    return np.stack([np.asarray(c, dtype=np.float32).reshape(-1) for c in columns], axis=1)


def joint_factors(mem, entries, lam: float | None = None) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per edit layer, (U, V) float64 of the joint re-solve of ``entries`` (see the module
    docstring). Leaves the base weights projected: the caller emits the event that re-projects."""
    check_lam(lam)
    if not hasattr(mem.editor, "solve_targets"):
        raise UserError("this store's editor cannot re-solve edits from their targets")
    missing = [e.edit_id for e in entries if e.current.target is None]
    if missing:
        shown = ", ".join(missing[:5]) + (", …" if len(missing) > 5 else "")
        raise UserError(
            f"{len(missing)} of the {len(entries)} applied edits have no stored v* target ({shown}): they were written "
            "before targets were stored. `memlog consolidate` without --joint folds them as they are"
        )
    scaled = [e.edit_id for e in entries if e.scale != 1.0]
    if scaled:
        raise UserError(f"a joint re-solve writes every fact once; {len(scaled)} applied edits have a scale other than 1 (copy mode)")
    facts = [fact_of(e.current.fact) for e in entries]
    targets = torch.from_numpy(group_targets(entries, mem.store.blobs.get))
    mem.projector.project([])
    deltas = mem.editor.solve_targets(facts, targets, lam)
    return {layer: (f.u.double().numpy(), f.v.double().numpy()) for layer, f in deltas.items()}
