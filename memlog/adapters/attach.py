"""Attach a store's memory to a model the caller already holds, and take it off again.

    import memlog
    handle = memlog.attach(model, "my-memory")           # the log's head; at="cycle=2" for a past point
    model.generate(...)                                  # the model now recalls the store's facts
    handle.detach()                                      # or memlog.detach(model)

``attach`` checks the model's edit layers against the store's base fingerprint (the same
``fingerprint`` a store records at creation) and refuses another model with
``ModelMismatchError``. It then writes memlog's projection, ``W_base + Σ s·U Vᵀ`` folded from
the log up to the point, into the edit layers in place: the same tensors ``memlog`` itself
would hold there. The store is only read (no lock is taken, nothing is written).

``detach`` copies back the exact tensors the model held before ``attach`` (kept as clones),
so the round trip is bit-exact. A model carries at most one attachment at a time; the
handle lives on the model as ``model.memlog_attachment``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from memlog.core.adapter import LayerAdapter
from memlog.core.fingerprint import is_whole_model, model_fingerprint
from memlog.core.model import fingerprint
from memlog.engine.header import check_fingerprint
from memlog.errors import UserError
from memlog.projections.ledger import Ledger
from memlog.projections.weights import WeightProjector
from memlog.replay.points import parse_point, resolve_point
from memlog.store.store import Store

ATTRIBUTE = "memlog_attachment"


@dataclass
class Attachment:
    """What ``attach`` applied, and how to take it off (``detach``)."""

    model: nn.Module = field(repr=False)
    store: str
    point: str
    seq: int
    cycle: int
    layers: list[int]
    active_facts: int
    weights_sha256: str
    weights_match_log: bool | None  # the hash the log recorded for these weights, when the dtype matches the store's
    _saved: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)
    _projector: WeightProjector | None = field(default=None, repr=False)

    @property
    def attached(self) -> bool:
        return getattr(self.model, ATTRIBUTE, None) is self

    @torch.no_grad()
    def detach(self) -> None:
        """Put back the exact weights the model held before ``attach``."""
        if not self.attached:
            raise UserError("this memory is no longer attached to the model (detach was already called)")
        self._projector.write(self._saved)
        delattr(self.model, ATTRIBUTE)
        self._saved, self._projector = {}, None


def _store_path(store) -> Path:
    if isinstance(store, Store):
        return store.path
    if isinstance(store, (str, Path)):
        return Path(store)
    raise UserError(f"attach needs a store directory (str or Path), got {type(store).__name__}")


@torch.no_grad()
def attach(model: nn.Module, store, at: str | None = None) -> Attachment:
    """Apply the memory of ``store`` (a directory) as it was at ``at`` (default: head) to ``model`` in place."""
    if not isinstance(model, nn.Module):
        raise UserError(f"attach needs a loaded transformers model (torch.nn.Module), got {type(model).__name__}")
    current = getattr(model, ATTRIBUTE, None)
    if current is not None:
        raise UserError(f"this model already carries the memory of {current.store} (seq {current.seq}); detach it first")
    path = _store_path(store)
    opened = Store.open(path, writable=False)  # readers take no lock
    try:
        header = opened.log.header()
        logged = opened.log.read()
        adapter = LayerAdapter.for_model(model)
        layers = list(header.layers)
        if is_whole_model(header.fingerprint):
            actual = model_fingerprint(model)  # every weight: the model must be the store's base, unedited
        else:  # a store from before whole-model fingerprints: its edit layers only
            actual = fingerprint(model, adapter, layers, header.model_id)
        check_fingerprint(header, actual, f"the model passed to attach ({type(model).__name__})")
        seq = logged[-1].seq if at is None else resolve_point(parse_point(at), logged)
        ledger = Ledger.fold([(item.seq, item.event) for item in logged if item.seq <= seq])
        saved = {layer: adapter.edit_weight_view(model, layer).detach().clone() for layer in layers}
        projector = WeightProjector(model, adapter, layers, opened.blobs.get)
        try:
            sha = projector.project(ledger.applied_entries())
        except BaseException:
            projector.write(saved)
            raise
    finally:
        opened.close()
    handle = Attachment(
        model=model,
        store=str(path),
        point=at or "head",
        seq=seq,
        cycle=ledger.cycle,
        layers=layers,
        active_facts=len(ledger.active_facts()),
        weights_sha256=sha,
        weights_match_log=(sha == ledger.last_weights_sha256) if ledger.last_weights_sha256 else None,
        _saved=saved,
        _projector=projector,
    )
    setattr(model, ATTRIBUTE, handle)
    return handle


def detach(model: nn.Module) -> None:
    """Take the attached memory off ``model``, restoring its weights bit-exactly."""
    handle = getattr(model, ATTRIBUTE, None)
    if handle is None:
        raise UserError("no memlog memory is attached to this model; nothing to detach")
    handle.detach()
