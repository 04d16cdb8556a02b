"""Sleep's refresh protects the healthy facts as constrained wake does, and the revert check.

On the tiny random Llama (which recalls nothing by itself, so the audit's verdict is forced:
the facts in ``healthy`` are reported recalled, the others degraded; the refreshes are real):

- after a per-fact and a batched sleep refresh, every protected fact's audit key, read on the
  weights the refresh was solved on (the log's state just before its ``EditRefreshed``) with
  the refresh applied, moves by at most 1e-4 relative at every edit layer; the keys the
  previous constraint used (prefix-averaged, read once) do not give that;
- with ``revert_check`` on the fake editor, the healthy facts that the reverts alone break are
  refreshed in the same cycle, their reverts say why, and the check is counted.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import tests.test_wake_constrained as wake_tests
from memlog.core.memit import LayerFactors
from memlog.core.model import ModelSpec
from memlog.core.pool import fact_pool
from memlog.engine.config import EngineConfig
from memlog.engine.open import init_memory
from memlog.projections.facts import fact_of
from memlog.store.deltas import read_uv
from memlog.store.events import EditRefreshed, EditReverted, SleepEnded
from tests.fakes import fake_memory

CHEAP = wake_tests.CHEAP


class Forced:
    """The real editor, but the audit's verdict is fixed: facts in ``healthy`` are recalled.
    With ``perplexity``, that number is reported instead of measuring it."""

    def __init__(self, inner, healthy: set[str], perplexity: float | None = None):
        self.inner, self.healthy, self.ppl = inner, healthy, perplexity

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def perplexity(self) -> float:
        return self.inner.perplexity() if self.ppl is None else self.ppl

    def audit(self, facts):
        return [replace(r, recalled=f.fact_id in self.healthy) for f, r in zip(facts, self.inner.audit(facts))]


def _deltas(mem, events: list[EditRefreshed], skip: dict | None = None) -> dict[int, LayerFactors]:
    """The summed factors of ``events`` per layer (columns side by side); ``skip`` maps an edit
    id to the columns per layer its previous version held (a correction's refresh stacks the
    correction after them: only the correction is kept)."""
    out: dict[int, list] = {}
    for event in events:
        for d in event.deltas:
            u, v = (torch.from_numpy(np.ascontiguousarray(x)).float() for x in read_uv(d, mem.store.blobs.get))
            width = (skip or {}).get(event.edit_id, {}).get(d.layer, 0)
            out.setdefault(d.layer, []).append((u[:, width:], v[:, width:]))
    return {l: LayerFactors(u=torch.cat([u for u, _ in p], 1), v=torch.cat([v for _, v in p], 1), keys=torch.zeros(0)) for l, p in out.items()}


def _sleep_once(tmp_path, tokenizer, batch: bool, strategy: str = "reinject"):
    lm = wake_tests._tiny(tokenizer)
    engine = EngineConfig(wake="unconstrained", ppl_bound=None, batch_refresh=batch, stale_after=None, refresh_strategy=strategy)
    mem = init_memory(tmp_path / "s", ModelSpec(model="tiny-llama"), lm=lm, memit=CHEAP, engine=engine)
    facts = fact_pool(6, seed=3)
    mem.inject(facts, audit=False)
    healthy = [f for i, f in enumerate(facts) if i not in (1, 4)]
    mem.editor = Forced(mem.editor, {f.fact_id for f in healthy})
    mem.sleep(cycles=1)
    refreshed = [(item.seq, item.event) for item in mem.logged if isinstance(item.event, EditRefreshed)]
    return mem, lm, facts, healthy, refreshed


@pytest.mark.parametrize("batch, strategy", [(False, "reinject"), (True, "reinject"), (False, "correct"), (True, "correct")])
def test_refresh_holds_every_protected_audit_key(tmp_path, embedded_tokenizer, monkeypatch, batch, strategy):
    monkeypatch.setenv("MEMLOG_CACHE", str(tmp_path / "cache"))
    mem, lm, facts, healthy, refreshed = _sleep_once(tmp_path, embedded_tokenizer, batch, strategy)
    try:
        assert [mem.ledger.entries[e.edit_id].fact_id for _, e in refreshed] == [facts[1].fact_id, facts[4].fact_id]
        reverts = [item.event for item in mem.logged if isinstance(item.event, EditReverted)]
        assert len(reverts) == (2 if strategy == "reinject" else 0)
        skip = {}  # correct: each new version is its injected factors (one column per layer) plus the correction
        if strategy == "correct":
            skip = {e.edit_id: {d.layer: 1 for d in e.deltas} for _, e in refreshed}
            assert all(d.packed.shape[1] > 1 for _, e in refreshed for d in e.deltas)
        # per fact: each refresh alone, protecting the healthy facts and the ones refreshed before it;
        # batched: both in one solve (their columns summed), protecting the healthy facts
        solves = [[refreshed[0]], [refreshed[1]]] if not batch else [refreshed]
        worst = []
        for i, solve in enumerate(solves):
            protected = healthy + ([facts[1]] if (not batch and i == 1) else [])
            assert all(e.n_constraint_keys == len(protected) for _, e in solve)
            with mem.weights_at(solve[0][0] - 1):
                worst.append(max(wake_tests.residuals(lm, _deltas(mem, [e for _, e in solve], skip), protected)))
                if i == 0:  # the constraint sleep used before: prefix-averaged keys, read once
                    keys = mem.editor.keys(healthy)
                    old = mem.editor.edit([facts[1]] if not batch else [facts[1], facts[4]], constraint_keys=keys)
                    worst_old = max(wake_tests.residuals(lm, old.deltas, healthy))
        assert max(worst) <= 1e-4, worst
        assert worst_old > 1e-3
    finally:
        mem.close()


def test_revert_check_refreshes_the_healthy_facts_the_reverts_break(tmp_path):
    mem = fake_memory(tmp_path / "s", EngineConfig(wake="unconstrained", ppl_bound=None, revert_check=True, stale_after=None))
    try:
        mem.inject(fact_pool(12, seed=1), audit=False)
        mem.sleep(cycles=1)
        events = [item.event for item in mem.logged]
        pre = next(e for e in events if getattr(e, "phase", None) == "sleep-pre")
        ended = next(e for e in events if isinstance(e, SleepEnded))
        reverts = [e for e in events if isinstance(e, EditReverted)]
        degraded = {r.fact_id for r in pre.results if not r.recalled}
        broken = [e for e in reverts if e.reason.startswith("broken-by-revert")]
        fact_ids = {e.edit_id: mem.ledger.entries[e.edit_id].fact_id for e in reverts}
        # what the check saw, recomputed: the healthy facts on the weights without the degraded edits
        ledger = mem.ledger_at(next(i.seq for i in mem.logged if getattr(i.event, "phase", None) == "sleep-pre"))
        drop = {ledger.entry_for_fact(f).edit_id for f in degraded}
        mem.projector.project([e for e in ledger.applied_entries() if e.edit_id not in drop])
        healthy = [s for s in ledger.active_facts() if s.fact.fact_id not in degraded]
        lost = {s.fact.fact_id for s, r in zip(healthy, mem.editor.audit([fact_of(s.fact) for s in healthy])) if not r.recalled}
        mem.project()
        assert lost, "the fake should lose some healthy facts when edits are removed"
        assert {fact_ids[e.edit_id] for e in broken} == lost
        assert {fact_ids[e.edit_id] for e in reverts} == degraded | lost
        assert ended.step_seconds["revert_broken"] == len(lost) and ended.step_seconds["revert_checked"] == len(healthy)
        assert ended.step_seconds["revert_edits"] == len(drop)
    finally:
        mem.close()


def test_revert_check_is_off_by_default(tmp_path):
    mem = fake_memory(tmp_path / "s", EngineConfig(wake="unconstrained", ppl_bound=None, stale_after=None))
    try:
        mem.inject(fact_pool(12, seed=1), audit=False)
        mem.sleep(cycles=1)
        ended = next(item.event for item in mem.logged if isinstance(item.event, SleepEnded))
        assert "revert_checked" not in ended.step_seconds
        assert not any(isinstance(i.event, EditReverted) and i.event.reason != "degraded" for i in mem.logged)
    finally:
        mem.close()
