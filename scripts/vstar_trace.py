"""Trace v* step by step: each evaluation's per-fact NLL + KL (the early-stop criterion), object
NLL and whether the object is the greedy choice in every context, for one batch of pool facts
on a model's base weights.

    python scripts/vstar_trace.py --seed 5 --facts 25 > trace.json

Rows follow the batch as v* narrows it (``n`` is the rows' count at that evaluation).
"""

from __future__ import annotations

import argparse
import json
import time

from _common import setup_threads

import memlog.core.vstar as vstar
from memlog.core.memit_hparams import MemitConfig
from memlog.core.model import ModelSpec, load_model
from memlog.core.pool import mixed_pool


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--facts", type=int, default=25)
    parser.add_argument("--model", default="embedded")
    args = parser.parse_args()
    setup_threads()
    lm = load_model(ModelSpec(model=args.model))
    facts = mixed_pool(args.facts, seed=args.seed, names="unique")
    trace = []
    losses = vstar._losses

    def recorded(lm_, problem, delta, cfg):
        out = losses(lm_, problem, delta, cfg)
        trace.append({"n": int(delta.shape[0]), "fit": out[1].detach().tolist(), "nll": out[2].detach().tolist(), "top": out[3].tolist()})
        return out

    vstar._losses = recorded  # this process only: the trace is all it runs
    cfg = MemitConfig()
    start = time.perf_counter()
    solution = vstar.solve_v_star(lm, facts, cfg.layers[-1], cfg)
    print(json.dumps({"seed": args.seed, "facts": args.facts, "seconds": time.perf_counter() - start, "evals": len(trace), "final_nll": solution.nll.tolist(), "trace": trace}))


if __name__ == "__main__":
    main()
