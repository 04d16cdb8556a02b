"""Refreshing many facts when their constraint keys span the key space (tiny random Llama).

A random model recalls nothing, so after ``--facts`` injections every fact is degraded and
one sleep cycle refreshes them all; each refreshed fact's keys join the constraint set, so
after d_in (the MLP width, 128 by default) refreshes the set spans every key dimension. The script
reports how many refreshes were solved under the full set, how many under the retry subset
(``memlog.engine.constraints``), how many failed (``RefreshFailed``; the edit stays applied),
and that every recorded weights hash replays.

    MEMLOG_THREADS=1 python scripts/scale_refresh.py --facts 200 > scale.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from _common import setup_threads
from memlog.core.adapter import LayerAdapter
from memlog.core.memit import MemitConfig
from memlog.core.model import LoadedModel, ModelSpec
from memlog.core.pool import fact_pool
from memlog.engine.config import EngineConfig
from memlog.engine.open import init_memory
from memlog.store.events import EditRefreshed, RefreshFailed
from memlog.core.model import ensure_embedded_cache
from tests.conftest import make_tiny_llama


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--facts", type=int, default=200)
    parser.add_argument("--mlp-width", type=int, default=128, help="the tiny model's MLP width (= the key dimension d_in)")
    args = parser.parse_args()
    setup_threads()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(ensure_embedded_cache()))
    tok.pad_token = tok.pad_token or tok.eos_token
    model = make_tiny_llama(seed=0, intermediate=args.mlp_width)
    lm = LoadedModel(model=model, tokenizer=tok, adapter=LayerAdapter.for_model(model), model_id="tiny-llama", source="script", spec=ModelSpec(model="tiny-llama"))
    cfg = MemitConfig(layers=(1, 2), cov_samples=24, v_steps=5)
    with tempfile.TemporaryDirectory() as tmp:
        mem = init_memory(Path(tmp) / "s", ModelSpec(model="tiny-llama"), lm=lm, memit=cfg, engine=EngineConfig(ppl_bound=None, cap=10_000))
        try:
            started = time.perf_counter()
            mem.inject(fact_pool(args.facts, seed=0), audit=False)
            inject_s = time.perf_counter() - started
            started = time.perf_counter()
            report = mem.sleep(cycles=1)
            sleep_s = time.perf_counter() - started
            refreshed = [i.event for i in mem.logged if isinstance(i.event, EditRefreshed)]
            failed = [i.event for i in mem.logged if isinstance(i.event, RefreshFailed)]
            d_in = lm.adapter.edit_weight_view(lm.model, 1).shape[1]
            # nothing is healthy on a random model, so the k-th refresh's full set is the k earlier refreshes' keys
            full = sum(1 for k, e in enumerate(refreshed) if e.n_constraint_keys == k)
            subset = Counter(e.n_constraint_keys for k, e in enumerate(refreshed) if e.n_constraint_keys != k)
            recorded = [(i.seq, i.event.weights_sha256) for i in mem.logged if getattr(i.event, "weights_sha256", "")]
            sample = recorded[:: max(1, len(recorded) // 20)] + recorded[-1:]
            replay_ok = all(mem.replay(f"seq={seq}")["weights_sha256"] == sha for seq, sha in sample)
            applied = sum(1 for e in mem.ledger.entries.values() if e.applied)
        finally:
            mem.close()
    cycle = report.cycles[0]
    print(json.dumps({
        "facts": args.facts, "d_in": d_in, "degraded_before": cycle.degraded_before_active,
        "refreshed": cycle.refreshed, "refreshed_under_full_set": full, "refreshed_under_subset": sum(subset.values()),
        "subset_sizes": dict(subset), "failed": len(failed), "failure_reasons": sorted({e.reason[:80] for e in failed}),
        "edits_applied_after": applied, "replay_hashes_match": replay_ok, "inject_s": round(inject_s, 1), "sleep_s": round(sleep_s, 1),
    }, indent=1))


if __name__ == "__main__":
    main()
