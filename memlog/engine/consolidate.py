"""Consolidation: the applied edits' factors folded into one low-rank pair per edit layer.

Every applied edit keeps its own factors, so a projection concatenates Σ columns over all
of them although ΔW_l has rank at most min(d_out, d_in). ``consolidate`` replaces them, per
layer, by a truncated SVD of their sum, computed without forming the d_out × d_in matrix:

    U_s = [s_1 U_1 … s_N U_N] = Q_u R_u,   V_s = [V_1 … V_N] = Q_v R_v      (thin QR, float64)
    R_u R_vᵀ = P Σ Qᵀ                                                     (SVD of the small core)
    A = Q_u P_r Σ_r,   B = Q_v Q_r                                         (σ_j > rtol · σ_1)

so that A Bᵀ = U_s V_sᵀ up to the dropped singular values (and float32 storage). The pair is
written to the blob store, then one ``Consolidated`` event names it and the member versions it
replaces, with the largest relative change of a member's edit-layer output at its own keys,
``max_j ‖(W_after − W_before) K_j‖ / ‖W_before K_j‖``, measured on the projected weights.
The members' own factors stay stored: the projection subtracts a member that later leaves
(reverted, refreshed, updated, pruned), and ``revert_consolidation`` (a
``ConsolidationReverted`` event) gives back the members' individual projection bit for bit
(``memlog.projections.consolidation``). All of it is one unit of work: blobs first, the event
last; a failure in between drops the written blobs and leaves the store as it was.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import msgspec
import numpy as np
import torch

from memlog.core.lowrank import factored_svd
from memlog.engine.joint import joint_factors
from memlog.errors import UserError
from memlog.progress import ProgressFn, no_progress
from memlog.projections.consolidation import projection_terms, stacked_columns
from memlog.projections.ledger import Ledger
from memlog.store.deltas import read_ab, read_factors, read_uv, write_consolidated_layer
from memlog.store.events import Consolidated, ConsolidatedLayer, ConsolidationMember, ConsolidationReverted

# Singular values below DEFAULT_RTOL × the largest are dropped. Chosen from the spectra measured
# on the embedded model (docs/RESULTS.md, "Consolidation"): well below the float32 noise of a
# projection, so every fact's output stays within 1e-5 relative.
DEFAULT_RTOL = 1e-7


@dataclass
class ConsolidationReport:
    consolidation_id: str
    seq: int
    members: int
    columns: list[int]
    rank: list[int]
    rtol: float
    max_output_change: float
    seconds: float
    method: str = "svd"
    lam: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def layer_factors(mem, entries, layer: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The entries' (scale · U_i, V_i) at ``layer``, float64, in entry order (one pair per entry
    that edits it). While a joint re-solve is active (also under a later consolidation), their sum
    is not theirs but the projection's: the pairs are then the projection's terms."""
    if any(c.active and c.method == "joint" for c in mem.ledger.consolidations.values()):
        return term_factors(mem, entries, layer)
    us, vs = [], []
    for entry in entries:
        for delta in entry.current.deltas:
            if delta.layer == layer:
                u, v, _ = read_factors(delta, mem.store.blobs.get)
                us.append(np.asarray(u, dtype=np.float64) * entry.scale)
                vs.append(np.asarray(v, dtype=np.float64))
    return us, vs


