"""Sleep's refresh on the embedded SmolLM2-135M protects the healthy facts exactly (marked
``real_model``; the store's weights are restored on close).

Three facts are injected in one solve (the demo's fast window, layers 4-7); one is reported
degraded (the audit's verdict is forced, the refresh is real; the cycle's perplexity is not
measured, as no bound is set) and sleep reverts and re-solves it. The other
two facts' audit keys move by at most 1e-4 relative at every edit layer under the refresh, and
their greedy completions are token-identical before and after the cycle.
"""

from __future__ import annotations

import pytest

import tests.test_sleep_protection as tiny_tests
import tests.test_wake_constrained as wake_tests
from memlog.core.memit_hparams import MemitConfig
from memlog.core.model import ModelSpec
from memlog.core.pool import mixed_pool
from memlog.engine.config import EngineConfig
from memlog.engine.open import init_memory
from memlog.store.events import EditRefreshed

pytestmark = pytest.mark.real_model

FAST = MemitConfig(layers=(4, 5, 6, 7), n_prefixes=3)


def test_sleep_refresh_keeps_the_healthy_facts_keys_and_completions(real_model, tmp_path):
    mem = init_memory(tmp_path / "s", ModelSpec(), lm=real_model, memit=FAST, engine=EngineConfig(wake="unconstrained", ppl_bound=None, stale_after=None))
    try:
        facts = mixed_pool(3, seed=3)
        mem.inject(facts, audit=True, batch_size=3)  # one solve, one audit
        before = mem.ledger.last_audit.results
        assert all(r.recalled for r in before), before
        real = mem.editor
        mem.editor = tiny_tests.Forced(real, {f.fact_id for f in facts[1:]}, perplexity=14.0)  # no bound: not measured
        mem.sleep(cycles=1)
        mem.editor = real
        (seq, refresh), = [(i.seq, i.event) for i in mem.logged if isinstance(i.event, EditRefreshed)]
        assert mem.ledger.entries[refresh.edit_id].fact_id == facts[0].fact_id and refresh.n_constraint_keys == 2
        with mem.weights_at(seq - 1):  # the refresh's weights: the degraded edit reverted
            worst = max(wake_tests.residuals(real_model, tiny_tests._deltas(mem, [refresh]), facts[1:]))
        after = real.audit(facts)
        assert worst <= 1e-4, worst
        assert [a.completion for a in after[1:]] == [b.completion for b in before[1:]]
        assert after[0].recalled, after[0]
    finally:
        mem.close()
