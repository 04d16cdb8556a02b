"""Re-execution is exact: the same experiment twice gives the same events, and replay verifies every cycle.

On the tiny random Llama (a fresh copy per run, each with its own covariance cache so
both runs compute everything): a small phase-ab runs twice into two stores. The event
streams must be equal once timestamps and durations are removed, and replaying the
finished store at every cycle with ``verify`` must reproduce the recorded weights hash and
recompute the recorded audit completions word for word.
"""

from __future__ import annotations

import pytest

from memlog.core.adapter import LayerAdapter
from memlog.core.memit_hparams import MemitConfig
from memlog.core.model import LoadedModel, ModelSpec
from memlog.engine.open import open_memory
from memlog.experiments.checks import comparable_events, first_difference, strip_volatile, verify_cycles
from memlog.experiments.runner import ExperimentSetup, phase_ab_experiment
from memlog.store.store import Store
from tests.conftest import make_tiny_llama

CHEAP = MemitConfig(layers=(1, 2), cov_samples=24, v_steps=10)


def fresh_tiny(tokenizer) -> LoadedModel:
    model = make_tiny_llama(seed=0)
    return LoadedModel(model=model, tokenizer=tokenizer, adapter=LayerAdapter.for_model(model), model_id="tiny-llama", source="test", spec=ModelSpec(model="tiny-llama"))


def run_once(tmp_path, name: str, tokenizer, monkeypatch, mode: str) -> tuple[dict, list[dict]]:
    monkeypatch.setenv("MEMLOG_CACHE", str(tmp_path / f"cache-{name}"))
    # No PPL check per refresh: on a random model every fact is refreshed every cycle, and each check is a full PPL pass.
    setup = ExperimentSetup(seed=3, refresh_mode=mode, cap=4, max_cycles=2, threads=1, ppl_bound=None)
    doc = phase_ab_experiment(tmp_path / name, setup, n_facts=3, second_wave=1, lm=fresh_tiny(tokenizer), memit=CHEAP)
    store = Store.open(tmp_path / name, writable=False)
    try:
        events = comparable_events(store.log.read())
    finally:
        store.close()
    return doc, events


def test_strip_volatile_removes_durations_at_every_depth():
    data = {"seconds": 1.0, "a": [{"step_seconds": {"x": 1}, "b": 2}], "ts": "now"}
    assert strip_volatile(data) == {"a": [{"b": 2}]}


@pytest.mark.parametrize("mode", ["in-place", "copy"])
def test_phase_ab_twice_gives_the_same_events_and_replay_verifies(tmp_path, embedded_tokenizer, monkeypatch, mode):
    doc_a, events_a = run_once(tmp_path, "a", embedded_tokenizer, monkeypatch, mode)
    doc_b, events_b = run_once(tmp_path, "b", embedded_tokenizer, monkeypatch, mode)
    assert first_difference(events_a, events_b) is None
    assert events_a == events_b
    kinds = {e["kind"] for e in events_a}
    assert {"FactInjected", "RecallAudited", "SleepStarted", "SleepEnded", "PerplexityMeasured"} <= kinds
    assert strip_volatile(doc_a["phases"]) == strip_volatile(doc_b["phases"])

    mem = open_memory(tmp_path / "a", lm=fresh_tiny(embedded_tokenizer), writable=False)
    try:
        rows = verify_cycles(mem)
    finally:
        mem.close()
    cycles = sum(p["cycles_run"] for p in doc_a["phases"])
    assert [r["cycle"] for r in rows] == list(range(cycles + 1))
    # every cycle's weights have a recorded hash that the replay reproduces, and the recomputed
    # audit gives the recorded completions word for word (the random model never recalls a fact,
    # so the verdicts alone would compare nothing)
    assert all(r["verified"] is True and r["weights_match"] is True and r["completions_match"] is True for r in rows), rows
