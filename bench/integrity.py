"""Benchmark: the cost of the integrity checks on the embedded model and on a grown log.

* The base-model fingerprint: hashing every weight of SmolLM2-135M (cold), against reading
  it back from the fingerprint cache (file identity unchanged), against loading the model.
* The hash chain: the full chain and HEAD check a writable open runs, on a log of
  ``--events`` events (synthetic audits and perplexity readings written through the log).
* The ``memlog sql`` snapshot: copying the log under a short read-only attach.

    python bench/integrity.py [--events 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench_common import add_repo_to_path, fix_threads, median_time, print_ratio, timed

add_repo_to_path()


def grown_store(path: Path, events: int, facts: int = 50):
    """A store with ``events`` events: audits of ``facts`` facts and perplexity readings."""
    from memlog.store.events import PerplexityMeasured, RecallAudited, StoreCreated
    from memlog.store.records import AuditResult
    from memlog.store.store import Store

    header = StoreCreated(model_id="bench", model_source="bench", fingerprint="model-sha256:bench", layers=[4], dtype="float32", config={})
    store = Store.create(path, header)
    results = [AuditResult(fact_id=f"f-{i:012x}", edit_id=f"e{i:05d}", recalled=i % 3 != 0, completion=" Thessaloniki, the") for i in range(facts)]
    batch = []
    for i in range(events - 1):
        if i % 2:
            batch.append(RecallAudited(phase="wake", cycle=None, results=results, recall=0.66, degraded=17))
        else:
            batch.append(PerplexityMeasured(ppl=12.5 + i * 1e-4, phase="wake"))
        if len(batch) == 100:
            store.append(batch)
            batch = []
    if batch:
        store.append(batch)
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    fix_threads(1)
    from memlog.analytics.connection import snapshot
    from memlog.core.fingerprint import cached_model_fingerprint, model_fingerprint
    from memlog.core.model import EMBEDDED, ModelSpec, load_model
    from memlog.store.store import chain_check

    load_s, lm = timed(lambda: load_model(ModelSpec(model=EMBEDDED)))
    params = sum(t.numel() for t in lm.model.state_dict().values())
    cold = median_time(lambda: model_fingerprint(lm.model), args.repeats)
    cached_model_fingerprint(lm)
    warm = median_time(lambda: cached_model_fingerprint(lm), args.repeats)
    print(f"integrity: model load {load_s:.2f} s; {params / 1e6:.0f}M state-dict values")
    print(f"integrity: whole-model fingerprint {cold:.3f} s cold, {warm * 1e3:.2f} ms from the cache")
    print_ratio("fingerprint_cold_over_load", cold, load_s, "hashing every weight / loading the model")
    print_ratio("fingerprint_cached_over_load", warm, load_s, "cached fingerprint / loading the model")

    with tempfile.TemporaryDirectory() as tmp:
        store = grown_store(Path(tmp) / "s", args.events)
        size = (store.path / "log.duckdb").stat().st_size
        check = median_time(lambda: chain_check(store.path, store.log), args.repeats)
        read = median_time(lambda: store.log.read(), args.repeats)
        copy = median_time(lambda: snapshot(store.path / "log.duckdb", Path(tmp) / "copy.duckdb"), args.repeats)
        store.close()
    print(f"integrity: log of {args.events} events, {size / 1e6:.1f} MB: chain+HEAD check {check * 1e3:.0f} ms, "
          f"reading the events {read * 1e3:.0f} ms, sql snapshot copy {copy * 1e3:.0f} ms")
    print_ratio("chain_check_over_log_read", check, read, "full chain check / reading every event (both on a writable open)")


if __name__ == "__main__":
    main()
