"""The edit ledger and fact health: a pure fold over events (no torch, no I/O).

``Ledger.fold(events)`` replays ``(seq, event)`` pairs into:

- ``entries``: every edit still in the ledger (not pruned), keyed by ``edit_id``, with its
  current version, its delta references, its scale and whether it is applied;
- ``facts``: every fact ever injected, with the entry that currently holds it, whether it
  is active, and its audit history (for the prune policy and time travel);
- cycle bookkeeping (the latest sleep cycle number).

Semantics, per event:

- ``FactInjected`` v1 creates an entry; a higher version (an update of the object)
  replaces the entry's delta in place.
- ``EditReverted`` takes the entry out of the weights; it stays in the ledger (and is
  counted there), so that copy mode can model the paper's accumulating ledger.
- ``EditRefreshed`` in ``in-place`` mode replaces the entry's delta (same ``edit_id``,
  ``version + 1``); in ``copy`` mode it creates a new entry beside the original.
- ``RefreshRolledBack`` restores the version that was current before the refresh, applied
  again unless the user had reverted it (a manual revert, i.e. any reason but ``degraded``).
  The rolled-back version number stays used: the next version of the edit is numbered after
  the highest ever written (``last_version``), so versions are monotone per edit.
- ``RefreshFailed`` changes nothing in the weights; the fact counts the failure.
- A manual ``EditReverted`` holds the edit (``held``): sleep leaves it alone until a wake
  update of the fact (the user saying otherwise) applies a new version.
- ``EditPruned`` removes the entry from the ledger for good.
- ``FactReleased`` makes the fact inactive (no longer audited, protected or refreshed) and
  leaves its entry applied: the weights do not change. A later ``FactInjected`` of the fact
  supersedes that entry (a new version of the same edit) and makes the fact active again.
- ``Consolidated`` points each member entry at a ``Consolidation`` (the member versions it
  replaces and its factors); ``ConsolidationReverted`` points them back at what they had
  before (``memlog.projections.consolidation`` turns this into projection terms).

The weights are ``W_base + Σ s·U Vᵀ`` over ``applied_entries()``, in the fixed order of
each entry's creation ``seq``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from memlog.store.events import (
    Consolidated,
    ConsolidatedLayer,
    ConsolidationReverted,
    EditPruned,
    EditRefreshed,
    EditReverted,
    Event,
    FactInjected,
    FactReleased,
    RecallAudited,
    RefreshFailed,
    RefreshRolledBack,
    SleepEnded,
    SleepStarted,
)
from memlog.store.records import BlobRef, FactRecord, LayerDelta


@dataclass
class EditVersion:
    version: int
    deltas: list[LayerDelta]
    fact: FactRecord
    seq: int
    scale: float = 1.0
    target: BlobRef | None = None  # v*'s z* for the fact (absent in older logs)


@dataclass(eq=False)
class Consolidation:
    """One ``Consolidated`` event as folded: the member versions it replaces, by edit id, and
    what each member pointed at before it (restored by its revert)."""

    consolidation_id: str
    seq: int
    layers: list[ConsolidatedLayer]
    members: dict[str, EditVersion]
    previous: dict[str, "Consolidation | None"]
    active: bool = True
    method: str = "svd"  # or "joint" (``Consolidated.method``)


@dataclass
class LedgerEntry:
    """One edit in the ledger: its current version, and whether that version is applied."""

    edit_id: str
    fact_id: str
    created_seq: int
    current: EditVersion
    applied: bool = True
    copy_of: str | None = None
    history: list[EditVersion] = field(default_factory=list)  # earlier versions, oldest first
    last_version: int = 0  # the highest version ever written for this edit (rolled-back ones included)
    held: bool = False  # reverted by the user: sleep does not refresh it
    applied_before_refresh: bool = True  # what a rollback of the current version restores
    consolidation: Consolidation | None = None  # the consolidation whose factors may stand for it
    released: bool = False  # its fact was released: still in the weights, no longer looked after

    def consolidated_in(self) -> Consolidation | None:
        """The active consolidation that stands for this entry as it is now (applied, at the very
        version it consolidated), else None."""
        c = self.consolidation
        if c is None or not c.active or not self.applied:
            return None
        member = c.members.get(self.edit_id)
        return c if member is not None and member.version == self.current.version else None

    @property
    def version(self) -> int:
        return self.current.version

    @property
    def scale(self) -> float:
        return self.current.scale if self.applied else 0.0


@dataclass
class AuditMark:
    seq: int
    cycle: int | None
    phase: str
    recalled: bool
    completion: str


@dataclass
class FactState:
    fact: FactRecord
    edit_id: str
    injected_seq: int
    active: bool = True
    pruned_seq: int | None = None
    released_seq: int | None = None  # set while the fact is released (inactive, its edit still applied)
    audits: list[AuditMark] = field(default_factory=list)
    refreshes: int = 0
    failed_refreshes: int = 0

    @property
    def last_audit(self) -> AuditMark | None:
        return self.audits[-1] if self.audits else None

    @property
    def last_healthy_seq(self) -> int:
        """The seq of the latest audit that found the fact recalled (-1 if never)."""
        for mark in reversed(self.audits):
            if mark.recalled:
                return mark.seq
        return -1


class LedgerError(ValueError):
    """An event does not fit the ledger state (the log is inconsistent)."""


@dataclass
class Ledger:
    entries: dict[str, LedgerEntry] = field(default_factory=dict)
    facts: dict[str, FactState] = field(default_factory=dict)
    cycle: int = 0  # the latest sleep cycle started
    in_sleep: bool = False
    head_seq: int = 0
    last_audit: RecallAudited | None = None
    last_audit_seq: int | None = None
    last_weights_sha256: str = ""
    n_created: int = 0  # entries ever created; drives deterministic edit ids
    consolidations: dict[str, Consolidation] = field(default_factory=dict)

    @classmethod
    def fold(cls, events: "list[tuple[int, Event]]") -> "Ledger":
        ledger = cls()
        for seq, event in events:
            ledger.apply(seq, event)
        return ledger

    # -- queries ---------------------------------------------------------------------------

    def applied_entries(self) -> list[LedgerEntry]:
        """Entries whose delta is in the weights, in the fixed projection order."""
        return sorted((e for e in self.entries.values() if e.applied and e.current.scale > 0), key=lambda e: e.created_seq)

    def active_facts(self) -> list[FactState]:
        return sorted((f for f in self.facts.values() if f.active), key=lambda f: self.entries[f.edit_id].created_seq)

    def ledger_size(self) -> int:
        return len(self.entries)

    def entry_for_fact(self, fact_id: str) -> LedgerEntry | None:
        state = self.facts.get(fact_id)
        if state is None or not state.active:
            return None
        return self.entries.get(state.edit_id)

    def released_entry(self, fact_id: str) -> LedgerEntry | None:
        """The entry of a released fact (its edit still in the ledger, no longer looked after), else None."""
        state = self.facts.get(fact_id)
        if state is None or state.active or state.released_seq is None:
            return None
        entry = self.entries.get(state.edit_id)
        return entry if entry is not None and entry.released else None

    def next_edit_id(self) -> str:
        """Deterministic ids: e00001, e00002, … in order of creation (pruned ids are never reused)."""
        return f"e{self.n_created + 1:05d}"

    def next_consolidation_id(self) -> str:
        return f"c{len(self.consolidations) + 1:05d}"

    def live_consolidations(self) -> list[Consolidation]:
        """Active consolidations that stand for at least one applied entry, oldest first."""
        live = {id(c): c for e in self.entries.values() if (c := e.consolidated_in()) is not None}
        return sorted(live.values(), key=lambda c: c.seq)

    # -- the fold --------------------------------------------------------------------------

    def apply(self, seq: int, event: Event) -> None:
        if seq <= self.head_seq:
            raise LedgerError(f"event seq {seq} is not after {self.head_seq}")
        self.head_seq = seq
        handler = getattr(self, f"_on_{type(event).__name__}", None)
        if handler is not None:
            handler(seq, event)
        if hasattr(event, "weights_sha256"):  # a weight-changing event: its hash, or "" when none was
            self.last_weights_sha256 = event.weights_sha256  # recorded (inside a batch): nothing to compare

    def _new_entry(self, seq: int, edit_id: str, fact: FactRecord, version: EditVersion, copy_of: str | None) -> None:
        if edit_id in self.entries:
            raise LedgerError(f"edit {edit_id} already exists (seq {seq})")
        self.entries[edit_id] = LedgerEntry(
            edit_id=edit_id, fact_id=fact.fact_id, created_seq=seq, current=version, copy_of=copy_of, last_version=version.version
        )
        self.n_created += 1

    def _entry(self, edit_id: str, seq: int) -> LedgerEntry:
        entry = self.entries.get(edit_id)
        if entry is None:
            raise LedgerError(f"seq {seq} refers to edit {edit_id}, which is not in the ledger")
        return entry

    def _on_FactInjected(self, seq: int, e: FactInjected) -> None:
        version = EditVersion(e.version, list(e.deltas), e.fact, seq, e.scale, e.target)
        if e.supersedes_version is None:
            self._new_entry(seq, e.edit_id, e.fact, version, None)
        else:
            entry = self._entry(e.edit_id, seq)
            if e.version <= entry.last_version:
                raise LedgerError(f"update of {e.edit_id} to v{e.version} at seq {seq}, but v{entry.last_version} was already written")
            entry.history.append(entry.current)
            entry.current = version
            entry.last_version = e.version
            entry.applied = True
            entry.held = False
            entry.applied_before_refresh = True
            entry.released = False
        state = self.facts.get(e.fact.fact_id)
        if state is None or not state.active:
            self.facts[e.fact.fact_id] = FactState(fact=e.fact, edit_id=e.edit_id, injected_seq=seq)
        else:
            state.fact = e.fact
            state.edit_id = e.edit_id

    def _on_EditReverted(self, seq: int, e: EditReverted) -> None:
        entry = self._entry(e.edit_id, seq)
        entry.applied = False
        # Only a revert outside sleep (the user's, cycle None) holds the edit out. Sleep's own
        # reverts (of a degraded fact, or of one the cycle's reverts broke) do not: a refresh
        # rolled back after them restores the version they took out.
        entry.held = e.cycle is None and e.reason != "degraded"

    def _on_EditRefreshed(self, seq: int, e: EditRefreshed) -> None:
        version = EditVersion(e.version, list(e.deltas), e.fact, seq, e.scale, e.target)
        if e.mode == "copy" and e.copy_of is not None:
            self._new_entry(seq, e.edit_id, e.fact, version, e.copy_of)
        else:
            entry = self._entry(e.edit_id, seq)
            if e.version != entry.last_version + 1:
                raise LedgerError(
                    f"refresh of {e.edit_id} to v{e.version} at seq {seq}, but its latest version is v{entry.last_version}"
                )
            # A sleep's own revert (reason "degraded") does not count: the refresh replaces an
            # applied version. A manual revert does: a rollback must not revive it.
            entry.applied_before_refresh = entry.applied or not entry.held
            entry.history.append(entry.current)
            entry.current = version
            entry.last_version = e.version
            entry.applied = True
            entry.held = False
        state = self.facts.get(e.fact.fact_id)
        if state is not None:
            state.edit_id = e.edit_id
            state.refreshes += 1

    def _on_RefreshRolledBack(self, seq: int, e: RefreshRolledBack) -> None:
        entry = self._entry(e.edit_id, seq)
        if entry.copy_of is not None and not entry.history:
            # A copy-mode refresh: the copy leaves the ledger; the original stays as it was.
            del self.entries[e.edit_id]
            original = self.entries.get(entry.copy_of)
            if original is not None:
                original.applied = not original.held
            state = self.facts.get(entry.fact_id)
            if state is not None:
                state.edit_id = entry.copy_of
            return
        if not entry.history:
            raise LedgerError(f"rollback of {e.edit_id} at seq {seq}, but it has no earlier version")
        entry.current = entry.history.pop()
        entry.applied = entry.applied_before_refresh
        entry.held = not entry.applied
        entry.applied_before_refresh = True

    def _on_RefreshFailed(self, seq: int, e: RefreshFailed) -> None:
        entry = self._entry(e.edit_id, seq)
        state = self.facts.get(entry.fact_id)
        if state is not None:
            state.failed_refreshes += 1

    def _on_EditPruned(self, seq: int, e: EditPruned) -> None:
        entry = self.entries.pop(e.edit_id, None)
        if entry is None:
            raise LedgerError(f"prune of {e.edit_id} at seq {seq}, but it is not in the ledger")
        state = self.facts.get(entry.fact_id)
        if state is None:
            return
        remaining = sorted((x for x in self.entries.values() if x.fact_id == entry.fact_id), key=lambda x: x.created_seq)
        if remaining:
            state.edit_id = remaining[-1].edit_id
        else:
            state.active = False
            state.pruned_seq = seq

    def _on_FactReleased(self, seq: int, e: FactReleased) -> None:
        entry = self._entry(e.edit_id, seq)
        state = self.facts.get(entry.fact_id)
        if state is None or not state.active or state.edit_id != e.edit_id:
            raise LedgerError(f"release of {e.edit_id} at seq {seq}, but its fact is not active on that edit")
        if entry.version != e.version:
            raise LedgerError(f"release of {e.edit_id} v{e.version} at seq {seq}, but its current version is v{entry.version}")
        entry.released = True
        state.active = False
        state.released_seq = seq

    def _on_Consolidated(self, seq: int, e: Consolidated) -> None:
        if e.consolidation_id in self.consolidations:
            raise LedgerError(f"consolidation {e.consolidation_id} already exists (seq {seq})")
        members, previous = {}, {}
        for ref in e.members:
            entry = self._entry(ref.edit_id, seq)
            if entry.current.version != ref.version or not entry.applied:
                raise LedgerError(f"consolidation at seq {seq} names {ref.edit_id} v{ref.version}, which is not applied")
            members[ref.edit_id] = entry.current
            previous[ref.edit_id] = entry.consolidation
        consolidation = Consolidation(e.consolidation_id, seq, list(e.layers), members, previous, method=e.method)
        for edit_id in members:
            self.entries[edit_id].consolidation = consolidation
        self.consolidations[e.consolidation_id] = consolidation

    def _on_ConsolidationReverted(self, seq: int, e: ConsolidationReverted) -> None:
        consolidation = self.consolidations.get(e.consolidation_id)
        if consolidation is None or not consolidation.active:
            raise LedgerError(f"revert of consolidation {e.consolidation_id} at seq {seq}, but it is not active")
        consolidation.active = False
        for edit_id, before in consolidation.previous.items():
            entry = self.entries.get(edit_id)
            if entry is not None and entry.consolidation is consolidation:
                entry.consolidation = before if before is not None and before.active else None

    def _on_RecallAudited(self, seq: int, e: RecallAudited) -> None:
        for result in e.results:
            state = self.facts.get(result.fact_id)
            if state is not None:
                state.audits.append(AuditMark(seq, e.cycle, e.phase, result.recalled, result.completion))
        self.last_audit = e
        self.last_audit_seq = seq

    def _on_SleepStarted(self, seq: int, e: SleepStarted) -> None:
        self.cycle = e.cycle
        self.in_sleep = True

    def _on_SleepEnded(self, seq: int, e: SleepEnded) -> None:
        self.in_sleep = False

    # -- derived measures ---------------------------------------------------------------------

    def pressure(self) -> float:
        """Sleep pressure p = |D| / |E_active| from the latest audit (paper Eq. 3)."""
        if self.last_audit is None or not self.last_audit.results:
            return 0.0
        return self.last_audit.degraded / len(self.last_audit.results)
