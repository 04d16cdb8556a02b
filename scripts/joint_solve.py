"""One joint MEMIT solve of every fact from the base weights, at growing fact counts.

The sequential runs in docs/RESULTS.md write facts batch after batch, each solve on top of the
last. MEMIT itself is a batch editor: every fact's v* target on the unedited model, then one
least-squares solve per layer for all of them together. This script measures that on the
embedded model at the store's constrained λ (2 × the key dimension) and one larger λ:

1. v* for the pool's facts in chunks of ``--chunk`` on the base weights (saved as it goes, so a
   stopped run resumes);
2. at each count in ``--at`` that v* has reached: ``solve_layers`` for the first N facts jointly
   (no null-space constraint: nothing older is held), the factors applied, every fact's bare
   prompt audited, perplexity read, the weights restored.

    python scripts/joint_solve.py --out runs/joint --facts 1000 --at 100 200 300 500 1000

One JSON row a (N, λ) on stdout; progress lines on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from _common import cached_covariance, log, setup_threads

from memlog.core.memit import applied, solve_layers
from memlog.core.memit_hparams import MemitConfig, store_lam
from memlog.core.model import ModelSpec, load_model
from memlog.core.perplexity import perplexity
from memlog.core.pool import mixed_pool
from memlog.core.recall import audit
from memlog.core.vstar import solve_v_star


def targets_for(lm, facts, cfg, out: Path, chunk: int, upto: int) -> torch.Tensor:
    """v* targets (d_model × upto) of the first ``upto`` facts, chunk by chunk, cached in ``out``."""
    parts = []
    for start in range(0, upto, chunk):
        path = out / f"targets-{start:05d}-{chunk}.pt"
        if not path.is_file():
            began = time.perf_counter()
            v = solve_v_star(lm, facts[start : start + chunk], cfg.layers[-1], cfg)
            torch.save({"targets": v.targets.cpu(), "nll": v.nll.cpu()}, path)
            log(f"v* facts {start}-{start + chunk}: {time.perf_counter() - began:.0f}s", sys.stderr)
        parts.append(torch.load(path)["targets"])
    return torch.cat(parts, dim=1)[:, :upto]


def measure(lm, facts, cfg, covs, targets, lam: float) -> dict:
    solve_cfg = MemitConfig(layers=cfg.layers, lam=lam, n_prefixes=cfg.n_prefixes, seed=cfg.seed)
    began = time.perf_counter()
    deltas, _ = solve_layers(lm, facts, solve_cfg, covs, targets)
    solved = time.perf_counter() - began
    norms = {}
    for layer, f in deltas.items():
        weight = lm.adapter.edit_weight_view(lm.model, layer)
        norms[layer] = float((f.u @ f.v.T).norm() / weight.float().norm())
    with applied(lm, deltas):
        results = audit(lm, facts)
        ppl, _ = perplexity(lm)
    recalled = [r.recalled for r in results]
    return {
        "facts": len(facts),
        "lam": lam,
        "recall": sum(recalled) / len(recalled),
        "recall_first_100": sum(recalled[:100]) / min(100, len(recalled)),
        "ppl": ppl,
        "delta_norm_ratio": norms,
        "solve_seconds": solved,
        "seconds": time.perf_counter() - began,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--facts", type=int, default=1000)
    parser.add_argument("--at", type=int, nargs="+", default=[100, 200, 300, 500, 1000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=25)
    parser.add_argument("--lam-factors", type=float, nargs="+", default=[2.0, 8.0], help="λ as multiples of the key dimension")
    args = parser.parse_args()
    setup_threads()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lm = load_model(ModelSpec(model="embedded"))
    cfg = MemitConfig()
    covs = cached_covariance(lm, cfg, log=lambda m: log(m, sys.stderr))
    facts = mixed_pool(args.facts, seed=args.seed, names="unique")
    key_dim = lm.adapter.key_dim(lm.model, cfg.layers[0])
    base_ppl, _ = perplexity(lm)
    print(json.dumps({"base_ppl": base_ppl, "key_dim": key_dim, "seed": args.seed}), flush=True)
    for n in sorted(args.at):
        targets = targets_for(lm, facts, cfg, out, args.chunk, n)
        for factor in args.lam_factors:
            lam = store_lam(key_dim, True) * factor / 2.0
            row = measure(lm, facts[:n], cfg, covs, targets, lam)
            print(json.dumps(row), flush=True)
            log(f"N={n} λ={lam:g}: recall {row['recall']:.3f}, PPL {row['ppl']:.3f}, {row['seconds']:.0f}s", sys.stderr)


if __name__ == "__main__":
    main()
