"""Measure MEMIT's v* constants on the embedded model, one parameter at a time around the defaults.

``kl_factor``, ``v_weight_decay``, ``clamp_norm_factor`` and ``n_prefixes`` come from MEMIT's
reference hyper-parameters or are memlog's own choice (docs/MEMIT.md); the paper gives none.
For every setting (``name=value`` overrides of ``MemitConfig``, ``default`` for none):

* single edits: ``--sample`` records of a CounterFact / zsRE file (a seeded random sample),
  each edited alone into the unedited model, measured and undone
  (``memlog.experiments.knowledge_eval.eval_single``): ES, PS, NS, live efficacy, live
  paraphrase, live neighbour, and the edit's PPL change on the reference slice (no chat
  measure: it is the slowest and not what these constants aim at);
* sequential (``--seq-settings`` only): ``--seq-facts`` pool facts injected one after another
  without constraints (a wake), recall of all injected facts at checkpoints
  (``scripts/sweep_layers.py``'s ``sequential``).

The covariances are memlog's own (cached by model fingerprint); λ and the layers are the
defaults. Results are written after every setting; a rerun with the same ``--out`` skips the
settings already there.

Usage: ``python scripts/constants_sweep.py --file counterfact-edit-10k.json --sample 20 --seed 2
--out docs/runs/constants-sweep.json``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

from _common import log, setup_threads, write_json
from sweep_layers import sequential

from memlog.core.factfile import read_cases
from memlog.core.fingerprint import cached_model_fingerprint
from memlog.core.memit import prepare_covariances
from memlog.core.memit_hparams import MemitConfig
from memlog.core.model import ModelSpec, load_model
from memlog.core.pool import fact_pool
from memlog.engine.editor import MemitEditor
from memlog.engine.open import _load_or_compute_covariances
from memlog.experiments.knowledge_eval import baseline, eval_single, measure, sample_cases, summarise

SINGLE = "default|clamp_norm_factor=0.5|clamp_norm_factor=1.0|kl_factor=0|kl_factor=0.25|n_prefixes=1|v_weight_decay=0.1|v_weight_decay=1.0"
SEQUENTIAL = "default|kl_factor=0|kl_factor=0.25|clamp_norm_factor=0.5|clamp_norm_factor=1.0"
COLUMNS = ("ES", "PS", "NS", "live_efficacy", "live_paraphrase", "live_neighbour")


def config_of(setting: str) -> MemitConfig:
    """``MemitConfig`` with the setting's overrides (``default``: none)."""
    base = MemitConfig()
    if setting == "default":
        return base
    pairs = (kv.split("=") for kv in setting.split(",") if kv)
    return dataclasses.replace(base, **{k: type(getattr(base, k))(v) for k, v in pairs})


def single_summary(rows: list[dict], base_ppl: float, clamp: float) -> dict:
    changes = [100 * (r["ppl"] / base_ppl - 1) for r in rows]
    return {
        **summarise(rows)["all"],
        "ppl_change_pct_mean": statistics.mean(changes),
        "ppl_change_pct_max": max(changes, key=abs),
        "v_nll_mean": statistics.mean(r["v_nll"] for r in rows),
        "clamped": sum(abs(r["v_norm"] - clamp) < 1e-3 for r in rows),
        "edit_seconds_median": statistics.median(r["edit_seconds"] for r in rows),
    }


def table(out: dict) -> str:
    lines = [
        "| setting | " + " | ".join(COLUMNS) + " | PPL Δ% mean (max) | clamped | sequential recall |",
        "|---|" + "---|" * (len(COLUMNS) + 3),
    ]
    for label, r in out["single"].items():
        seq = out["sequential"].get(label, {})
        lines.append(
            f"| {label} | " + " | ".join(f"{r[c]:.2f}" for c in COLUMNS)
            + f" | {r['ppl_change_pct_mean']:+.3f} ({r['ppl_change_pct_max']:+.3f}) | {r['clamped']}/{r['n']} | "
            + (", ".join(f"{k}: {v:.2f}" for k, v in seq.items()) or "-") + " |"
        )  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", required=True)
    parser.add_argument("--sample", type=int, default=20)
    parser.add_argument("--seed", type=int, default=2, help="the record sample and the pool facts' order")
    parser.add_argument("--settings", default=SINGLE, help="'|'-separated settings for the single edits")
    parser.add_argument("--seq-settings", default=SEQUENTIAL, help="'|'-separated settings for the sequential measure ('' for none)")
    parser.add_argument("--seq-facts", type=int, default=15)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    setup_threads()
    out_path = Path(args.out)
    out = json.loads(out_path.read_text()) if out_path.is_file() else {"single": {}, "sequential": {}}
    out["args"] = vars(args)
    spec = ModelSpec()
    lm = load_model(spec)
    defaults = MemitConfig()
    fp = cached_model_fingerprint(lm)
    covs = prepare_covariances(_load_or_compute_covariances(lm, list(defaults.layers), defaults, fp, None, lambda *a: None)[0])
    editor = MemitEditor(lm, defaults, covs)
    out["base_ppl"] = base_ppl = editor.perplexity()
    cases = sample_cases(read_cases(Path(args.file)), args.sample, args.seed)
    base = baseline(lm, cases)
    out["unedited"] = summarise(measure(lm, cases, base, chat=False))["all"]
    log(f"{len(cases)} records (seed {args.seed}); base PPL {base_ppl:.4f}; unedited {out['unedited']}")
    pool = fact_pool(args.seq_facts, seed=args.seed)
    checkpoints = sorted({k for k in range(5, args.seq_facts + 1, 5)} | {args.seq_facts})
    seq_settings = [s for s in args.seq_settings.split("|") if s]
    for setting in args.settings.split("|"):  # each setting's sequential measure right after its single edits
        cfg = config_of(setting)
        if setting not in out["single"]:
            started = time.perf_counter()
            progress = lambda step, i, n, s=setting: log(f"  {s}: record {i}/{n}")  # noqa: E731
            rows = eval_single(MemitEditor(lm, cfg, covs), cases, base, progress=progress, ppl=True, chat=False)
            out["single"][setting] = single_summary(rows, base_ppl, cfg.clamp_norm_factor)
            out.setdefault("single_rows", {})[setting] = rows
            log(f"single {setting}: {out['single'][setting]} ({time.perf_counter() - started:.0f}s)")
            write_json(args.out, out)
        if setting in seq_settings and setting not in out["sequential"]:
            started = time.perf_counter()
            out["sequential"][setting] = sequential(lm, pool, cfg, covs, checkpoints)
            log(f"sequential {setting}: {out['sequential'][setting]} ({time.perf_counter() - started:.0f}s)")
            write_json(args.out, out)
    print(table(out))


if __name__ == "__main__":
    main()
