"""Why λ barely matters on the embedded model: kᵀC⁻¹k against λ, per edit layer.

For one new key k the MEMIT update is ΔW = R kᵀ(kkᵀ + λC)⁻¹ = R (C⁻¹k)ᵀ / (λ + q) with
q = kᵀC⁻¹k (Sherman-Morrison), and the edit reaches a fraction q / (λ + q) of its target.
When q is orders of magnitude above λ, both are independent of λ. This prints q for 20 pool
facts (or, with ``--file``, a seeded sample of CounterFact / zsRE records) at every default edit layer (C = mean k kᵀ over the reference tokens, as memlog
computes it), with ‖k‖² and tr(C) for scale, and the relative change of ΔW between λ = 0.1
and λ = 1000.

    MEMLOG_THREADS=1 python scripts/lam_scale.py > lam_scale.json
    MEMLOG_THREADS=1 python scripts/lam_scale.py --file counterfact-edit-10k.json --sample 20 --seed 2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from _common import setup_threads
from memlog.core.factfile import read_cases
from memlog.core.fingerprint import cached_model_fingerprint
from memlog.core.keys import compute_keys
from memlog.core.memit_hparams import MemitConfig
from memlog.core.model import ModelSpec, load_model
from memlog.engine.open import _load_or_compute_covariances
from memlog.core.pool import fact_pool
from memlog.experiments.knowledge_eval import sample_cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", help="CounterFact / zsRE records instead of pool facts")
    parser.add_argument("--sample", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    setup_threads()
    cfg = MemitConfig()
    spec = ModelSpec()
    lm = load_model(spec)
    # the covariances memlog itself uses (cached under $MEMLOG_CACHE by fingerprint, layer and corpus)
    fp = cached_model_fingerprint(lm)
    covs = _load_or_compute_covariances(lm, list(cfg.layers), cfg, fp, None, lambda *a: None)[0]
    if args.file:
        facts = [c.fact for c in sample_cases(read_cases(Path(args.file)), args.sample, args.seed)]
    else:
        facts = fact_pool(args.sample, seed=args.seed)
    keys = compute_keys(lm, facts, list(cfg.layers), cfg)
    rows = []
    for layer in cfg.layers:
        C = covs[layer].double()
        K = keys[layer].double()
        q = (K * torch.linalg.solve(C, K)).sum(dim=0)
        k2 = (K * K).sum(dim=0)
        eig = torch.linalg.eigvalsh(C)
        change = ((1000 + q) / (0.1 + q) - 1).abs()
        rows.append(
            {
                "layer": layer,
                "q_median": float(q.median()),
                "q_min": float(q.min()),
                "q_max": float(q.max()),
                "key_norm2_median": float(k2.median()),
                "trace_C": float(C.trace()),
                "C_eig_min": float(eig[0]),
                "C_eig_max": float(eig[-1]),
                "efficacy_fraction_lam_1000_min": float((q / (1000 + q)).min()),
                "dW_change_0.1_to_1000_max": float(change.max()),
            }
        )
    source = {"file": Path(args.file).name, "sample": args.sample, "seed": args.seed} if args.file else {"pool_seed": args.seed}
    print(json.dumps({"facts": len(facts), **source, "lam_default": cfg.solve_lam, "layers": rows}, indent=1))


if __name__ == "__main__":
    main()
