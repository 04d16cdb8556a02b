"""Single-fact efficacy on the embedded model: ``--facts`` pool facts, each injected alone.

For every fact, ``memit_edit`` (the product path, default ``MemitConfig``) computes the edit
on the base model; the edit is applied, measured and removed (weights restored bit for bit):

* recalled: the fact's prompt completes with its object (raw greedy, word boundary);
* unrelated prompts unchanged: greedy completions (8 tokens) of ``UNRELATED`` prompts are
  identical to the base model's (and, more leniently, start with the same word); "The
  capital of France is" still gives " Paris";
* PPL change of the reference slice;
* wall time of the inject and of v* within it.

Usage: ``python scripts/efficacy.py [--facts 20] [--seed 0] [--lam 10] [--out efficacy.json]``;
docs/RESULTS.md ("λ at the scale of the keys") records runs at λ = 10 and 3,000 (files in
docs/runs/efficacy-lam/). ``--lam`` sets MEMIT's λ (default: ``MemitConfig``'s).
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import cached_covariance, setup_threads, write_json

from memlog.core.memit import applied, memit_edit, prepare_covariances
from memlog.core.memit_hparams import MemitConfig
from memlog.core.model import ModelSpec, load_model
from memlog.core.perplexity import perplexity
from memlog.core.pool import fact_pool
from memlog.core.recall import audit, complete, is_recalled

UNRELATED = [
    "The capital of France is",
    "The largest planet in the solar system is",
    "Water is made of hydrogen and",
    "The author of Romeo and Juliet is",
    "My favourite food is",
    "Barack Obama was born in",
]


def _first_word(text: str) -> str:
    words = text.split()
    return words[0] if words else ""


def log(message: str) -> None:
    print(message, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--facts", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lam", type=float, default=None, help="MEMIT's λ (default: MemitConfig's)")
    parser.add_argument("--out")
    args = parser.parse_args()
    setup_threads()
    lm = load_model(ModelSpec())
    cfg = MemitConfig() if args.lam is None else MemitConfig(lam=args.lam)
    covs = prepare_covariances(cached_covariance(lm, cfg, log))
    facts = fact_pool(args.facts, seed=args.seed)
    base_ppl = perplexity(lm)[0]
    base_unrelated = complete(lm, UNRELATED, max_new_tokens=8)
    base_recall = sum(r.recalled for r in audit(lm, facts))
    log(f"base PPL {base_ppl:.4f}; base recall {base_recall}/{len(facts)}; config {cfg}")
    rows = []
    for fact in facts:
        started = time.perf_counter()
        result = memit_edit(lm, [fact], cfg, covs)
        with applied(lm, result.deltas):
            got = audit(lm, [fact])[0]
            unrelated = complete(lm, UNRELATED, max_new_tokens=8)
            ppl = perplexity(lm)[0]
        row = {
            "fact": str(fact),
            "recalled": got.recalled,
            "completion": got.completion,
            "unrelated_unchanged": sum(a == b for a, b in zip(unrelated, base_unrelated)) / len(UNRELATED),
            "unrelated_first_word_unchanged": sum(_first_word(a) == _first_word(b) for a, b in zip(unrelated, base_unrelated))
            / len(UNRELATED),
            "unrelated_changed": [[p, b, a] for p, a, b in zip(UNRELATED, unrelated, base_unrelated) if a != b],
            "paris": is_recalled(unrelated[0], "Paris"),
            "ppl_change_pct": 100 * (ppl / base_ppl - 1),
            "v_nll": result.v_loss,
            "v_norm": result.v_norms[0],
            "inject_seconds": result.seconds,
            "v_star_seconds": result.timings["v_star"],
            "measure_seconds": time.perf_counter() - started - result.seconds,
        }
        rows.append(row)
        log(
            f"{'ok  ' if row['recalled'] else 'MISS'} {fact}: {got.completion!r} | unrelated same {row['unrelated_unchanged']:.2f} "
            f"| PPL {row['ppl_change_pct']:+.3f}% | v* NLL {row['v_nll']:.3f} | inject {row['inject_seconds']:.1f}s (v* {row['v_star_seconds']:.1f}s)"
        )
    ppl = [r["ppl_change_pct"] for r in rows]
    summary = {
        "efficacy": sum(r["recalled"] for r in rows) / len(rows),
        "unrelated_unchanged": statistics.mean(r["unrelated_unchanged"] for r in rows),
        "unrelated_first_word_unchanged": statistics.mean(r["unrelated_first_word_unchanged"] for r in rows),
        "paris_kept": sum(r["paris"] for r in rows) / len(rows),
        "ppl_change_pct_mean": statistics.mean(ppl),
        "ppl_change_pct_max": max(ppl, key=abs),
        "inject_seconds_median": statistics.median(r["inject_seconds"] for r in rows),
        "v_star_seconds_median": statistics.median(r["v_star_seconds"] for r in rows),
    }
    log(f"SUMMARY {summary}")
    write_json(args.out, {"base_ppl": base_ppl, "base_unrelated": base_unrelated, "summary": summary, "rows": rows})


if __name__ == "__main__":
    main()
