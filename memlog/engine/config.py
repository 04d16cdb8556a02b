"""Engine policy: the knobs of wake and sleep, stored in the store header and overridable per command."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from memlog.errors import UserError

REFRESH_MODES = ("in-place", "copy")
REFRESH_STRATEGIES = ("reinject", "correct")
DEFAULT_BATCH_SIZE = 32  # `memlog inject --file`: see docs/RESULTS.md "Speed" for the measurement
PRUNE_POLICIES = ("least-recently-healthy", "oldest")
BUDGET_ACTIONS = ("release", "prune")
# the audit measure that defines sleep's degraded set (memlog.engine.audit_measures.is_healthy)
DEGRADED_BY = ("exact", "paraphrase", "chat", "any")
WAKE_MODES = ("constrained", "unconstrained")
# which positions of a protected fact's audit prompt a constrained solve holds fixed
# (memlog.core.keys.bare_prompt_batch): the subject's last token; or also the positions that
# predict the object's tokens and the word boundary after it (teacher-forced on the object);
# "first": the subject's last token and the position that predicts the object's first token only;
# "+paraphrases": the same positions in each of the fact's paraphrases that contains its subject;
# "all": every position of the prompt and the object (about 10 keys per fact)
PROTECT_POSITIONS = ("subject", "object", "first", "subject+paraphrases", "object+paraphrases", "first+paraphrases", "all")
COPY_MODE_CAP = 50  # copy mode (the paper's protocol) needs a count cap; used when none is set
# the settings whose None means "off"; a session switches one off with the override ``OFF``
SWITCHABLE = ("cap", "ppl_bound", "ppl_budget", "stale_after", "stale_progress", "auto_sleep", "consolidate_above")


class Off:
    """The override value that switches a setting off for one session (``memlog.OFF``).

    An override of ``None`` means "not given" (the store's setting stays), so ``None`` cannot
    also mean "off": ``memlog.open(path, stale_after=memlog.OFF)`` switches the stale rule off.
    Only the ``SWITCHABLE`` settings accept it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "OFF"


OFF = Off()


def finite_reading(ppl: float, what: str) -> float:
    """``ppl`` if finite; otherwise a UserError naming the reading (the unit that took it writes nothing)."""
    if not math.isfinite(ppl):
        raise UserError(
            f"perplexity {what} is {ppl}: the weights overflow or are corrupt, so nothing was written. "
            "Revert the edits that did it (`memlog revert`) or fork the store from before them (`memlog fork --until`)."
        )
    return ppl


def finite_or_none(ppl: float) -> float | None:
    """A perplexity as an event may hold it: None for NaN or infinity (JSON has neither)."""
    return ppl if math.isfinite(ppl) else None


@dataclass(frozen=True)
class EngineConfig:
    tau: float = 0.5  # a fact is degraded when its recall is below tau (greedy recall: not recalled)
    # most active facts (in-place) / ledger entries (copy) before pruning; None: the null-space
    # budget (in-place: prune only once the protected keys leave too little room, memlog.engine.room)
    cap: int | None = None
    refresh_mode: str = "in-place"
    # reinject: revert the degraded edit, then solve it again on the reverted weights (the paper's
    # Algorithm 1); correct: keep the edit and add a constrained correction solved on the current
    # weights, stored as the next version (in-place only). None: correct for an in-place store with
    # constrained wake, reinject otherwise (docs/RESULTS.md, "Sleep's refresh strategy under
    # constrained wake"); headers store the resolved value
    refresh_strategy: str | None = None
    prune_policy: str = "least-recently-healthy"
    # what the null-space budget (cap None) does with the facts its policy picks: release (they
    # leave sleep's care and their edits stay in the weights, so no other fact moves) or prune
    # (revert their edits, which breaks the facts solved on top of them; docs/RESULTS.md). Stores
    # written before the setting existed read as prune
    budget_action: str = "release"
    copy_prune_count: int = 3  # copy mode (the paper's bug): entries pruned per cycle while over the cap
    ppl_bound: float | None = 0.05  # roll back a refresh that raises PPL by more than this fraction
    # roll back a refresh that leaves PPL more than this fraction above the base model's (the
    # store's ``base`` reading), however the earlier cycles moved it; None: no store-wide limit
    ppl_budget: float | None = None
    max_cycles: int = 10
    audit_after_inject: bool = True
    # stop refreshing a fact that stays degraded through this many sleep cycles in a row with a
    # refresh of it (a cycle counts once however often its refresh was tried; None: never)
    stale_after: int | None = 3
    # ... unless it is getting there: with the ``correct`` strategy, a refresh whose fact's object
    # NLL before it (``EditRefreshed.v_loss_before``) is at least this fraction below the lowest
    # NLL before its earlier refreshes shows that they helped, and the count starts again
    # (None: only recall counts as progress; see engine/stale.py)
    stale_progress: float | None = 0.25
    auto_sleep: float | None = None  # sleep when pressure (degraded/active) after an inject exceeds this
    # which audit measure makes a fact degraded for sleep: exact-prompt recall, paraphrase recall
    # (below tau), chat-template recall, or any of the three
    degraded_by: str = "exact"
    # refresh a cycle's degraded facts in one constrained solve (in-place; see engine/refresh_batch.py)
    batch_refresh: bool = False
    # before refreshing, audit the healthy facts on the weights without the degraded edits and
    # refresh those the reverts alone break (in-place reinject; see engine/revert_check.py)
    revert_check: bool = False
    # constrained: each wake edit is solved in the null space of the healthy active facts' audit
    # keys (memlog.engine.wake); unconstrained: MEMIT as in the paper (its experiments and the demo
    # pin it). New stores: constrained (docs/RESULTS.md, "Constrained wake is the default");
    # stores written without the setting: unconstrained
    wake: str = "constrained"
    # after a sleep, consolidate the applied edits (memlog.engine.consolidate) when the projection
    # concatenates more factor columns than this at some edit layer (None: never)
    consolidate_above: int | None = None
    # before a sleep's first cycle, re-solve every applied edit jointly from the base weights with
    # its stored v* target (memlog.engine.joint), unless they already stand in one such re-solve
    joint_before_sleep: bool = False
    # the audit-prompt positions constrained solves hold fixed for each protected fact (wake and
    # sleep's refreshes): "subject" (one key per fact) or "object" (also the object's positions),
    # either with "+paraphrases" (the same positions in the fact's paraphrases as well). None:
    # "object" for an in-place store with constrained wake (docs/RESULTS.md, "150 facts"),
    # "subject" otherwise (the paper's experiments and the demo); headers store the resolved
    # value, and headers written before the setting existed read as "subject"
    protect_positions: str | None = None
    # the share of the protected keys' whitened energy constrained solves hold (memlog.core.solve.
    # held_subspace): 1.0 holds their whole span exactly; below 1 only the leading directions
    # (fewer key dimensions used, so more facts before the budget prunes; not exact)
    protect_energy: float = 1.0

    @property
    def constrained_in_place(self) -> bool:
        """Constrained wake in an in-place store: the setting the defaults of the refresh
        strategy, the protected positions and a new store's λ follow."""
        return self.wake == "constrained" and self.refresh_mode == "in-place"

    def __post_init__(self) -> None:
        constrained_in_place = self.constrained_in_place
        if self.refresh_strategy is None:
            object.__setattr__(self, "refresh_strategy", "correct" if constrained_in_place else "reinject")
        if self.protect_positions is None:
            object.__setattr__(self, "protect_positions", "object" if constrained_in_place else "subject")
        if self.refresh_mode not in REFRESH_MODES:
            raise UserError(f"unknown refresh mode {self.refresh_mode!r}; choose {' or '.join(REFRESH_MODES)}")
        if self.refresh_strategy not in REFRESH_STRATEGIES:
            raise UserError(f"unknown refresh strategy {self.refresh_strategy!r}; choose {' or '.join(REFRESH_STRATEGIES)}")
        if self.refresh_strategy == "correct" and self.refresh_mode != "in-place":
            raise UserError("--refresh-strategy correct needs --refresh-mode in-place (copy mode reproduces the paper as written)")
        if self.prune_policy not in PRUNE_POLICIES:
            raise UserError(f"unknown prune policy {self.prune_policy!r}; choose one of {', '.join(PRUNE_POLICIES)}")
        if self.budget_action not in BUDGET_ACTIONS:
            raise UserError(f"unknown budget action {self.budget_action!r}; choose {' or '.join(BUDGET_ACTIONS)}")
        if self.degraded_by not in DEGRADED_BY:
            raise UserError(f"unknown --degraded-by {self.degraded_by!r}; choose one of {', '.join(DEGRADED_BY)}")
        if self.protect_positions not in PROTECT_POSITIONS:
            raise UserError(f"unknown protected positions {self.protect_positions!r}; choose {' or '.join(PROTECT_POSITIONS)}")
        if not 0.0 < self.protect_energy <= 1.0:
            raise UserError(f"--protect-energy must be in (0, 1], got {self.protect_energy}")
        if self.wake not in WAKE_MODES:
            raise UserError(f"unknown wake mode {self.wake!r}; choose {' or '.join(WAKE_MODES)}")
        if self.cap is not None and self.cap < 1:
            raise UserError(f"--cap must be at least 1, got {self.cap}")
        if not 0.0 < self.tau <= 1.0:
            raise UserError(f"tau must be in (0, 1], got {self.tau}")
        if self.max_cycles < 1:
            raise UserError(f"--max-cycles must be at least 1, got {self.max_cycles}")
        if self.auto_sleep is not None and not 0.0 <= self.auto_sleep < 1.0:
            raise UserError(f"auto-sleep threshold is a pressure in [0, 1), got {self.auto_sleep}")
        if self.stale_after is not None and self.stale_after < 1:
            raise UserError(f"stale_after must be at least 1 refresh (or None), got {self.stale_after}")
        if self.stale_progress is not None and not 0.0 < self.stale_progress < 1.0:  # NaN is refused too
            raise UserError(f"stale_progress is a fraction in (0, 1) (or None), got {self.stale_progress}")
        if self.consolidate_above is not None and self.consolidate_above < 1:
            raise UserError(f"consolidate_above must be at least 1 column (or None), got {self.consolidate_above}")
        if self.ppl_bound is not None and not self.ppl_bound > 0:  # NaN is refused too
            raise UserError(f"ppl bound must be positive (a fraction such as 0.05), got {self.ppl_bound}")
        if self.ppl_budget is not None and not self.ppl_budget > 0:
            raise UserError(f"--ppl-budget must be positive (a fraction of the base PPL such as 0.01), got {self.ppl_budget}")

    def ppl_ceiling(self, ppl_before: float, base_ppl: float | None) -> float | None:
        """The highest perplexity a refresh may leave: ``ppl_bound`` over the cycle's reading
        before it, ``ppl_budget`` over the base model's, whichever is lower (None: no check)."""
        limits = []
        if self.ppl_bound is not None:
            limits.append(ppl_before * (1.0 + self.ppl_bound))
        if self.ppl_budget is not None:
            limits.append(self.budget_ceiling(base_ppl))
        return min(limits) if limits else None

    def budget_ceiling(self, base_ppl: float | None) -> float | None:
        """The highest perplexity ``ppl_budget`` allows: the base model's reading times ``1 +
        ppl_budget`` (None: no budget; UserError: a budget without a base reading)."""
        if self.ppl_budget is None:
            return None
        self.check_budget(base_ppl)
        return base_ppl * (1.0 + self.ppl_budget)

    def check_budget(self, base_ppl: float | None) -> None:
        """Refuse (UserError) a ``ppl_budget`` on a store whose log has no base reading."""
        if self.ppl_budget is not None and base_ppl is None:
            raise UserError("--ppl-budget needs the base model's perplexity, and this store's log has no base reading")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "EngineConfig":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("wake", "unconstrained")  # stores written before the wake mode existed
        values.setdefault("protect_positions", "subject")  # stores written before the setting existed
        values.setdefault("budget_action", "prune")  # stores written before the setting existed
        return cls(**values)

    def with_overrides(self, **overrides) -> "EngineConfig":
        """This config with the given settings replaced: ``None`` leaves a setting as it is,
        ``OFF`` switches a ``SWITCHABLE`` one off (sets it to None)."""
        unknown = sorted(set(overrides) - {f.name for f in fields(self)})
        if unknown:
            raise UserError(f"unknown engine setting(s) {unknown}; the settings are {[f.name for f in fields(self)]}")
        not_switchable = sorted(k for k, v in overrides.items() if isinstance(v, Off) and k not in SWITCHABLE)
        if not_switchable:
            raise UserError(f"{not_switchable} cannot be switched off; OFF applies to {', '.join(SWITCHABLE)}")
        given = {k: (None if isinstance(v, Off) else v) for k, v in overrides.items() if v is not None}
        if given.get("refresh_mode") == "copy" and "refresh_strategy" not in given:
            given["refresh_strategy"] = "reinject"  # copy mode is the paper's protocol as written
        return replace(self, **given)
