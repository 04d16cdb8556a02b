"""Replay determinism does not depend on the caller's torch settings.

A store written with two torch threads replays, with one thread, to the recorded weights
hash at every cycle (and the other way round for the hashes a second process would see),
and ``pinned`` puts the caller's settings back.
"""

from __future__ import annotations

import torch

from memlog.core.adapter import LayerAdapter
from memlog.core.determinism import pinned
from memlog.core.memit import MemitConfig
from memlog.core.model import LoadedModel, ModelSpec
from memlog.core.pool import fact_pool
from memlog.engine.config import EngineConfig
from memlog.engine.open import init_memory, open_memory
from memlog.experiments.checks import verify_cycles
from tests.conftest import make_tiny_llama

CHEAP = MemitConfig(layers=(1, 2), cov_samples=24, v_steps=10)


def _tiny(tokenizer) -> LoadedModel:
    model = make_tiny_llama(seed=0)
    return LoadedModel(model=model, tokenizer=tokenizer, adapter=LayerAdapter.for_model(model), model_id="tiny-llama", source="test", spec=ModelSpec(model="tiny-llama"))


def test_pinned_restores_the_callers_settings():
    before = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(False)
    try:
        with pinned():
            assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
        assert torch.get_num_threads() == 2 and not torch.are_deterministic_algorithms_enabled()
        with pinned(None):
            assert torch.get_num_threads() == 2 and torch.are_deterministic_algorithms_enabled()
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.set_num_threads(before[0])
        torch.use_deterministic_algorithms(before[1], warn_only=before[2])


def test_a_log_written_with_two_threads_replays_exactly_with_one(tmp_path, embedded_tokenizer, monkeypatch):
    monkeypatch.setenv("MEMLOG_CACHE", str(tmp_path / "cache"))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        mem = init_memory(tmp_path / "s", ModelSpec(model="tiny-llama"), lm=_tiny(embedded_tokenizer), memit=CHEAP, engine=EngineConfig(ppl_bound=None, cap=50))
        try:
            mem.inject(fact_pool(3, seed=1))
            mem.sleep(cycles=1)
            recorded = [item.event.weights_sha256 for item in mem.logged if getattr(item.event, "weights_sha256", "")]
        finally:
            mem.close()
        assert len(recorded) >= 3
        torch.set_num_threads(1)
        mem = open_memory(tmp_path / "s", lm=_tiny(embedded_tokenizer), writable=False)
        try:
            rows = verify_cycles(mem)
            replayed = []
            for item in mem.logged:
                if getattr(item.event, "weights_sha256", ""):
                    replayed.append(mem.replay(f"seq={item.seq}")["weights_sha256"])
        finally:
            mem.close()
    finally:
        torch.set_num_threads(before)
    assert replayed == recorded
    assert [r["cycle"] for r in rows] == [0, 1]
    assert all(r["weights_match"] is True and r["completions_match"] is True for r in rows), rows
