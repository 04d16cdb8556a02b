"""Event types: the immutable, past-tense facts that make up a memlog store.

Every state change of a store (an inject, an audit, a refresh, a revert, a prune, a
sleep cycle, a perplexity reading) is one of these frozen msgspec structs. Events hold
*references* to tensors (``BlobRef``: sha256, shape, dtype), never tensors: the tensors
live in the Zarr blob store and are written before the event that names them.

Events are encoded as JSON with a ``kind`` tag. ``decode_event`` refuses an event whose
``schema`` is newer than this code understands, or whose tag is unknown, with an error
that names the version.
"""

from __future__ import annotations

from typing import Union

import msgspec

from memlog.errors import IntegrityError
from memlog.store.records import AuditResult, BlobRef, FactRecord, LayerDelta

SCHEMA_VERSION = 2  # 2: LayerDelta.packed (one blob per layer); 1: separate u, v, keys blobs


class EventSchemaError(IntegrityError, ValueError):
    """An event could not be decoded: unknown kind, newer schema, or malformed payload."""


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """Base of every event. ``schema`` is the version of the code that wrote it."""

    schema: int = SCHEMA_VERSION


class StoreCreated(Event, tag="StoreCreated"):
    model_id: str
    model_source: str
    fingerprint: str
    layers: list[int]
    dtype: str
    config: dict


class CovarianceComputed(Event, tag="CovarianceComputed"):
    layer: int
    cov: BlobRef
    n_samples: int
    n_tokens: int
    corpus_sha256: str


class FactInjected(Event, tag="FactInjected"):
    """Wake injection of a fact: creates ``edit_id`` at ``version`` (1 for a new fact).

    When the fact's subject and relation were already active with another object, this
    is an update: ``supersedes_version`` names the version it replaces (same edit_id).
    """

    edit_id: str
    version: int
    fact: FactRecord
    deltas: list[LayerDelta]
    v_loss: float
    scale: float = 1.0
    supersedes_version: int | None = None
    seconds: float = 0.0
    weights_sha256: str = ""  # hash of the projected edit-layer weights right after this event
    # how the update was solved (``Memory.solve_settings``: wake mode, protected positions and
    # energy, MEMIT's norm penalty and v* stop), so a session's overrides are on the record;
    # absent in logs written before it existed
    settings: dict | None = None
    # v*'s target z* for the fact (d_model float32 at the last edit layer): what a joint re-solve
    # from the base weights writes again (``memlog.engine.joint``); absent in older logs
    target: BlobRef | None = None


class RecallAudited(Event, tag="RecallAudited"):
    """A batched greedy audit of all active facts. ``phase``: wake, sleep-pre, sleep-post, manual."""

    phase: str
    cycle: int | None
    results: list[AuditResult]
    recall: float
    degraded: int
    seconds: float = 0.0
    # means over the facts that were measured (None: none was); absent in older logs
    paraphrase_recall: float | None = None
    neighbour_unchanged: float | None = None
    chat_recall: float | None = None
    degraded_by: str = "exact"


class EditReverted(Event, tag="EditReverted"):
    """The edit's current version is removed from the weights (scale 0)."""

    edit_id: str
    version: int
    reason: str
    cycle: int | None = None
    weights_sha256: str = ""  # hash of the projected edit-layer weights right after this event


class EditRefreshed(Event, tag="EditRefreshed"):
    """A constrained re-injection of a degraded fact.

    In-place mode: same ``edit_id``, ``version`` = previous + 1, replacing it.
    Copy mode: a new ``edit_id`` with ``copy_of`` naming the original, beside it in the ledger.
    ``strategy``: ``reinject`` (the edit was reverted first and solved again; its deltas are the
    new solution) or ``correct`` (no revert; the deltas are the previous version's factors with a
    constrained correction's factors appended, so the version still holds the whole edit).
    """

    edit_id: str
    version: int
    fact: FactRecord
    deltas: list[LayerDelta]
    v_loss: float
    n_constraint_keys: int
    mode: str
    cycle: int | None
    copy_of: str | None = None
    scale: float = 1.0
    seconds: float = 0.0
    weights_sha256: str = ""  # hash of the projected edit-layer weights right after this event
    strategy: str = "reinject"
    settings: dict | None = None  # as FactInjected.settings
    # the object's v* NLL on the weights the refresh was solved on (v*'s first step; with the
    # ``correct`` strategy those still hold the fact's edit, so it tracks the fact's progress from
    # refresh to refresh); absent in older logs
    v_loss_before: float | None = None
    target: BlobRef | None = None  # as FactInjected.target


