"""MEMIT hyper-parameters (``MemitConfig``) and the default edit layers.

A leaf module: the MEMIT steps (keys, v*, covariance, the solve) all read their settings from
``MemitConfig`` and import it from here, so none of them depends on ``memlog.core.memit``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from memlog.errors import UserError

DEFAULT_LAYERS: tuple[int, ...] = tuple(range(2, 10))  # measured on the embedded model: docs/EDIT_LAYERS.md
V_STOPS = ("loss", "most-probable")  # when v* stops a fact early (memlog.core.vstar.compute_v_star)


# ρ above this shrinks every update by a factor of about a million or more: a typo, not a setting
MAX_NORM_PENALTY = 1e6

# λ where nothing sets it: the paper's unconstrained wake and one-off edits outside a store. Any λ
# from 0.1 to 100 moves a single edit by under 3 % on the embedded model (docs/MEMIT.md)
UNCONSTRAINED_LAM = 10.0
# λ of a store with constrained wake, in units of the key dimension d. With C the mean k kᵀ of the
# reference keys, their mean q = kᵀC⁻¹k is exactly d, so this puts λ at twice a typical key's q
# (3,072 on the embedded model, d = 1,536). Measured there only: λ = 3,000 converged where λ = 10
# spiralled (docs/RESULTS.md, "λ at the scale of the keys")
CONSTRAINED_LAM_PER_KEY_DIM = 2.0


def store_lam(key_dim: int, constrained_in_place: bool) -> float:
    """The λ a new store gets when none is given: ``CONSTRAINED_LAM_PER_KEY_DIM`` × ``key_dim``
    for an in-place store with constrained wake, ``UNCONSTRAINED_LAM`` otherwise (the paper's
    protocol, which the reproductions and the demo run)."""
    return CONSTRAINED_LAM_PER_KEY_DIM * key_dim if constrained_in_place else UNCONSTRAINED_LAM


@dataclass(frozen=True)
class MemitConfig:
    """MEMIT hyper-parameters. From the paper: v* 30 steps at lr 0.5, 200 covariance samples.
    From MEMIT's reference hyper-parameters (kmeng01/memit, GPT-J): kl_factor, v_weight_decay,
    clamp_norm_factor and the early stop. Measured on the embedded model: the layers
    (docs/EDIT_LAYERS.md) and λ (``store_lam``; docs/MEMIT.md). memlog's own choices: the fixed
    context prefixes, and the off-by-default v* word-boundary term and v* over the fact's
    paraphrases. See docs/MEMIT.md.

    Example::

        from memlog.core.memit_hparams import MemitConfig

        MemitConfig().layers                                   # (2, 3, 4, 5, 6, 7, 8, 9)
        MemitConfig(layers=[7, 4, 5, 6], n_prefixes=3).layers  # (4, 5, 6, 7): sorted, deduplicated
        MemitConfig(layers=[])                                 # UserError: at least one edit layer
    """

    layers: tuple[int, ...] = DEFAULT_LAYERS
    v_steps: int = 30
    v_lr: float = 0.5
    kl_factor: float = 0.0625
    v_weight_decay: float = 0.5
    clamp_norm_factor: float = 0.75
    v_stop_loss: float = 0.05  # stop v* early once every fact's loss is below this (as MEMIT)
    # "loss": only the stop loss above; "most-probable": also stop a fact once its object is the
    # greedy choice in all its contexts (ENCORE's most-probable early stopping; memlog.core.vstar)
    v_stop: str = "loss"
    v_boundary_weight: float = 0.0  # weight of v*'s word-boundary term (the object as a whole word)
    v_paraphrases: int = 0  # how many of a fact's own paraphrases v* also optimises over (0: none)
    # λ for C = mean k kᵀ over tokens (docs/MEMIT.md). None: set when a store is created
    # (``store_lam``: 2 × the key dimension with constrained wake, 10 without); a solve outside a
    # store reads None as ``UNCONSTRAINED_LAM`` (``solve_lam``)
    lam: float | None = None
    # ρ: the solve also charges λρ·(tr C / d_in)·‖ΔW‖²_F, the update's Frobenius norm (0: MEMIT as
    # published; memlog.core.solve.penalised_covariance, docs/MEMIT.md "A norm penalty")
    norm_penalty: float = 0.0
    n_prefixes: int = 5  # contexts per fact: the bare prompt + n_prefixes - 1 fixed prefixes
    cov_samples: int = 200
    cov_seq_len: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        layers = tuple(sorted(set(int(x) for x in self.layers)))
        if not layers or layers[0] < 0:
            raise UserError(f"MEMIT needs at least one non-negative edit layer, got {self.layers!r}")
        object.__setattr__(self, "layers", layers)
        if self.lam is not None and (isinstance(self.lam, bool) or not isinstance(self.lam, (int, float)) or not 0 < self.lam < math.inf):  # also refuses NaN
            raise UserError(f"--lam must be a positive, finite number, got {self.lam!r}")
        if self.v_steps < 0 or self.v_lr <= 0 or self.clamp_norm_factor <= 0:
            raise UserError("MEMIT config: v_steps >= 0, and v_lr, clamp_norm_factor > 0 are required")
        if self.n_prefixes < 1 or self.cov_samples < 1 or self.cov_seq_len < 2 or self.v_paraphrases < 0:
            raise UserError("MEMIT config: n_prefixes >= 1, cov_samples >= 1, cov_seq_len >= 2 and v_paraphrases >= 0 are required")
        if self.v_stop not in V_STOPS:
            raise UserError(f"unknown v* stop {self.v_stop!r}; choose {' or '.join(V_STOPS)}")
        if isinstance(self.norm_penalty, bool) or not isinstance(self.norm_penalty, (int, float)):
            raise UserError(f"--norm-penalty must be a number, got {self.norm_penalty!r}")
        if not 0 <= self.norm_penalty <= MAX_NORM_PENALTY:  # also refuses NaN and infinity
            raise UserError(f"--norm-penalty must be >= 0 and at most {MAX_NORM_PENALTY:g} (larger leaves no update), got {self.norm_penalty}")

    @property
    def solve_lam(self) -> float:
        """The λ a solve uses: the set value, or ``UNCONSTRAINED_LAM`` where nothing set one."""
        return UNCONSTRAINED_LAM if self.lam is None else float(self.lam)
