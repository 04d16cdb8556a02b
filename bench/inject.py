"""Benchmark: one MEMIT inject vs v* alone, and a 100-fact audit vs one forward pass.

On the embedded SmolLM2-135M (CPU by default), with the covariance computed once up front
(as the engine caches it):

* ``inject / v*``: wall time of ``memit_edit`` for one fact against ``compute_v_star`` alone
  for the same fact, interleaved in the same run (target ≤ 1.25: everything but v* — keys,
  residuals, solves, restore — should be small); once with the covariance tensors (each
  edit factorises C) and once with ``prepare_covariances`` (factorised once);
* ``audit / forward``: ``audit`` of 100 pool facts (greedy, max_new_tokens = longest object
  + 2) against one left-padded batched forward pass over the same 100 prompts (target ≤ 3).

Each measurement is repeated; the ratio uses the minimum of each (robust to other load on
the machine), and medians are printed too. Usage: ``python bench/inject.py [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_common import print_ratio  # noqa: E402

from memlog.core.covariance import compute_covariance  # noqa: E402
from memlog.core.memit import memit_edit, prepare_covariances  # noqa: E402
from memlog.core.memit_hparams import MemitConfig  # noqa: E402
from memlog.core.vstar import compute_v_star  # noqa: E402
from memlog.core.model import ModelSpec, load_model  # noqa: E402
from memlog.core.pool import fact_pool  # noqa: E402
from memlog.core.recall import audit  # noqa: E402


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def batched_forward(lm, prompts: list[str]) -> None:
    tok = lm.tokenizer
    side, tok.padding_side = tok.padding_side, "left"
    try:
        enc = tok(prompts, return_tensors="pt", padding=True).to(lm.device)
    finally:
        tok.padding_side = side
    with torch.no_grad():
        lm.model(**enc, use_cache=False)


def describe(name: str, values: list[float]) -> str:
    return f"{name}: min {min(values):.2f}s, median {statistics.median(values):.2f}s over {len(values)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("MEMLOG_BENCH_THREADS", 1)),
                        help="torch threads (default 1: steadier on a shared machine)")
    parser.add_argument("--cov-samples", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model(ModelSpec(device=args.device))
    cfg = MemitConfig(cov_samples=args.cov_samples)
    print(f"model: {lm.model_id} on {lm.device}, {args.threads} threads; layers {cfg.layers[0]}-{cfg.layers[-1]}")
    cov_seconds = timed(lambda: setattr(args, "covs", compute_covariance(lm, cfg.layers, cfg).covs))
    print(f"covariance (once, cached by the engine): {cov_seconds:.1f}s")

    prepared = prepare_covariances(args.covs, lm.device)
    facts = fact_pool(args.repeats)
    v_times, inject_times, prepared_times, parts = [], [], [], []
    for fact in facts:
        v_times.append(timed(lambda: compute_v_star(lm, [fact], cfg.layers[-1], cfg)))
        result = memit_edit(lm, [fact], cfg, args.covs)
        inject_times.append(result.seconds)
        parts.append(result.timings)
        prepared_times.append(memit_edit(lm, [fact], cfg, prepared).seconds)
    print(describe("v* alone", v_times))
    print(describe("inject (memit_edit, 1 fact, covariance tensors)", inject_times))
    print(describe("inject (memit_edit, 1 fact, prepare_covariances factors)", prepared_times))
    rest = {name: statistics.median(t.get(name, 0.0) for t in parts) for name in ("keys", "solve", "apply", "restore")}
    print("inject minus v* (medians): " + ", ".join(f"{k} {v:.2f}s" for k, v in rest.items()))
    print_ratio("inject_vs_vstar", min(inject_times), min(v_times), "one inject / v* alone, min of each; target <= 1.25")
    print_ratio("inject_prepared_vs_vstar", min(prepared_times), min(v_times), "same, with prepare_covariances; target <= 1.25")

    pool = fact_pool(100)
    prompts = [f.prompt for f in pool]
    audit_times, forward_times = [], []
    for _ in range(args.repeats):
        forward_times.append(timed(lambda: batched_forward(lm, prompts)))
        audit_times.append(timed(lambda: audit(lm, pool)))
    print(describe("one batched forward, 100 prompts", forward_times))
    print(describe("audit, 100 facts", audit_times))
    print_ratio("audit_vs_forward", min(audit_times), min(forward_times), "audit of 100 facts / one batched forward, min of each; target <= 3")


if __name__ == "__main__":
    main()