class RefreshRolledBack(Event, tag="RefreshRolledBack"):
    """A refresh that raised perplexity beyond the bound was undone (its version is inactive again).
    ``ppl_limit``: the ceiling it crossed (``EngineConfig.ppl_ceiling``; absent in older logs).
    ``ppl_after`` is None when the perplexity after it was not a finite number."""

    edit_id: str
    version: int
    ppl_before: float
    ppl_after: float | None
    cycle: int | None
    weights_sha256: str = ""  # hash of the projected edit-layer weights right after this event
    ppl_limit: float | None = None


class RefreshFailed(Event, tag="RefreshFailed"):
    """A degraded edit's refresh could not be solved (e.g. the null-space constraint left no room).

    Nothing changed: the edit's current version stays as it was (applied). ``reason`` is the
    solver's message; ``n_constraint_keys`` the size of the last constraint set tried.
    """

    edit_id: str
    version: int
    reason: str
    n_constraint_keys: int
    cycle: int | None


class EditPruned(Event, tag="EditPruned"):
    """The edit leaves the ledger (and the weights) for good."""

    edit_id: str
    version: int
    reason: str
    cycle: int | None = None
    weights_sha256: str = ""  # hash of the projected edit-layer weights right after this event


class FactReleased(Event, tag="FactReleased"):
    """The fact leaves the memory's care and its edit stays in the weights: it is no longer
    audited, held by constrained solves or refreshed, so later edits may overwrite it. Nothing in
    the weights changes, so no other fact moves; a prune reverts the edit, and the facts solved on
    top of it break (docs/RESULTS.md, "Reach on the store"). A new inject of the fact supersedes
    the released edit (in place: no second edit for one fact)."""

    edit_id: str
    version: int
    reason: str
    cycle: int | None = None


class RefreshSuspended(Event, tag="RefreshSuspended"):
    """Sleep stops refreshing a fact that stayed degraded through ``refreshes`` cycles in a row
    that refreshed it (``memlog.engine.stale``; a cycle counts once however often it tried);
    it is refreshed again once it is recalled in an audit or injected anew."""

    fact_id: str
    edit_id: str
    refreshes: int
    cycle: int | None


class SleepTriggered(Event, tag="SleepTriggered"):
    pressure: float
    threshold: float


class SleepStarted(Event, tag="SleepStarted"):
    cycle: int
    refresh_mode: str
    cap: int | None  # None: the null-space budget (``memlog.engine.wake``)
    tau: float
    refresh_strategy: str = "reinject"


class PerplexityMeasured(Event, tag="PerplexityMeasured"):
    """``phase``: base, wake, wake-check (an inject under a PPL budget), sleep-before, sleep-after, refresh-check."""

    ppl: float
    phase: str
    cycle: int | None = None
    n_tokens: int = 0


class SleepEnded(Event, tag="SleepEnded"):
    cycle: int
    recall_before: float
    recall_after: float
    degraded_before: int
    degraded_after: int
    refreshed: int
    reverted: int
    pruned: int
    rolled_back: int
    ledger_size: int
    active_facts: int
    ppl_before: float
    ppl_after: float
    seconds: float
    step_seconds: dict = {}
    released: int = 0  # facts the budget released this cycle (FactReleased)


class ConstraintRoom(Event, tag="ConstraintRoom"):
    """The room a constrained memory has left, per edit layer: ``rank_left`` = d_in − rank of
    the protected facts' audit keys, ``delta_norm`` = ‖W − W_base‖_F / ‖W_base‖_F of the live
    weights, ``reach`` = the median share of its residual a one-key solve writes at a new key
    (``memlog.core.room``; None in logs written before it was measured). ``phase``: wake (the
    protected set of that edit, measured by the edit before the new facts join it; reach at
    the edit's own keys) or sleep (every active fact, measured before the cycle's prune; reach
    at the newest facts' keys against the others')."""

    phase: str
    layers: list[int]
    rank_left: list[int]
    delta_norm: list[float]
    protected: int
    cycle: int | None = None
    reach: list[float] | None = None


class ConsolidatedLayer(msgspec.Struct, frozen=True):
    """A consolidation's factors at one layer: ΔW ≈ A Bᵀ, stored as one blob [A; B] stacked by
    rows ((d_out + d_in) × rank, ``d_out`` recorded to split it). No keys: the members keep theirs."""

    layer: int
    factors: BlobRef
    d_out: int

    def __post_init__(self) -> None:
        shape = self.factors.shape
        if len(shape) != 2 or self.d_out <= 0 or shape[0] <= self.d_out:
            raise ValueError(f"layer {self.layer} consolidation: factor shape {shape} does not split with d_out={self.d_out}")