def term_factors(mem, entries, layer: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(coef · U, V) at ``layer`` of each projection term of ``entries``, float64, in term order."""
    us, vs = [], []
    for term in projection_terms(entries):
        for factors in term.factors:
            if factors.layer != layer:
                continue
            if isinstance(factors, ConsolidatedLayer):
                u, v = read_ab(factors, mem.store.blobs.get)
            else:
                u, v = read_uv(factors, mem.store.blobs.get)
            us.append(np.asarray(u, dtype=np.float64) * term.coef)
            vs.append(np.asarray(v, dtype=np.float64))
    return us, vs


def truncated_factors(us: list[np.ndarray], vs: list[np.ndarray], rtol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, B, σ) with A Bᵀ ≈ Σ U_i V_iᵀ, keeping σ_j > rtol · σ_1 (float64; see the module docstring)."""
    u = torch.from_numpy(np.concatenate([np.asarray(x, dtype=np.float64) for x in us], axis=1))
    v = torch.from_numpy(np.concatenate([np.asarray(x, dtype=np.float64) for x in vs], axis=1))
    left, sigma, right = factored_svd(u, v)
    if sigma.numel() == 0 or sigma[0] <= 0:  # the members sum to zero here
        return np.zeros((u.shape[0], 1)), np.zeros((v.shape[0], 1)), sigma.numpy()
    rank = max(1, int(torch.count_nonzero(sigma > rtol * sigma[0])))
    return (left[:, :rank] * sigma[:rank]).numpy(), right[:rank].T.contiguous().numpy(), sigma.numpy()


def output_changes(before: dict[int, torch.Tensor], after: dict[int, torch.Tensor], keys: dict[str, dict[int, np.ndarray]]) -> dict[str, float]:
    """Per edit: the largest, over layers, of ‖(W_after − W_before) K‖_F / ‖W_before K‖_F at its keys."""
    out = {}
    for edit_id, per_layer in keys.items():
        worst = 0.0
        for layer, k in per_layer.items():
            kt = torch.from_numpy(np.ascontiguousarray(k)).to(torch.float64)
            wb = before[layer].to(torch.float64)
            change = torch.linalg.norm((after[layer].to(torch.float64) - wb) @ kt)
            worst = max(worst, float(change / torch.linalg.norm(wb @ kt).clamp_min(1e-30)))
        out[edit_id] = worst
    return out


def standing_for_all(entries):
    """The one consolidation that stands for every one of ``entries`` (and has no other member), else None."""
    standing = {e.consolidated_in() for e in entries}
    only = next(iter(standing)) if len(standing) == 1 else None
    return only if only is not None and len(only.members) == len(entries) else None


def joint_due(mem) -> bool:
    """Whether a joint re-solve would change anything: at least two applied edits, and not all
    of them standing in one joint re-solve already."""
    entries = mem.ledger.applied_entries()
    whole = standing_for_all(entries)
    return len(entries) >= 2 and not (whole is not None and whole.method == "joint")


def projection_width(mem) -> int:
    """The most factor columns the head's projection concatenates at one edit layer."""
    entries = mem.ledger.applied_entries()
    return max((stacked_columns(entries, layer) for layer in mem.header.layers), default=0)


def member_keys(mem, entries) -> dict[str, dict[int, np.ndarray]]:
    """Each entry's keys (d_in × columns) per layer, read from its stored deltas."""
    return {e.edit_id: {d.layer: read_factors(d, mem.store.blobs.get)[2] for d in e.current.deltas} for e in entries}


def _check(mem, rtol: float, method: str = "svd") -> list:
    if not (0.0 <= rtol < 1.0):
        raise UserError(f"--rtol must be in [0, 1), got {rtol}")
    entries = mem.ledger.applied_entries()
    if len(entries) < 2:
        raise UserError(f"nothing to consolidate: {len(entries)} applied edit(s); consolidation needs at least 2")
    whole = standing_for_all(entries)
    if whole is not None and whole.method == method:
        raise UserError(f"nothing to consolidate: the {len(entries)} applied edits are already consolidated in {whole.consolidation_id}")
    return entries


def consolidate(mem, rtol: float = DEFAULT_RTOL, progress: ProgressFn = no_progress, joint: bool = False, lam: float | None = None) -> ConsolidationReport:
    """Consolidate every applied edit (see the module docstring); one committed unit of work.
    ``joint``: the factors are the members' joint re-solve from the base weights at λ ``lam``
    (None: the store's) instead of the SVD of their sum (``memlog.engine.joint``)."""
    mem.store.require_writable("consolidate")
    entries = _check(mem, rtol, "joint" if joint else "svd")
    start = time.perf_counter()
    layers = list(mem.projector.layers)
    with mem.unit():
        if joint:
            progress("re-solve", 0, 1)
            solved = joint_factors(mem, entries, lam)
            progress("re-solve", 1, 1)
        cid = mem.ledger.next_consolidation_id()
        written, columns, ranks = [], [], []
        for i, layer in enumerate(layers):
            progress("consolidate", i, len(layers))
            if joint:
                us, vs = ([solved[layer][0]], [solved[layer][1]]) if layer in solved else ([], [])
            else:
                us, vs = layer_factors(mem, entries, layer)
            if not us:
                continue
            a, b, _ = truncated_factors(us, vs, rtol)
            written.append(write_consolidated_layer(mem.store.blobs, layer, a, b))
            columns.append(sum(x.shape[1] for x in us))
            ranks.append(int(a.shape[1]))
        progress("consolidate", len(layers), len(layers))
        before = {layer: mem.projector.layer_sum(layer, entries) for layer in layers}
        event = Consolidated(
            consolidation_id=cid,
            members=[ConsolidationMember(edit_id=e.edit_id, version=e.version) for e in entries],
            layers=written,
            rtol=float(rtol),
            columns=columns,
            rank=ranks,
            max_output_change=0.0,
            method="joint" if joint else "svd",
            lam=(mem.solve_settings()["lam"] if lam is None else float(lam)) if joint else None,
        )
        trial = Ledger.fold([(item.seq, item.event) for item in mem.logged] + [(mem.head_seq + 1, event)])
        after = {layer: mem.projector.layer_sum(layer, trial.applied_entries()) for layer in layers}
        changes = output_changes(before, after, member_keys(mem, entries))
        worst = max(changes.values(), default=0.0)
        seconds = time.perf_counter() - start
        mem.emit(msgspec.structs.replace(event, max_output_change=worst, seconds=seconds), project=True)
    return ConsolidationReport(cid, mem.head_seq, len(entries), columns, ranks, float(rtol), worst, seconds, event.method, event.lam)


def revert_consolidation(mem, consolidation_id: str | None = None) -> dict:
    """Stop a consolidation standing for its members (default: the latest active one)."""
    mem.store.require_writable("consolidate --revert")
    active = [c for c in mem.ledger.consolidations.values() if c.active]
    if consolidation_id is None:
        if not active:
            raise UserError("no active consolidation to revert; see `memlog log --kind Consolidated`")
        target = max(active, key=lambda c: c.seq)
    else:
        target = mem.ledger.consolidations.get(consolidation_id)
        if target is None or not target.active:
            known = ", ".join(c.consolidation_id for c in active) or "none"
            raise UserError(f"no active consolidation {consolidation_id!r} (active: {known})")
    with mem.unit():
        mem.emit(ConsolidationReverted(consolidation_id=target.consolidation_id), project=True)
    return {"consolidation_id": target.consolidation_id, "seq": mem.head_seq, "members": len(target.members)}
