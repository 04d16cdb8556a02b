"""MEMIT: write facts into the MLP output projections of a window of layers.

The orchestration of paper §3.1 (Meng et al. 2023, Alg. 1):

1. ``compute_v_star`` finds, for every fact, the residual ``z*`` at the output of the last
   edit layer L that makes the model say the object (``memlog.core.vstar``).
2. For each edit layer l in order: read the keys ``K`` at l and the current residual ``z``
   at L with the weights as edited so far (one stopped forward pass), spread the remaining
   error over the remaining layers, ``R = (z* − z) / (layers left)``, solve for the factored
   update ``ΔW_l = U Vᵀ`` (``memlog.core.solve``; null-space constrained when protected keys are
   given for l) and apply it *temporarily* so the next layer sees it.
3. Restore every edit layer's weight bit for bit. The caller applies the returned factors
   through its own weight projection (``W = W_base + Σ s_i U_i V_iᵀ``).

Batched (N facts) and single-fact edits are the same code path.

**Protected facts** (``Protection``): their keys are read at each edit layer l with the
weights as edited so far in this edit (a second ``KeyReader`` over their audit prompts,
resuming layer by layer), and layer l's update is solved under ``ΔW_l K_h,l = 0`` for them
(``solve_update(method="whitened")``), together with any fixed ``constraint_keys``. Facts
edited together that share a subject share one v* (``shared_key_groups``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from memlog.core.facts import Fact
from memlog.core.keys import KeyReader, LayerwiseReader, bare_prompt_batch, build_prompt_batch, context_prefixes, fact_contexts
from memlog.core.memit_hparams import MemitConfig
from memlog.core.model import LoadedModel
from memlog.core.solve import CovarianceFactor, solve_update
from memlog.core.vstar import shared_key_groups, solve_v_star
from memlog.errors import UserError
from memlog.progress import StepFn

__all__ = [
    "EditResult",
    "LayerFactors",
    "Protection",
    "applied",
    "apply_factors",
    "memit_edit",
    "prepare_covariances",
    "solve_layers",
]

@dataclass(frozen=True)
class LayerFactors:
    """One layer's update ``ΔW = u @ v.T`` and the keys it was solved for (all float32, cpu)."""

    u: torch.Tensor  # (d_out, N)
    v: torch.Tensor  # (d_in, N)
    keys: torch.Tensor  # (d_in, N)


@dataclass(frozen=True)
class Protection:
    """Facts an edit must not move: their audit prompts' keys (``positions``: ``"subject"``,
    the subject's last token; ``"object"``, also the positions that predict the object's tokens
    and the boundary after it; ``"prompt"``, every token; ``"all"``, every token of the prompt and
    of the object; with ``"+paraphrases"``, the same
    positions in each paraphrase that contains the subject) are held fixed at every edit layer.
    ``energy`` < 1 holds only the leading directions of those keys that carry that share of their
    whitened energy (``memlog.core.solve.held_subspace``): fewer key dimensions, not exact."""

    facts: tuple[Fact, ...] = ()
    positions: str = "subject"
    energy: float = 1.0


@dataclass
class EditResult:
    deltas: dict[int, LayerFactors]
    v_loss: float  # mean over facts of the final v* NLL of the object tokens
    v_losses: list[float]  # per fact
    v_losses_before: list[float]  # per fact: the object NLL on the weights before the edit (v*'s first step)
    v_norms: list[float]  # per fact: ‖z* − z‖ / ‖z‖ at the last layer (== clamp_norm_factor when clamped)
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    constraint_rank: dict[int, int] = field(default_factory=dict)  # rank of the keys held fixed, per layer
    # per layer, the median over the edit's keys of the share of its residual a one-key solve writes
    # under the same constraint (``memlog.core.room``); protected edits only
    constraint_reach: dict[int, float] = field(default_factory=dict)
    # v*'s targets z* (d_model × N, cpu float32): the residual at the last edit layer each fact's
    # edit aims at; a joint re-solve from the base weights reuses them (memlog.engine.joint)
    targets: torch.Tensor | None = None


