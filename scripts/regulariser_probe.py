"""One batch of pool facts solved on the unedited embedded model under the two regularisers.

    python scripts/regulariser_probe.py --facts 25 --seed 7 --rho 0 0.1 1 10 30

Prints the spectrum of C at the first and last edit layer, then one line per setting: the norm
penalty ρ (``MemitConfig.norm_penalty``) for each ``--rho`` on one shared v*, and v* with the stop
loss against most-probable early stopping (``MemitConfig.v_stop``) at ρ = 0: v* seconds, the mean
‖δ‖/‖h‖, the batch's greedy recall with the edit applied, reference PPL, and ‖ΔW‖/‖W‖ per edit
layer. docs/MEMIT.md ("Two regularisers against norm growth") records a run.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch
from _common import cached_covariance, log, setup_threads

from memlog.core.memit import applied, prepare_covariances, solve_layers
from memlog.core.memit_hparams import MemitConfig
from memlog.core.model import ModelSpec, load_model
from memlog.core.perplexity import perplexity
from memlog.core.pool import mixed_pool
from memlog.core.recall import audit
from memlog.core.vstar import compute_v_star


def measure(lm, facts, cfg, covs, targets, weight_norms) -> str:
    deltas, _ = solve_layers(lm, facts, cfg, prepare_covariances(covs, norm_penalty=cfg.norm_penalty), targets)
    norms = [float((d.u @ d.v.T).norm()) / weight_norms[layer] for layer, d in sorted(deltas.items())]
    with applied(lm, deltas):
        recall = sum(r.recalled for r in audit(lm, facts)) / len(facts)
        ppl = perplexity(lm)[0]
    return f"recall {recall:.2f} ppl {ppl:.3f} norms {' '.join(f'{x:.3f}' for x in norms)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facts", type=int, default=25)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rho", type=float, nargs="*", default=[0.0, 0.1, 1.0, 10.0, 30.0])
    args = parser.parse_args()
    setup_threads()
    lm = load_model(ModelSpec())
    cfg = MemitConfig()
    covs = cached_covariance(lm, cfg, log)
    for layer in (cfg.layers[0], cfg.layers[-1]):
        eig = torch.linalg.eigvalsh(covs[layer].double())
        quantiles = ", ".join(f"{eig[int(q * len(eig))]:.3g}" for q in (0.01, 0.1, 0.5, 0.9))
        log(f"layer {layer}: C's mean eigenvalue {eig.mean():.4g}; 1/10/50/90 % quantiles {quantiles}; largest {eig[-1]:.4g}")
    facts = mixed_pool(args.facts, seed=args.seed)
    weight_norms = {layer: float(lm.adapter.edit_weight_view(lm.model, layer).norm()) for layer in cfg.layers}
    h = None
    for stop in ("loss", "most-probable"):
        run = replace(cfg, v_stop=stop)
        started = time.perf_counter()
        targets, nll = compute_v_star(lm, facts, cfg.layers[-1], run)
        seconds = time.perf_counter() - started
        if h is None:
            h = compute_v_star(lm, facts, cfg.layers[-1], replace(cfg, v_steps=0))[0]  # the unedited residual
        moved = float(((targets - h).norm(dim=0) / h.norm(dim=0)).mean())
        log(f"v_stop {stop}: v* {seconds:.0f}s, NLL {float(nll.mean()):.3f}, |delta|/|h| {moved:.3f}; rho 0: {measure(lm, facts, run, covs, targets, weight_norms)}")
        if stop == "loss":
            for rho in args.rho:
                log(f"v_stop loss, rho {rho}: {measure(lm, facts, replace(cfg, norm_penalty=rho), covs, targets, weight_norms)}")


if __name__ == "__main__":
    main()
