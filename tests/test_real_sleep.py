"""Sleep on the embedded model, past the wake capacity of a narrow window.

The edit window is the demo's fast one (layers 4-7, 3 context prefixes), whose wake capacity is
smaller than the default window's. Facts are injected one at a time, each followed by the wake
audit, until one is no longer recalled (at most ``MAX_FACTS``). Sleep then runs until it converges
(at most 3 cycles): recall over every fact ever injected must rise, and every weights hash the log
recorded must be reproduced by replaying the log up to that event.
"""

from __future__ import annotations

import pytest

from memlog.core.memit_hparams import MemitConfig
from memlog.core.model import ModelSpec
from memlog.core.pool import fact_pool
from memlog.engine.config import EngineConfig
from memlog.engine.open import init_memory

pytestmark = pytest.mark.real_model

FAST = MemitConfig(layers=(4, 5, 6, 7), n_prefixes=3)
MAX_FACTS = 30


def test_sleep_raises_recall_past_the_fast_window_capacity(real_model, tmp_path):
    mem = init_memory(tmp_path / "s", ModelSpec(), lm=real_model, memit=FAST, engine=EngineConfig(wake="unconstrained", ppl_bound=None, max_cycles=3))
    try:
        for fact in fact_pool(MAX_FACTS, seed=0):
            mem.inject([fact], audit=True)
            if mem.ledger.last_audit.degraded > 0:
                break
        wake = mem.ledger.last_audit
        injected = len(wake.results)
        assert wake.degraded > 0, f"{MAX_FACTS} facts did not overflow layers 4-7 (recall {wake.recall:.3f})"

        report = mem.sleep(until_converged=True)
        final = report.cycles[-1]
        assert final.facts_known == injected
        assert sum(c.refreshed for c in report.cycles) > 0
        assert final.recall > wake.recall, [(c.recall_before, c.recall) for c in report.cycles]

        recorded = [(item.seq, item.event.weights_sha256) for item in mem.logged if getattr(item.event, "weights_sha256", "")]
        assert len(recorded) > injected  # every inject and every refresh records the weights' hash
        replayed = [(seq, mem.replay(f"seq={seq}")["weights_sha256"]) for seq, _ in recorded]
        assert replayed == recorded
        assert mem.projector.weights_sha256() == recorded[-1][1]
    finally:
        mem.close()
