"""The editor seam between the engine and the MEMIT math.

The engine decides *what* happens (inject, audit, refresh, prune); an ``Editor`` does the
model work: compute an edit's low-rank factors, recompute keys (prefix-averaged, and the
audit keys that a ``Protection`` holds), audit recall, measure perplexity and complete prompts. ``MemitEditor`` is the real one, over a
loaded model. Tests substitute a fast fake with the same methods.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import torch

from memlog.core.facts import Fact
from memlog.core.keys import KeyReader, bare_prompt_batch, compute_keys
from memlog.core.memit import EditResult, LayerFactors, Protection, memit_edit, solve_layers
from memlog.core.memit_hparams import MemitConfig
from memlog.core.model import LoadedModel
from memlog.core.perplexity import perplexity
from memlog.core.probes import ProbeResult, neighbour_completions, probe_audit
from memlog.core.recall import RecallResult, audit, complete
from memlog.core.room import KeyRoom


class Editor(Protocol):
    layers: list[int]

    def edit(self, facts: list[Fact], constraint_keys: dict[int, torch.Tensor] | None = None, protect: Protection | None = None) -> EditResult: ...

    def keys(self, facts: list[Fact]) -> dict[int, torch.Tensor]: ...

    def audit_keys(self, facts: list[Fact], positions: str = "subject") -> dict[int, torch.Tensor]: ...

    def key_counts(self, facts: list[Fact], positions: str = "subject") -> list[int]: ...

    def audit(self, facts: list[Fact]) -> list[RecallResult]: ...

    def perplexity(self) -> float: ...

    def complete(self, prompts: list[str], max_new_tokens: int) -> list[str]: ...

    def neighbour_completions(self, prompts: list[str]) -> list[str]: ...

    def probes(self, facts: list[Fact], befores: list[list[str]]) -> list[ProbeResult]: ...


@dataclass
class MemitEditor:
    """MEMIT over a loaded model with its per-layer covariances."""

    lm: LoadedModel
    config: MemitConfig
    covariances: dict  # layer -> C, or a prepared CovarianceFactor

    @property
    def layers(self) -> list[int]:
        return list(self.config.layers)

    def edit(self, facts: list[Fact], constraint_keys: dict[int, torch.Tensor] | None = None, protect: Protection | None = None) -> EditResult:
        """One MEMIT solve for ``facts`` (any number); ``protect`` holds other facts' audit keys fixed."""
        return memit_edit(self.lm, facts, self.config, self.covariances, constraint_keys=constraint_keys, protect=protect)

    def solve_targets(self, facts: list[Fact], targets: torch.Tensor, lam: float | None = None) -> dict[int, LayerFactors]:
        """MEMIT's layer solves for given v* ``targets`` (d_model × N), unconstrained, on the
        current weights (which are left as they were); ``lam`` overrides the config's λ."""
        config = self.config if lam is None else replace(self.config, lam=lam)
        deltas, _ = solve_layers(self.lm, facts, config, self.covariances, targets)
        return deltas

    def key_room(self, facts: list[Fact], positions: str = "subject", energy: float = 1.0, probe_facts: tuple[int, ...] = ()) -> KeyRoom:
        """``facts``' audit keys (at ``positions``, ``energy`` of them held) on the current weights,
        and the own keys (subject's last token) of ``facts[i]`` for i in ``probe_facts``: the room
        a constrained solve holding them leaves (``memlog.core.room.KeyRoom``)."""
        held = self.audit_keys(facts, positions) if facts else {layer: torch.zeros(self.key_dim(layer), 0) for layer in self.layers}
        probes = self.audit_keys([facts[i] for i in probe_facts], "subject") if probe_facts else {}
        counts = self.key_counts(facts, positions) if facts else []
        return KeyRoom(held, counts, probes, tuple(probe_facts), self.covariances, self.config.solve_lam, self.config.norm_penalty, energy)

    def audit_keys(self, facts: list[Fact], positions: str = "subject") -> dict[int, torch.Tensor]:
        """Per edit layer, ``facts``' audit keys (bare prompt at ``positions``, by default the
        subject's last token; d_in × keys) on the current weights: the keys ``Protection`` holds,
        as they are before the edit."""
        batch, rows, cols = bare_prompt_batch(self.lm, facts, positions)
        reader = KeyReader(self.lm, batch.input_ids, rows, cols)
        return {layer: reader.read(layer) for layer in self.layers}

    def key_counts(self, facts: list[Fact], positions: str = "subject") -> list[int]:
        """How many keys ``audit_keys(facts, positions)`` reads for each fact (tokenisation only)."""
        batch, rows, _ = bare_prompt_batch(self.lm, facts, positions)
        owners = batch.fact_index[rows].tolist()
        return [owners.count(i) for i in range(len(facts))]

    def key_dim(self, layer: int) -> int:
        return self.lm.adapter.key_dim(self.lm.model, layer)

    def weight(self, layer: int) -> torch.Tensor:
        """The edit layer's live weight (d_out × d_in view)."""
        return self.lm.adapter.edit_weight_view(self.lm.model, layer)

    def keys(self, facts: list[Fact]) -> dict[int, torch.Tensor]:
        return compute_keys(self.lm, facts, self.layers, self.config)

    def audit(self, facts: list[Fact]) -> list[RecallResult]:
        return audit(self.lm, facts) if facts else []

    def perplexity(self) -> float:
        return perplexity(self.lm)[0]

    def complete(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        return complete(self.lm, prompts, max_new_tokens=max_new_tokens)

    def neighbour_completions(self, prompts: list[str]) -> list[str]:
        return neighbour_completions(self.lm, prompts)

    def probes(self, facts: list[Fact], befores: list[list[str]]) -> list[ProbeResult]:
        return probe_audit(self.lm, facts, befores)
