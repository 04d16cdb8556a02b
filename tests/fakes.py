"""A fast, deterministic fake editor and weight sink for engine tests.

The fake "model" is the set of applied ledger entries. A fact is recalled when its edit
is applied and a hash of (fact, version, number of applied edits) does not land in the
"interfered" bucket, so that injections degrade some facts and refreshes (new versions)
can repair them, as in the real system, without any torch model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from memlog.core.facts import Fact
from memlog.core.probes import ProbeResult
from memlog.engine.config import EngineConfig
from memlog.engine.memory import Memory
from memlog.store.events import StoreCreated
from memlog.store.store import Store, is_store

D_OUT, D_IN = 4, 6
LAYERS = [0, 1]


def _h(*parts) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16)


@dataclass
class FakeFactors:
    u: torch.Tensor
    v: torch.Tensor
    keys: torch.Tensor


@dataclass
class FakeEditResult:
    deltas: dict
    v_loss: float
    seconds: float = 0.0


@dataclass
class FakeRecall:
    recalled: bool
    completion: str


@dataclass
class FakeWeights:
    """Records which (fact, version) pairs are applied; the hash stands in for the weights hash."""

    applied: dict[str, int] = field(default_factory=dict)
    projections: int = 0

    def project(self, entries) -> str:
        self.projections += 1
        self.applied = {}
        h = hashlib.sha256()
        for e in entries:
            self.applied[e.fact_id] = e.version
            h.update(f"{e.edit_id}:{e.version}:{e.scale};".encode())
        return h.hexdigest()


@dataclass
class FakeEditor:
    weights: FakeWeights
    interference: int = 3  # one in this many (fact, version, load) combinations is degraded
    layers: list[int] = field(default_factory=lambda: list(LAYERS))
    d_out: int = D_OUT
    d_in: int = D_IN
    edits: int = 0
    constrained_edits: int = 0

    def edit(self, facts: list[Fact], constraint_keys=None):
        self.edits += 1
        if constraint_keys is not None:
            self.constrained_edits += 1
        rng = np.random.default_rng(_h(*(f.fact_id for f in facts), self.edits))
        deltas = {
            layer: FakeFactors(
                u=torch.from_numpy(rng.standard_normal((self.d_out, len(facts))).astype(np.float32)),
                v=torch.from_numpy(rng.standard_normal((self.d_in, len(facts))).astype(np.float32)),
                keys=torch.from_numpy(rng.standard_normal((self.d_in, len(facts))).astype(np.float32)),
            )
            for layer in self.layers
        }
        return FakeEditResult(deltas=deltas, v_loss=0.01)

    def keys(self, facts: list[Fact]):
        return {layer: torch.ones(self.d_in, len(facts)) for layer in self.layers}

    def _recalled(self, fact: Fact) -> bool:
        version = self.weights.applied.get(fact.fact_id)
        if version is None:
            return False
        return _h(fact.fact_id, fact.object, version, len(self.weights.applied)) % self.interference != 0

    def audit(self, facts: list[Fact]):
        return [FakeRecall(r, f" {f.object}" if r else " somewhere") for f in facts for r in [self._recalled(f)]]

    def perplexity(self) -> float:
        return 10.0 + 0.001 * len(self.weights.applied)

    def complete(self, prompts, max_new_tokens):
        return [" ..." for _ in prompts]

    def neighbour_completions(self, prompts):
        return [" ..." for _ in prompts]

    def probes(self, facts, befores):
        return [ProbeResult(None, None, None) for _ in facts]


def fake_header() -> StoreCreated:
    return StoreCreated(model_id="fake", model_source="test", fingerprint="sha256:fake", layers=list(LAYERS), dtype="float32", config={})


def fake_memory(path: Path, config: EngineConfig | None = None, interference: int = 3) -> Memory:
    """A Memory over a real DuckDB/Zarr store, with the fake editor and weights."""
    store = Store.open(path, writable=True) if is_store(path) else Store.create(path, fake_header())
    weights = FakeWeights()
    mem = Memory(store, FakeEditor(weights, interference=interference), weights, config or EngineConfig(ppl_bound=None))
    return mem
