"""How the number of covariance windows changes MEMIT's update, with and without the norm penalty.

MEMIT's one-key update at a layer is ΔW = R (A⁻¹k)ᵀ / (λ + q), with A = C (or, with the norm
penalty ρ, A = C + ρ·(tr C/d)·I) and q = kᵀA⁻¹k. On a reference token with key x it moves the
layer's output by R·(kᵀA⁻¹x)/(λ + q), so over tokens whose keys have second moment M the mean
squared output change per unit residual is

    damage(M) = kᵀA⁻¹ M A⁻¹k / (λ + q)²

(the quantity perplexity feels), and the update's size per unit residual is ‖A⁻¹k‖/(λ + q).
With M = C, the tokens C was estimated from, damage is about 1/q: MEMIT's optimum. On tokens C
did not see it can be much larger where C underestimates a direction, because A⁻¹ amplifies it.

One forward pass over the covariance part of the corpus (``--windows`` windows of 64 tokens,
evenly spaced) keeps eight interleaved sums, so C from 1/8, 1/4, 1/2 and all of the windows come
from one pass. For each estimate, each edit layer and ρ in {0, 10}, it prints the median over
``--facts`` pool facts of q, of the update's size, and of the damage on two held-out sets: the
perplexity slice (what memlog's PPL reads) and the windows the estimate left out (for the full
estimate, the slice only).

    MEMLOG_THREADS=2 python scripts/cov_samples.py > docs/runs/cov-samples.json
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from _common import log, setup_threads
from memlog.core.corpus import covariance_chunks, perplexity_text
from memlog.core.covariance import SKIP_POSITIONS
from memlog.core.forward import forward_until
from memlog.core.keys import compute_keys
from memlog.core.memit_hparams import MemitConfig
from memlog.core.model import ModelSpec, load_model
from memlog.core.pool import mixed_pool

GROUPS = 8
LAYERS = (3, 4, 5, 6, 7, 8, 9)


def grouped_sums(lm, chunks: list[list[int]], layers, groups: int) -> tuple[dict, list[int]]:
    """Σ x xᵀ per layer for each of ``groups`` interleaved sets of windows (window i in set i mod groups)."""
    dims = {layer: lm.adapter.key_dim(lm.model, layer) for layer in layers}
    sums = {layer: torch.zeros(groups, dims[layer], dims[layer], dtype=torch.float64) for layer in layers}
    counts = [0] * groups
    current = {"group": 0}

    def hook_for(layer):
        def hook(_module, args):
            x = args[0][:, SKIP_POSITIONS:].reshape(-1, args[0].shape[-1]).float()
            sums[layer][current["group"]] += (x.T @ x).double()

        return hook

    hooks = [(lm.adapter.mlp_out(lm.model, layer), hook_for(layer)) for layer in layers]
    with torch.no_grad():
        for group in range(groups):
            current["group"] = group
            members = chunks[group::groups]
            for start in range(0, len(members), 16):
                ids = torch.tensor(members[start : start + 16], dtype=torch.long)
                forward_until(lm, layers[-1], ids, None, pre_hooks=hooks)
            counts[group] = len(members) * (len(chunks[0]) - SKIP_POSITIONS)
            log(f"windows of set {group + 1}/{groups} read", sys.stderr)
    return sums, counts


def update_measures(C: torch.Tensor, K: torch.Tensor, held_out: dict[str, torch.Tensor], lam: float, rho: float) -> dict:
    """Median q, update size and held-out damage per unit residual (module docstring) over K's columns."""
    d = C.shape[0]
    A = C + rho * (C.trace() / d) * torch.eye(d, dtype=C.dtype) if rho else C
    AinvK = torch.linalg.solve(A, K)
    q = (K * AinvK).sum(dim=0)
    scale = lam + q
    row = {"q": float(q.median()), "update_size": float((AinvK.norm(dim=0) / scale).median())}
    row["damage_in_sample"] = float(((AinvK * (C @ AinvK)).sum(dim=0) / scale**2).median())
    for name, M in held_out.items():
        row[f"damage_{name}"] = float(((AinvK * (M @ AinvK)).sum(dim=0) / scale**2).median())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=1600)
    parser.add_argument("--facts", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    setup_threads()
    cfg = MemitConfig(layers=LAYERS)
    lm = load_model(ModelSpec())
    chunks = covariance_chunks(lm.tokenizer, args.windows, cfg.cov_seq_len)
    sums, counts = grouped_sums(lm, chunks, LAYERS, GROUPS)
    ppl_ids = lm.tokenizer(perplexity_text(), add_special_tokens=False)["input_ids"]
    ppl_windows = [ppl_ids[i : i + cfg.cov_seq_len] for i in range(0, len(ppl_ids) - cfg.cov_seq_len + 1, cfg.cov_seq_len)]
    ppl_sums, ppl_counts = grouped_sums(lm, ppl_windows, LAYERS, 1)
    keys = compute_keys(lm, mixed_pool(args.facts, seed=args.seed), list(LAYERS), cfg)
    estimates = {GROUPS // share: list(range(0, GROUPS, share)) for share in (8, 4, 2, 1)}  # windows used -> sets
    rows = []
    for layer in LAYERS:
        slice_M = ppl_sums[layer][0] / ppl_counts[0]
        K = keys[layer].double().cpu()
        for parts, sets in estimates.items():
            C = sum(sums[layer][g] for g in sets) / sum(counts[g] for g in sets)
            rest = [g for g in range(GROUPS) if g not in sets]
            held = {"ppl_slice": slice_M}
            if rest:
                held["other_windows"] = sum(sums[layer][g] for g in rest) / sum(counts[g] for g in rest)
            for rho in (0.0, 10.0):
                row = {"layer": layer, "windows": args.windows * parts // GROUPS, "rho": rho, "C_eig_min": float(torch.linalg.eigvalsh(C)[0])}
                rows.append({**row, **update_measures(C, K, held, cfg.solve_lam, rho)})
        log(f"layer {layer} measured", sys.stderr)
    print(json.dumps({"facts": args.facts, "pool_seed": args.seed, "lam": cfg.solve_lam, "ppl_slice_tokens": ppl_counts[0], "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