def prepare_covariances(covs: dict[int, torch.Tensor], device=None, norm_penalty: float = 0.0) -> dict[int, CovarianceFactor]:
    """Factorise each layer's C once (on ``device``); pass the result as ``covs`` to ``memit_edit``
    to save the per-edit Cholesky factorisations (results are the same up to rounding).
    ``norm_penalty`` must be the ``MemitConfig.norm_penalty`` of the edits that use them."""
    return {layer: CovarianceFactor.of(cov, device, norm_penalty=norm_penalty) for layer, cov in covs.items()}


def _check_inputs(lm: LoadedModel, facts: list[Fact], cfg: MemitConfig, covs, constraint_keys) -> None:
    if not facts:
        raise UserError("memit_edit needs at least one fact")
    n_layers = lm.adapter.num_layers(lm.model)
    if cfg.layers[-1] >= n_layers:
        raise UserError(f"edit layer {cfg.layers[-1]} is out of range: the model has layers 0-{n_layers - 1}")
    missing = [layer for layer in cfg.layers if layer not in covs]
    if missing:
        raise UserError(f"no covariance for edit layer(s) {missing}; compute it for layers {list(cfg.layers)}")
    for layer, keys in (constraint_keys or {}).items():
        d_in = lm.adapter.key_dim(lm.model, layer)
        if keys is not None and (keys.dim() != 2 or keys.shape[0] != d_in):
            raise UserError(f"constraint keys for layer {layer} must be ({d_in}, M), got {tuple(keys.shape)}")


class _Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def add(self, name: str, start: float) -> float:
        now = time.perf_counter()
        self.timings[name] = self.timings.get(name, 0.0) + now - start
        return now


def solve_layers(
    lm: LoadedModel,
    facts: list[Fact],
    cfg: MemitConfig,
    covs: dict[int, torch.Tensor],
    targets: torch.Tensor,
    constraint_keys: dict[int, torch.Tensor] | None = None,
    progress: StepFn | None = None,
    timer: "_Timer | None" = None,
    protect: Protection | None = None,
    ranks: dict[int, int] | None = None,
    reaches: dict[int, float] | None = None,
) -> tuple[dict[int, LayerFactors], list[float]]:
    """Steps 2-3 of ``memit_edit`` for given v* ``targets`` (d_model × N at the last edit layer).

    Returns the per-layer factors and the per-fact ‖z* − z‖ / ‖z‖ before the first layer. The
    edit layers' weights are restored bit for bit, also on error. ``ranks``, when given,
    receives each layer's constraint rank; ``reaches`` the median reach of the edit's keys.
    """
    _check_inputs(lm, facts, cfg, covs, constraint_keys)
    timer = timer or _Timer()
    layers = list(cfg.layers)
    prefixes = context_prefixes(cfg.n_prefixes, cfg.seed)
    batch = build_prompt_batch(lm, fact_contexts(facts, prefixes))
    bare = torch.arange(len(facts), device=lm.device) * len(prefixes)
    targets = targets.to(lm.device, torch.float32)
    saved = {layer: lm.adapter.edit_weight_view(lm.model, layer).detach().clone() for layer in layers}
    deltas: dict[int, LayerFactors] = {}
    v_norms: list[float] = []
    reader = LayerwiseReader(lm, batch, len(facts), layers[-1])
    guarded = None
    if protect is not None and protect.facts:
        pbatch, rows, cols = bare_prompt_batch(lm, list(protect.facts), protect.positions)
        guarded = KeyReader(lm, pbatch.input_ids, rows, cols)
    mark = time.perf_counter()
    try:
        with torch.no_grad():
            for i, layer in enumerate(layers):
                keys, residual = reader.read(layer)
                current = residual[bare].T
                if i == 0:
                    v_norms = ((targets - current).norm(dim=0) / current.norm(dim=0)).tolist()
                mark = timer.add("keys", mark)
                resid = (targets - current) / (len(layers) - i)
                constraint = (constraint_keys or {}).get(layer)
                if guarded is not None:
                    held = guarded.read(layer)
                    constraint = held if constraint is None else torch.cat([constraint.to(held), held], dim=1)
                    mark = timer.add("protected_keys", mark)
                cov = covs[layer]
                cov = cov if isinstance(cov, CovarianceFactor) else cov.to(lm.device)
                info: dict = {}
                method = "whitened" if protect is not None else "svd"
                u, v = solve_update(keys, resid, cov, cfg.solve_lam, constraint, method=method, info=info, held_energy=protect.energy if protect is not None else 1.0, norm_penalty=cfg.norm_penalty)
                if ranks is not None:
                    ranks[layer] = info.get("rank", 0)
                if reaches is not None and info.get("reach"):
                    reaches[layer] = statistics.median(info["reach"])
                mark = timer.add("solve", mark)
                weight = lm.adapter.edit_weight_view(lm.model, layer)
                weight += (u @ v.T).to(weight.dtype)
                deltas[layer] = LayerFactors(u=u.cpu(), v=v.cpu(), keys=keys.float().cpu())
                mark = timer.add("apply", mark)
                if progress is not None:
                    progress(i + 2, len(layers) + 1)
    finally:
        with torch.no_grad():
            for layer, original in saved.items():
                lm.adapter.edit_weight_view(lm.model, layer).copy_(original)
        timer.add("restore", mark)
    return deltas, v_norms


