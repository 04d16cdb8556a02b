"""Sleep on the embedded model: past a narrow window's wake capacity, sleep brings recall back.

The edit window is one layer (5) instead of the default eight, so that eight facts overflow
it and a sleep cycle stays short. After the wake injections some facts are degraded;
after sleeping, recall over every fact ever injected is higher, and every weights hash the log
recorded is reproduced by a replay of the log up to that event.
"""

from __future__ import annotations

import pytest

from memlog.core.memit import MemitConfig
from memlog.core.model import ModelSpec
from memlog.core.pool import fact_pool
from memlog.engine.config import EngineConfig
from memlog.engine.open import init_memory

pytestmark = pytest.mark.real_model

NARROW = MemitConfig(layers=(5,), v_steps=20)
N_FACTS = 8


def test_sleep_restores_recall_past_the_wake_capacity(real_model, tmp_path):
    mem = init_memory(tmp_path / "s", ModelSpec(), lm=real_model, memit=NARROW, engine=EngineConfig(ppl_bound=None, cap=50))
    try:
        mem.inject(fact_pool(N_FACTS, seed=0))
        wake = mem.ledger.last_audit
        assert len(wake.results) == N_FACTS
        assert wake.degraded > 0, f"{N_FACTS} facts should overflow layer 5 (recall {wake.recall:.3f})"
        report = mem.sleep(cycles=1)
        final = report.cycles[-1]
        assert final.facts_known == N_FACTS
        assert final.recall > wake.recall, [(c.recall_before, c.recall) for c in report.cycles]
        assert sum(c.refreshed for c in report.cycles) > 0
        recorded = [(item.seq, item.event.weights_sha256) for item in mem.logged if getattr(item.event, "weights_sha256", "")]
        replayed = [(seq, mem.replay(f"seq={seq}")["weights_sha256"]) for seq, _ in recorded]
        assert replayed == recorded
        assert mem.projector.weights_sha256() == recorded[-1][1]
    finally:
        mem.close()
