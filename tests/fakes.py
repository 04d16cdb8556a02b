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
    v_losses_before: list | None = None
    targets: torch.Tensor | None = None  # v*'s targets (d_out × N here), stored per fact by the engine


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
    nll_before: object = None  # fact_id -> the object NLL v*'s first step reads (None: not reported)

    def edit(self, facts: list[Fact], constraint_keys=None, protect=None):
        self.edits += 1
        if constraint_keys is not None or protect is not None:
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
        before = None if self.nll_before is None else [self.nll_before(f.fact_id) for f in facts]
        targets = torch.from_numpy(rng.standard_normal((self.d_out, len(facts))).astype(np.float32))
        return FakeEditResult(deltas=deltas, v_loss=0.01, v_losses_before=before, targets=targets)

    def solve_targets(self, facts: list[Fact], targets: torch.Tensor, lam=None):
        """Factors for a joint re-solve: deterministic in the facts and their targets."""
        rng = np.random.default_rng(_h(*(f.fact_id for f in facts), float(targets.sum()), lam))
        n = len(facts)
        return {
            layer: FakeFactors(
                u=torch.from_numpy(rng.standard_normal((self.d_out, n)).astype(np.float32)),
                v=torch.from_numpy(rng.standard_normal((self.d_in, n)).astype(np.float32)),
                keys=torch.from_numpy(rng.standard_normal((self.d_in, n)).astype(np.float32)),
            )
            for layer in self.layers
        }

    def keys(self, facts: list[Fact]):
        return {layer: torch.ones(self.d_in, len(facts)) for layer in self.layers}

    def audit_keys(self, facts: list[Fact], positions: str = "subject"):
        return self.keys(facts)

    def key_counts(self, facts: list[Fact], positions: str = "subject") -> list[int]:
        return [1] * len(facts)

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
    mem = Memory(store, FakeEditor(weights, interference=interference), weights, config or EngineConfig(ppl_bound=None, wake="unconstrained"))
    return mem


@dataclass
class KeyedWeights(FakeWeights):
    """FakeWeights that also records which applied entries came from a refresh (version > 1 or a copy)."""

    refreshed: set[str] = field(default_factory=set)

    def project(self, entries) -> str:
        sha = super().project(entries)
        self.refreshed = {e.fact_id for e in entries if e.version > 1 or e.copy_of is not None}
        return sha


@dataclass
class KeyedEditor(FakeEditor):
    """A fake editor whose keys differ per fact and whose perplexity can cross the bound.

    - ``keys(facts)``: one fixed random unit vector per fact (seeded by its subject), so that
      constraint sets have real rank: ``d_in`` or more distinct keys span the key space;
    - ``edit`` with constraint keys (or protected facts: their ``keys``) raises ``NullSpaceError`` as the real solver does, when the
      constraint keys span every key dimension or the fact's own key lies in their span, and
      for any fact whose id is in ``unsolvable``;
    - ``perplexity()`` adds ``ppl_spike`` while a refreshed version of a fact in ``spiky`` is
      applied (so the engine's PPL guard rolls that refresh back);
    - a protected fact holds ``keys_held`` keys (its key and ``keys_held - 1`` more random unit
      vectors), as the real solve holds about 3 per fact at the object positions.
    """

    weights: KeyedWeights = None  # type: ignore[assignment]
    unsolvable: set[str] = field(default_factory=set)
    spiky: set[str] = field(default_factory=set)
    ppl_spike: float = 5.0
    failures: int = 0
    keys_held: int = 1

    def key_of(self, fact: Fact, index: int = 0) -> torch.Tensor:
        rng = np.random.default_rng(_h("key", fact.subject) if index == 0 else _h("key", fact.subject, index))
        k = torch.from_numpy(rng.standard_normal(self.d_in).astype(np.float32))
        return k / k.norm()

    def keys(self, facts: list[Fact]):
        block = torch.stack([self.key_of(f) for f in facts], dim=1) if facts else torch.zeros(self.d_in, 0)
        return {layer: block.clone() for layer in self.layers}

    def edit(self, facts: list[Fact], constraint_keys=None, protect=None):
        from memlog.core.solve import NullSpaceError

        if protect is not None:
            held = self.held_keys(list(protect.facts))
            constraint_keys = held if constraint_keys is None else {l: torch.cat([constraint_keys[l], held[l]], dim=1) for l in held}
        if constraint_keys is not None:
            block = next(iter(constraint_keys.values()))
            rank = int(torch.linalg.matrix_rank(block.double())) if block.numel() else 0
            own = torch.stack([self.key_of(f) for f in facts], dim=1).double()
            joint = int(torch.linalg.matrix_rank(torch.cat([block.double(), own], dim=1)))
            if any(f.fact_id in self.unsolvable for f in facts):
                self.failures += 1
                raise NullSpaceError(f"fake: no room for {facts[0].fact_id}")
            if rank >= self.d_in:
                self.failures += 1
                raise NullSpaceError(f"the constraint keys span all {self.d_in} key dimensions; a constrained edit would be a no-op")
            if joint <= rank:
                self.failures += 1
                raise NullSpaceError("new key(s) lie inside the span of the protected keys")
        return super().edit(facts, constraint_keys)

    def held_keys(self, facts: list[Fact]):
        columns = [self.key_of(f, i) for f in facts for i in range(self.keys_held)]
        block = torch.stack(columns, dim=1) if columns else torch.zeros(self.d_in, 0)
        return {layer: block.clone() for layer in self.layers}

    def audit_keys(self, facts: list[Fact], positions: str = "subject"):
        return self.keys(facts)

    def key_counts(self, facts: list[Fact], positions: str = "subject") -> list[int]:
        return [self.keys_held] * len(facts)

    def perplexity(self) -> float:
        spike = self.ppl_spike if self.weights.refreshed & self.spiky else 0.0
        return super().perplexity() + spike


def keyed_memory(path: Path, config: EngineConfig | None = None, interference: int = 3, d_in: int = D_IN, **editor_kw) -> Memory:
    """A Memory over a real store with the ``KeyedEditor``."""
    store = Store.open(path, writable=True) if is_store(path) else Store.create(path, fake_header())
    weights = KeyedWeights()
    editor = KeyedEditor(weights, interference=interference, d_in=d_in, **editor_kw)
    return Memory(store, editor, weights, config or EngineConfig(ppl_bound=None, wake="unconstrained"))