def memit_edit(
    lm: LoadedModel,
    facts: list[Fact],
    cfg: MemitConfig,
    covs: dict[int, torch.Tensor | CovarianceFactor],
    constraint_keys: dict[int, torch.Tensor] | None = None,
    progress: StepFn | None = None,
    protect: Protection | None = None,
) -> EditResult:
    """Compute the MEMIT factors that write ``facts``; the model's weights are left unchanged.

    ``covs[l]`` is C for layer l: a tensor, or a ``CovarianceFactor`` from ``prepare_covariances``
    (faster for repeated edits). ``constraint_keys[l]`` (d_in × M), when given, are keys the
    update at layer l must not move (``ΔW_l K_h = 0``); layers absent from it are edited
    unconstrained. ``protect`` holds facts whose audit keys are recomputed and held fixed at
    each layer (see the module doc). ``progress(done, total)`` is called after v* and after each layer.
    """
    _check_inputs(lm, facts, cfg, covs, constraint_keys)
    timer, started = _Timer(), time.perf_counter()
    groups = shared_key_groups(facts) if protect is not None else None
    v_star = solve_v_star(lm, facts, cfg.layers[-1], cfg, groups)
    targets, nll = v_star.targets, v_star.nll
    timer.add("v_star", started)
    if progress is not None:
        progress(1, len(cfg.layers) + 1)
    ranks: dict[int, int] = {}
    reaches: dict[int, float] = {}
    deltas, v_norms = solve_layers(lm, facts, cfg, covs, targets, constraint_keys, progress, timer, protect, ranks, reaches)
    return EditResult(
        deltas=deltas,
        v_loss=float(nll.mean()),
        v_losses=[float(x) for x in nll],
        v_losses_before=[float(x) for x in v_star.nll_before],
        v_norms=v_norms,
        seconds=time.perf_counter() - started,
        timings=timer.timings,
        constraint_rank=ranks,
        constraint_reach=reaches if protect is not None else {},
        targets=targets.detach().float().cpu(),
    )


@contextmanager
def applied(lm: LoadedModel, deltas: dict[int, LayerFactors], scale: float = 1.0) -> Iterator[None]:
    """Apply ``deltas`` for the duration of a ``with`` block, then restore the weights bit for bit."""
    saved = {layer: lm.adapter.edit_weight_view(lm.model, layer).detach().clone() for layer in deltas}
    try:
        apply_factors(lm, deltas, scale)
        yield
    finally:
        with torch.no_grad():
            for layer, original in saved.items():
                lm.adapter.edit_weight_view(lm.model, layer).copy_(original)


def apply_factors(lm: LoadedModel, deltas: dict[int, LayerFactors], scale: float = 1.0) -> None:
    """Add ``scale · U Vᵀ`` to each layer's weight in place (for experiments and tests; the
    engine applies edits through its weight projection instead)."""
    with torch.no_grad():
        for layer, factors in deltas.items():
            weight = lm.adapter.edit_weight_view(lm.model, layer)
            delta = factors.u.to(weight.device, torch.float32) @ factors.v.to(weight.device, torch.float32).T
            weight += (scale * delta).to(weight.dtype)
