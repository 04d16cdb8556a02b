"""Benchmark: replaying a 100-edit log to its head vs loading the model (target ≤ 10%).

Opening a store is ``load_model`` plus the replay: read and fold the log, load the
covariances, check the base model's fingerprint (every weight, cached by file identity), load every delta factor and project
``W_base + Σ U Vᵀ`` onto the model. This builds a realistic 100-edit store cheaply —
random rank-1 factors of the embedded model's shapes for every edit layer, written
through the blob store as ``FactInjected`` events (no MEMIT runs), with random
covariance-sized matrices — then times ``open_memory(store, lm=...)`` (everything but
the model load) and its parts against ``load_model`` from the safetensors cache.

    python bench/replay.py [--edits 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import asdict
from pathlib import Path

from bench_common import add_repo_to_path, fix_threads, median_time, print_ratio, timed

add_repo_to_path()


def random_factors(lm, layers: list[int], seed: int):
    """Rank-1 (u, v, keys) per layer with the model's shapes; small u, as real edits are."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    out = {}
    for layer in layers:
        d_out, d_in = lm.adapter.edit_weight_view(lm.model, layer).shape
        keys = torch.randn(d_in, 1, generator=gen)
        out[layer] = (torch.randn(d_out, 1, generator=gen) * 1e-3, torch.randn(d_in, 1, generator=gen), keys)
    return out


def random_covariance(d: int, seed: int):
    import torch

    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(d, 64, generator=gen)
    return a @ a.T / 64 + 1e-3 * torch.eye(d)


def build_store(path: Path, lm, edits: int) -> None:
    """A store with covariances and ``edits`` FactInjected events of random rank-1 deltas."""
    from memlog.core.fingerprint import cached_model_fingerprint
    from memlog.core.memit_hparams import MemitConfig
    from memlog.core.pool import fact_pool
    from memlog.engine.config import EngineConfig
    from memlog.projections.facts import record_of
    from memlog.projections.weights import WeightProjector
    from memlog.store.events import CovarianceComputed, FactInjected, StoreCreated
    from memlog.store.records import LayerDelta
    from memlog.store.store import Store

    memit = MemitConfig()
    layers = list(memit.layers)
    header = StoreCreated(
        model_id=lm.model_id,
        model_source=str(lm.source),
        fingerprint=cached_model_fingerprint(lm),
        layers=layers,
        dtype="float32",
        config={"memit": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(memit).items()}, "engine": EngineConfig().to_dict(), "device": "cpu", "load_in_4bit": False},
    )
    store = Store.create(path, header)
    projector = WeightProjector(lm.model, lm.adapter, layers, store.blobs.get)
    try:
        events = []
        for layer in layers:
            d_in = lm.adapter.key_dim(lm.model, layer)
            events.append(CovarianceComputed(layer=layer, cov=store.blobs.put(random_covariance(d_in, layer).numpy()), n_samples=200, n_tokens=12800, corpus_sha256="bench"))
        for i, fact in enumerate(fact_pool(edits, seed=0)):
            deltas = [
                LayerDelta(layer=layer, u=store.blobs.put(u.numpy()), v=store.blobs.put(v.numpy()), keys=store.blobs.put(k.numpy()))
                for layer, (u, v, k) in random_factors(lm, layers, seed=i).items()
            ]
            events.append(FactInjected(edit_id=f"e{i + 1:05d}", version=1, fact=record_of(fact), deltas=deltas, v_loss=0.0))
        store.append(events)
    finally:
        projector.project([])
        store.close()


def time_parts(path: Path, lm) -> dict[str, float]:
    """Seconds of each replay step, done by hand in the order ``open_memory`` does them."""
    from memlog.core.fingerprint import fingerprint_for
    from memlog.engine.header import covariances_from_log
    from memlog.projections.ledger import Ledger
    from memlog.projections.weights import WeightProjector
    from memlog.store.store import Store

    parts: dict[str, float] = {}
    store = Store.open(path, writable=False)
    try:
        parts["read_log"], logged = timed(store.log.read)
        header = store.log.header()
        parts["fingerprint"], _ = timed(lambda: fingerprint_for(header.fingerprint, lm, list(header.layers), header.model_id))
        parts["covariances"], _ = timed(lambda: covariances_from_log(store, [x for x in logged if type(x.event).__name__ == "CovarianceComputed"]))
        parts["fold"], ledger = timed(lambda: Ledger.fold([(x.seq, x.event) for x in logged]))
        projector = WeightProjector(lm.model, lm.adapter, list(header.layers), store.blobs.get)
        parts["project_cold"], _ = timed(lambda: projector.project(ledger.applied_entries()))
        parts["project_warm"], _ = timed(lambda: projector.project(ledger.applied_entries()))
        projector.project([])
    finally:
        store.close()
    return parts


def time_open(path: Path, lm) -> float:
    """Seconds of ``open_memory(path, lm=lm)``: the whole replay to head, without the model load."""
    from memlog.engine.open import open_memory

    def once():
        mem = open_memory(path, lm=lm, writable=False)
        return mem

    seconds, mem = timed(once)
    mem.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    threads = fix_threads()
    from memlog.core.model import ModelSpec, load_model

    lm = load_model(ModelSpec())
    load = median_time(lambda: load_model(ModelSpec()), args.repeats)
    with tempfile.TemporaryDirectory(prefix="memlog-bench-replay-") as tmp:
        path = Path(tmp) / "store"
        build_seconds, _ = timed(lambda: build_store(path, lm, args.edits))
        time_open(path, lm)  # warm the OS file cache, as a second open would find it
        opens = sorted(time_open(path, lm) for _ in range(args.repeats))
        open_s = opens[len(opens) // 2]
        parts = time_parts(path, lm)
    from memlog.core.memit_hparams import MemitConfig

    layers = list(MemitConfig().layers)
    print(f"replay: built a {args.edits}-edit store (layers {layers[0]}-{layers[-1]}, random rank-1 deltas) in {build_seconds:.1f} s; {threads} threads")
    print(f"replay: load_model (embedded, safetensors cache): {load * 1000:.0f} ms (median of {args.repeats})")
    print(f"replay: open_memory replay to head ({args.edits} edits, model given): {open_s * 1000:.0f} ms (median of {args.repeats})")
    for name, seconds in parts.items():
        print(f"replay:   {name:<13} {seconds * 1000:8.1f} ms")
    print_ratio("replay.open_over_load", open_s, load, f"open_memory replay of {args.edits} edits / load_model; target ≤ 0.10")
    projection = parts["fold"] + parts["project_cold"]
    print_ratio("replay.projection_over_load", projection, load, "fold + cold projection (factor loads included) / load_model")


if __name__ == "__main__":
    main()