class ConsolidationMember(msgspec.Struct, frozen=True):
    """An edit version a consolidation replaces in the projection."""

    edit_id: str
    version: int


class Consolidated(Event, tag="Consolidated"):
    """The applied edits ``members`` are projected through one low-rank factor pair per layer
    instead of their own factors, which stay stored: a truncated SVD of their summed factors
    (``method`` "svd"), or their joint re-solve from the base weights (``method`` "joint").

    ``rtol``: singular values below ``rtol`` × the largest were dropped; ``columns``: the
    members' stacked factor columns per layer, ``rank``: the kept rank per layer (both in the
    order of ``layers``); ``max_output_change``: the largest relative change of a member's edit
    layer output at its own keys, measured when it was made (``memlog.engine.consolidate``).
    """

    consolidation_id: str
    members: list[ConsolidationMember]
    layers: list[ConsolidatedLayer]
    rtol: float
    columns: list[int]
    rank: list[int]
    max_output_change: float
    seconds: float = 0.0
    weights_sha256: str = ""  # hash of the projected edit-layer weights right after this event
    # "svd": the truncated SVD of the members' summed factors; "joint": one MEMIT solve of all the
    # members from the base weights with their stored v* targets, at λ ``lam``
    # (``memlog.engine.joint``). Absent in older logs: "svd"
    method: str = "svd"
    lam: float | None = None


class ConsolidationReverted(Event, tag="ConsolidationReverted"):
    """A consolidation no longer replaces its members: each is projected as before it."""

    consolidation_id: str
    reason: str = "manual"
    weights_sha256: str = ""  # hash of the projected edit-layer weights right after this event


AnyEvent = Union[
    StoreCreated,
    CovarianceComputed,
    FactInjected,
    RecallAudited,
    EditReverted,
    EditRefreshed,
    RefreshRolledBack,
    EditPruned,
    FactReleased,
    RefreshSuspended,
    SleepTriggered,
    RefreshFailed,
    SleepStarted,
    PerplexityMeasured,
    SleepEnded,
    ConstraintRoom,
    Consolidated,
    ConsolidationReverted,
]

EVENT_KINDS: dict[str, type[Event]] = {cls.__struct_config__.tag: cls for cls in AnyEvent.__args__}

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEvent)


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_event(raw: bytes | str) -> Event:
    """Decode one JSON event, with a clear error for a newer schema or an unknown kind."""
    if isinstance(raw, str):
        raw = raw.encode()
    try:
        header = msgspec.json.decode(raw, type=dict)
    except msgspec.DecodeError as exc:
        raise EventSchemaError(f"event is not valid JSON: {exc}") from exc
    kind = header.get("kind")
    schema = header.get("schema", SCHEMA_VERSION)
    if isinstance(schema, int) and schema > SCHEMA_VERSION:
        raise EventSchemaError(
            f"event of kind {kind!r} was written with schema version {schema}, "
            f"but this memlog understands up to version {SCHEMA_VERSION}; upgrade memlog"
        )
    if kind not in EVENT_KINDS:
        raise EventSchemaError(
            f"unknown event kind {kind!r} (schema version {schema}): a newer memlog may have written it; "
            "upgrade memlog to read this log. Known kinds: " + ", ".join(sorted(EVENT_KINDS))
        )
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise EventSchemaError(f"malformed {kind} event (schema version {schema}): {exc}") from exc


def event_kind(event: Event) -> str:
    return type(event).__struct_config__.tag


def edit_key(event: Event) -> tuple[str, int] | None:
    """The (edit_id, version) an event *creates*, or None. Unique across the log."""
    if isinstance(event, (FactInjected, EditRefreshed)):
        return (event.edit_id, event.version)
    return None


def blob_refs(event: Event) -> list[BlobRef]:
    """Every blob an event references (for integrity checks and gc)."""
    refs: list[BlobRef] = []
    if isinstance(event, (FactInjected, EditRefreshed)):
        for d in event.deltas:
            refs.extend(ref for _, ref in d.refs())
        if event.target is not None:
            refs.append(event.target)
    elif isinstance(event, CovarianceComputed):
        refs.append(event.cov)
    elif isinstance(event, Consolidated):
        refs.extend(layer.factors for layer in event.layers)
    return refs
