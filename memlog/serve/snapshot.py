"""The serving snapshot: a second set of edit-layer weights that only changes between events.

The writer (``Memory``) rebuilds its model's edit layers many times inside one unit of work
(a sleep cycle reverts, refreshes and audits). Requests must never see those intermediate
weights nor wait for the unit to end, so they run on a *serving model*: a copy of the model
that shares every tensor with the writer's model except the edit layers' weights (a few
matrices, not a second model). ``sync`` folds the events committed so far, rebuilds those
matrices off to the side, and swaps them in under ``lock``; a generation holds ``lock`` for
its whole run, so it sees one consistent snapshot, and a swap waits for at most the running
generation. A watcher thread calls ``sync`` every ``poll_s`` so a running sleep is served
cycle by cycle as its events commit.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import threading

import torch

from memlog.core.model import LoadedModel
from memlog.projections.ledger import Ledger
from memlog.projections.weights import WeightProjector
from memlog.replay.points import parse_point, resolve_point
from memlog.replay.replay import fact_rows


def serving_copy(lm: LoadedModel, layers: list[int]) -> torch.nn.Module:
    """A copy of ``lm.model`` sharing every parameter and buffer except the edit layers' weights."""
    edit = {id(lm.adapter.edit_weight(lm.model, layer)) for layer in layers}
    memo = {id(t): t for t in itertools.chain(lm.model.parameters(), lm.model.buffers()) if id(t) not in edit}
    return copy.deepcopy(lm.model, memo)


def tensors_sha256(sums: dict[int, torch.Tensor], dtype: torch.dtype) -> str:
    """The hash ``projections.weights.weights_sha256`` gives a model whose edit layers hold ``sums``."""
    h = hashlib.sha256()
    for layer in sorted(sums):
        raw = sums[layer].to(dtype).to("cpu").contiguous()
        if raw.dtype == torch.bfloat16:
            raw = raw.view(torch.int16)
        h.update(str(layer).encode())
        h.update(raw.numpy().tobytes())
    return h.hexdigest()


class ServingSnapshot:
    """The weights requests are answered from, and the ledger they were folded from."""

    def __init__(self, mem, poll_s: float = 0.25):
        self.mem = mem
        lm = mem.editor.lm
        self.layers = list(mem.header.layers)
        self.dtype = lm.adapter.edit_weight_view(lm.model, self.layers[0]).dtype
        mem.projector.project([])  # copy the model while it holds the base weights
        try:
            model = serving_copy(lm, self.layers)
        finally:
            mem.project()
        self.lm = LoadedModel(model=model, tokenizer=lm.tokenizer, adapter=lm.adapter, model_id=lm.model_id, source=lm.source, spec=lm.spec)
        self.projector = WeightProjector(model, lm.adapter, self.layers, mem.store.blobs.get)
        self.lock = threading.Lock()  # held by a generation, and by a swap
        self._sync_lock = threading.Lock()
        self._stop = threading.Event()
        self._logged: list = []
        self.ledger = Ledger()
        self.seq = 0
        self.sync()
        self._watcher = threading.Thread(target=self._watch, args=(poll_s,), name="memlog-snapshot", daemon=True)
        self._watcher.start()

    def committed(self) -> list:
        """The events committed so far (a private copy of the writer's list)."""
        return list(self.mem.logged)

    def sums(self, ledger: Ledger) -> dict[int, torch.Tensor]:
        entries = ledger.applied_entries()
        return {layer: self.projector.layer_sum(layer, entries) for layer in self.layers}

    @torch.no_grad()
    def sync(self) -> bool:
        """Swap in the weights of the committed log if it moved; return whether it did."""
        with self._sync_lock:
            logged = self.committed()
            if len(logged) == len(self._logged) and (not logged or logged[-1] is self._logged[-1]):
                return False
            ledger = Ledger.fold([(item.seq, item.event) for item in logged])
            sums = self.sums(ledger)
            with self.lock:
                self.projector.write(sums)
                self.ledger, self.seq, self._logged = ledger, ledger.head_seq, logged
            return True

    def _watch(self, poll_s: float) -> None:
        while not self._stop.wait(poll_s):
            self.sync()

    def close(self) -> None:
        self._stop.set()
        self._watcher.join(timeout=5)

    def replay(self, until: str) -> dict:
        """The facts and the rebuilt weights' hash at a point, without touching any model."""
        point = parse_point(until)
        logged = list(self._logged)
        seq = resolve_point(point, logged)
        ledger = Ledger.fold([(item.seq, item.event) for item in logged if item.seq <= seq])
        sha = tensors_sha256(self.sums(ledger), self.dtype)
        expected = ledger.last_weights_sha256
        return {
            "point": str(point),
            "seq": seq,
            "cycle": ledger.cycle,
            "weights_sha256": sha,
            "weights_match": (sha == expected) if expected else None,
            "facts": fact_rows(ledger),
        }
