"""How much room a constrained memory has left, and the budget that prunes when it runs out.

Sleep measures the room once a cycle, before its prune, over every active fact's audit keys on
the current weights (``room_now``, ``memlog.core.room.KeyRoom``):

- **rank left** per edit layer: d_in less the rank of those keys;
- **reach** per edit layer: the median, over the newest ``REACH_PROBES`` facts, of the share of
  its residual a solve of that fact's key alone would write while every *other* fact's keys are
  held. It stands for the room the next fact (or a refresh) will find.

A constrained wake edit reports the same two numbers for its own keys against what it held
(``note_wake_room``). Both are logged as ``ConstraintRoom`` with the norm of each edited
matrix's total delta (``record_room``), and shown by ``memlog status`` and the ``cycles`` view.

The budget that replaces a fixed cap (``EngineConfig.cap`` None) acts once fewer than
``ROOM_RESERVE`` of d_in dimensions are left in some layer: it takes out, in the store's prune
policy's order, the fewest facts whose keys free that reserve (``budget_victims``), and releases
them (``budget_action`` release, the default: their edits stay in the weights) or prunes them.
Pruning reverts edits that the facts written after them were solved on top of: on a 500-fact
store it broke 48 of the 89 recalled facts it kept, where a release left every one as it was
(docs/RESULTS.md, "Release instead of prune"). Keys of real facts are correlated, so reach runs
out well before the rank does (docs/RESULTS.md, "The room the held keys leave"); a budget on
reach is not built (a prune of a third of a 350-fact store to restore it broke almost every
fact that stayed: "Reach on the store").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from memlog.core.room import KeyRoom
from memlog.projections.facts import fact_of
from memlog.store.events import ConstraintRoom

ROOM_RESERVE = 0.1  # budget: prune once fewer than this fraction of d_in key dimensions is left free
REACH_PROBES = 32  # the newest facts whose reach stands for the next fact's (at most half the facts)


@dataclass(frozen=True)
class Room:
    """One measurement of the room left: per edit layer the rank left and (where measured) the
    median reach; ``protected``: how many facts' keys were held."""

    rank_left: dict[int, int]
    protected: int
    reach: dict[int, float] | None = None
    keys: KeyRoom | None = field(default=None, compare=False, repr=False)  # the keys it was measured on, oldest fact first


def room_now(mem, config=None) -> Room | None:
    """The room left once sleep has repaired and protects every active fact (sleep's measurement,
    see the module doc), at the protected positions and energy of ``config`` (an ``EngineConfig``;
    default: the store's). None when the editor cannot measure it (a fake)."""
    key_room = getattr(mem.editor, "key_room", None)
    if key_room is None:
        return None
    states = sorted(mem.ledger.active_facts(), key=lambda s: s.injected_seq)
    facts = [fact_of(s.fact) for s in states]
    probes = min(REACH_PROBES, len(facts) // 2)
    config = config or mem.config
    keys = key_room(facts, config.protect_positions, config.protect_energy, tuple(range(len(facts) - probes, len(facts))))
    return Room(keys.rank_left(), len(facts), keys.reach(), keys)


def delta_norms(mem) -> dict[int, float]:
    """Per edit layer ‖W − W_base‖_F / ‖W_base‖_F of the live weights ({} for a fake)."""
    base = getattr(mem.projector, "base_weight", None)
    if base is None or not hasattr(mem.editor, "weight"):
        return {}
    out = {}
    for layer in mem.editor.layers:
        w0 = base(layer)
        out[layer] = float((mem.editor.weight(layer).float().to(w0.device) - w0).norm() / w0.norm())
    return out


def record_room(mem, phase: str, cycle: int | None = None, room: Room | None = None) -> ConstraintRoom | None:
    """Measure (or take) the room left and emit ``ConstraintRoom``; None for a fake editor."""
    room = room if room is not None else room_now(mem)
    if room is None:
        return None
    norms = delta_norms(mem)
    layers = sorted(room.rank_left)
    event = ConstraintRoom(
        phase=phase, cycle=cycle, layers=layers, protected=room.protected,
        rank_left=[int(room.rank_left[l]) for l in layers], delta_norm=[float(norms.get(l, 0.0)) for l in layers],
        reach=[float(room.reach[l]) for l in layers] if room.reach else None,
    )
    return mem.emit(event)


def note_wake_room(mem, result, options: dict) -> None:
    """After a constrained wake edit: record the room it measured (d_in − the rank it held fixed,
    and the median reach of its own keys)."""
    protect = options.get("protect")
    ranks = getattr(result, "constraint_rank", None)
    if protect is None or not ranks or not hasattr(mem.editor, "key_dim"):
        return
    left = {layer: mem.editor.key_dim(layer) - r for layer, r in ranks.items()}
    record_room(mem, "wake", None, Room(left, len(protect.facts), getattr(result, "constraint_reach", None) or None))


def budget_excess(mem, room: Room | None) -> int:
    """The rank budget's shortfall: 0 while every layer keeps ``ROOM_RESERVE`` of its key
    dimensions free; else the most dimensions some layer lacks (``budget_victims`` counts the
    facts to take out for them on the keys)."""
    if room is None:
        return 0
    short = max(_reserve(mem, layer) - free for layer, free in room.rank_left.items())
    return max(0, short)


def _reserve(mem, layer: int) -> int:
    return int(ROOM_RESERVE * mem.editor.key_dim(layer))


def budget_victims(mem, room: Room | None, order: list) -> int:
    """How many facts of ``order`` (active fact states, first to go first) the budget takes out:
    the fewest whose keys, no longer held, leave ``ROOM_RESERVE`` free in every layer, found by
    bisection on the keys the room was measured on. A fact's keys can free several dimensions,
    or none while the rest still span them. Without those keys: the shortfall itself."""
    short = budget_excess(mem, room)
    if short <= 0 or room.keys is None:
        return short
    index = {s.fact.fact_id: i for i, s in enumerate(sorted(mem.ledger.active_facts(), key=lambda s: s.injected_seq))}
    ids = [index[s.fact.fact_id] for s in order]

    def enough(n: int) -> bool:
        left = room.keys.rank_left(without=frozenset(ids[:n]))
        return all(free >= _reserve(mem, layer) for layer, free in left.items())

    low, high = 0, len(ids)  # not enough with low facts out; enough with high (every fact out frees every dimension)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high

