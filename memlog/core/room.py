"""The room a set of held keys leaves a constrained solve: rank, and reach at new keys.

A constrained solve (``memlog.core.solve.solve_update``) must leave every held key's output
where it is. Two numbers say how much that leaves it:

- **rank left**: ``d_in`` less the rank of the held keys (of their held part when only a share
  ``energy`` of their whitened energy is held). When it reaches 0 no edit is possible.
- **reach**: a solve of one new key ``k`` alone moves its output by ``q / (1 + q)`` of the
  change it asks for, with ``q = ‖(I − Q̃Q̃ᵀ) L⁻¹k‖²`` (``λC = L Lᵀ``, ``Q̃`` a basis of the held keys'
  whitened span; ``memlog.core.solve.room_at``). Keys of real facts are correlated, so the reach
  falls long before the rank runs out: on the embedded model, with every fact held at its object
  positions, a new fact's median reach is about 0.13 at 200 held facts and 0.06 at 300, while
  the rank is still a third free (docs/RESULTS.md, "The room the held keys leave").

``KeyRoom`` holds the keys read once (every fact's held keys, and the probe facts' own keys at
the subject's last token) and answers both, and what the reach would be with some facts no
longer held (``reach(without=…)``).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch

from memlog.core.solve import constraint_rank, room_at


@dataclass(frozen=True)
class KeyRoom:
    """Keys read once, per edit layer, and the solve's scale (λ, ρ, held energy).

    ``held[l]`` (d_in × keys) holds the keys of every fact, fact after fact, ``counts[i]`` of them
    for fact i; ``probes[l]`` (d_in × P) the own keys of the facts ``probe_facts`` (indices into the
    same facts), whose reach is measured against the *other* facts' held keys."""

    held: dict[int, torch.Tensor]
    counts: list[int]
    probes: dict[int, torch.Tensor]
    probe_facts: tuple[int, ...]
    covariances: dict
    lam: float
    norm_penalty: float = 0.0
    energy: float = 1.0

    def rank_left(self, without: frozenset[int] | set[int] = frozenset()) -> dict[int, int]:
        """Per layer, ``d_in`` less the rank the held keys of every fact (less ``without``) take."""
        cols = self.columns(without, keep_probes=True) if without else None
        out = {}
        for layer, keys in self.held.items():
            kept = keys if cols is None else keys[:, cols.to(keys.device)]
            rank = constraint_rank(kept, self.covariances[layer], self.lam, energy=self.energy, norm_penalty=self.norm_penalty) if kept.shape[1] else 0
            out[layer] = int(keys.shape[0]) - rank
        return out

    def columns(self, without: frozenset[int] | set[int] = frozenset(), keep_probes: bool = False) -> torch.Tensor:
        """The held-key columns of every fact except ``without`` and (unless ``keep_probes``) the probes."""
        out, start = [], 0
        skip = set(without) | (set() if keep_probes else set(self.probe_facts))
        for i, n in enumerate(self.counts):
            if i not in skip:
                out.extend(range(start, start + n))
            start += n
        return torch.tensor(out, dtype=torch.long)

    def reach(self, without: frozenset[int] | set[int] = frozenset()) -> dict[int, float] | None:
        """Per layer, the median reach of the probes' keys under a solve holding the other facts'
        keys (less ``without``). None without probes."""
        if not self.probe_facts:
            return None
        cols = self.columns(without)
        out = {}
        for layer, keys in self.held.items():
            held = keys[:, cols.to(keys.device)] if cols.numel() else None
            _, q = room_at(self.probes[layer], self.covariances[layer], self.lam, held, energy=self.energy, norm_penalty=self.norm_penalty)
            out[layer] = statistics.median((q / (1 + q)).tolist())
        return out
