"""The front door: ``import memlog`` gives ``open``, ``init``, ``Fact`` and ``Memory``.

On the tiny random Llama: ``memlog.init`` creates a store, the ``with`` block commits and then
releases it (the base weights are back, the writer lock is free), and ``memlog.open`` reopens
it at the same head with bit-identical weights. The README's Python example runs as written
on the embedded model in tests/test_readme.py.
"""

from __future__ import annotations

import pytest

import memlog
from memlog.core.adapter import LayerAdapter
from memlog.core.memit_hparams import MemitConfig
from memlog.core.model import LoadedModel, ModelSpec
from memlog.errors import UserError
from memlog.projections.weights import weights_sha256
from tests.conftest import make_tiny_llama

CHEAP = MemitConfig(layers=(1, 2), cov_samples=24, v_steps=10)


def fresh_tiny(tokenizer) -> LoadedModel:
    model = make_tiny_llama(seed=0)
    return LoadedModel(model=model, tokenizer=tokenizer, adapter=LayerAdapter.for_model(model), model_id="tiny-llama", source="test", spec=ModelSpec(model="tiny-llama"))


def test_exports():
    assert set(memlog.__all__) == {"Fact", "Memory", "OFF", "attach", "detach", "init", "open"}
    assert memlog.Memory.__module__ == "memlog.engine.memory"
    assert memlog.Fact("Aria Nakamura", "lives in", "Thessaloniki").prompt == "Aria Nakamura lives in"
    assert {"open", "init"} <= set(dir(memlog))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        memlog.nope  # noqa: B018


def test_init_then_open_as_context_managers(tmp_path, embedded_tokenizer, monkeypatch):
    monkeypatch.setenv("MEMLOG_CACHE", str(tmp_path / "cache"))
    lm = fresh_tiny(embedded_tokenizer)
    base = weights_sha256(lm.model, lm.adapter, CHEAP.layers)
    path = tmp_path / "store"
    with memlog.init(path, lm=lm, memit=CHEAP) as mem:
        assert isinstance(mem, memlog.Memory)
        report = mem.inject([memlog.Fact("Aria Nakamura", "lives in", "Thessaloniki")])
        live = mem.projector.weights_sha256()
        head = mem.head_seq
        status = mem.status()
    assert [f.status for f in report.facts] == ["injected"]
    assert status["model"] == "tiny-llama" and status["layers"] == [1, 2] and status["active_facts"] == 1
    assert live != base
    # Leaving the block closed the store and put the base weights back.
    assert weights_sha256(lm.model, lm.adapter, CHEAP.layers) == base

    with memlog.open(path, lm=lm) as mem:  # writable: the lock was released
        assert mem.head_seq == head
        assert mem.projector.weights_sha256() == live
        assert mem.replay(f"seq={head}")["weights_match"] is True
    with memlog.open(path, lm=lm, writable=False) as mem:
        assert mem.status()["active_facts"] == 1
    # None leaves the store's setting; OFF switches it off for the session only
    with memlog.open(path, lm=lm, writable=False, stale_after=None, cap=7) as mem:
        assert mem.config.stale_after == 3 and mem.config.cap == 7
    with memlog.open(path, lm=lm, writable=False, stale_after=memlog.OFF, ppl_bound=memlog.OFF) as mem:
        assert mem.config.stale_after is None and mem.config.ppl_bound is None
    with memlog.open(path, lm=lm, writable=False) as mem:
        assert mem.config.stale_after == 3 and mem.config.ppl_bound == 0.05
    with pytest.raises(UserError, match=r"\['wake'\] cannot be switched off"):
        memlog.open(path, lm=lm, wake=memlog.OFF)
    with pytest.raises(UserError, match=r"unknown engine setting\(s\) \['stale_aftr'\]"):
        memlog.open(path, lm=lm, stale_aftr=2)
    with pytest.raises(UserError, match="already holds a memlog store"):
        memlog.init(path, lm=lm, memit=CHEAP)
