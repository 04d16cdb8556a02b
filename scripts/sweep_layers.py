"""Sweep MEMIT edit windows, λ and the v* norm clamp on the embedded model.

For each setting, ``--facts`` pool facts are each injected alone into the base model
(v* is optimised for all of them in one batch with per-fact early stopping, which gives
each fact the v* it would get alone; then each fact's layer updates are solved alone):

* efficacy: the fact's prompt completes with its object (raw greedy, word boundary);
* "The capital of France is" still completes with " Paris";
* leakage: the fraction of the *other* facts' prompts that now complete with this object;
* surname leakage: whether "{another first name} {same surname} {relation}" now completes
  with this object (keys sit on the subject's last token, so early layers generalise along
  the surname);
* PPL change of the reference slice, for the first ``--ppl-facts`` edits;
* sequential recall: ``--seq-facts`` facts injected one after another (each v* on the edited
  model, no constraints) and the recall of all of them at a few checkpoints.

Usage: ``python scripts/sweep_layers.py --part layers|lam|vstar|seq [--out results.json]``.
Results are printed as markdown tables (docs/EDIT_LAYERS.md records a run).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

from _common import cached_covariance, setup_threads, write_json

from memlog.core.memit import applied, apply_factors, memit_edit, prepare_covariances, solve_layers
from memlog.core.memit_hparams import MemitConfig
from memlog.core.model import ModelSpec, load_model, parse_layers
from memlog.core.perplexity import perplexity
from memlog.core.vstar import compute_v_star
from memlog.core.pool import FIRST_NAMES, fact_pool
from memlog.core.recall import audit, complete, is_recalled, object_tokens

PARIS = "The capital of France is"


def log(message: str) -> None:
    print(message, flush=True)


def _namesake(fact) -> str:
    """The fact's prompt for someone else with the same surname."""
    first, _, last = fact.subject.partition(" ")
    other = next(name for name in FIRST_NAMES if name != first)
    return fact.prompt.replace(fact.subject, f"{other} {last}", 1)


def batched_v_star(lm, facts, cfg):
    started = time.perf_counter()
    targets, nll = compute_v_star(lm, facts, cfg.layers[-1], cfg)
    v_seconds = time.perf_counter() - started
    log(f"    v* for {len(facts)} facts at layer {cfg.layers[-1]}: {v_seconds:.0f}s")
    return targets, nll, v_seconds


def single_edits(lm, facts, cfg, covs, ppl_facts: int, base_ppl: float, v_star=None) -> dict:
    """Each fact injected alone into the base model (``v_star``: precomputed ``batched_v_star``)."""
    targets, nll, v_seconds = v_star or batched_v_star(lm, facts, cfg)
    max_new = max(object_tokens(lm, f.object) for f in facts) + 2
    namesakes = [_namesake(f) for f in facts]
    rows = []
    for i, fact in enumerate(facts):
        deltas, norms = solve_layers(lm, [fact], cfg, covs, targets[:, i : i + 1])
        with applied(lm, deltas):
            completions = complete(lm, [g.prompt for g in facts] + [namesakes[i], PARIS], max_new)
            others = [j for j, g in enumerate(facts) if j != i and g.object != fact.object]
            leak = sum(is_recalled(completions[j], fact.object) for j in others) / max(1, len(others))
            ppl = perplexity(lm)[0] if i < ppl_facts else None
        rows.append(
            {
                "fact": str(fact),
                "recalled": is_recalled(completions[i], fact.object),
                "completion": completions[i],
                "paris": is_recalled(completions[-1], "Paris"),
                "leakage": leak,
                "surname_leak": is_recalled(completions[-2], fact.object),
                "ppl_change_pct": None if ppl is None else 100 * (ppl / base_ppl - 1),
                "v_nll": float(nll[i]),
                "v_norm": norms[0],
            }
        )
        log(f"    {fact}: {'ok ' if rows[-1]['recalled'] else 'MISS'} {completions[i]!r} ppl {rows[-1]['ppl_change_pct']}")
    ppl_changes = [r["ppl_change_pct"] for r in rows if r["ppl_change_pct"] is not None]
    return {
        "efficacy": sum(r["recalled"] for r in rows) / len(rows),
        "paris_kept": sum(r["paris"] for r in rows) / len(rows),
        "leakage": statistics.mean(r["leakage"] for r in rows),
        "surname_leakage": statistics.mean(r["surname_leak"] for r in rows),
        "ppl_change_pct_mean": statistics.mean(ppl_changes) if ppl_changes else None,
        "ppl_change_pct_max": max(ppl_changes, key=abs) if ppl_changes else None,
        "v_nll_mean": float(nll.mean()),
        "clamped": sum(abs(r["v_norm"] - cfg.clamp_norm_factor) < 1e-3 for r in rows),
        "v_star_batch_seconds": v_seconds,
        "rows": rows,
    }


def sequential(lm, facts, cfg, covs, checkpoints: list[int]) -> dict:
    """Inject facts one after another (no constraints) and audit all injected ones at checkpoints."""
    saved = {layer: lm.adapter.edit_weight_view(lm.model, layer).detach().clone() for layer in cfg.layers}
    recall = {}
    try:
        for k, fact in enumerate(facts, start=1):
            apply_factors(lm, memit_edit(lm, [fact], cfg, covs).deltas)
            if k in checkpoints:
                results = audit(lm, facts[:k])
                recall[k] = sum(r.recalled for r in results) / k
                log(f"    sequential {k}: recall {recall[k]:.2f}")
    finally:
        for layer, weight in saved.items():
            lm.adapter.edit_weight_view(lm.model, layer).copy_(weight)
    return recall


def run_setting(lm, facts, cfg, args, base_ppl, label: str, do_sequential: bool, v_star=None) -> dict:
    covs = prepare_covariances(cached_covariance(lm, cfg, log))
    started = time.perf_counter()
    result = single_edits(lm, facts, cfg, covs, args.ppl_facts, base_ppl, v_star)
    if do_sequential and args.seq_facts:
        seq_pool = fact_pool(args.seq_facts, seed=args.seed)
        checkpoints = sorted({c for c in (5, 10, 15, 20, 25, 30, args.seq_facts) if c <= args.seq_facts})
        result["sequential_recall"] = sequential(lm, seq_pool, cfg, covs, checkpoints)
    result["seconds"] = time.perf_counter() - started
    result["label"] = label
    log(
        f"{label}: efficacy {result['efficacy']:.2f}, Paris kept {result['paris_kept']:.2f}, leakage {result['leakage']:.3f}, "
        f"surname leakage {result['surname_leakage']:.2f}, "
        f"PPL change mean {result['ppl_change_pct_mean']}, v* NLL {result['v_nll_mean']:.3f}, clamped {result['clamped']}/{len(facts)}, "
        f"sequential {result.get('sequential_recall')}, {result['seconds']:.0f}s"
    )
    return result


def table(results: list[dict]) -> str:
    lines = [
        "| setting | efficacy | Paris kept | leakage | surname leakage | PPL Δ% mean (max) | v* NLL | clamped | sequential recall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ppl = "-" if r["ppl_change_pct_mean"] is None else f"{r['ppl_change_pct_mean']:+.3f} ({r['ppl_change_pct_max']:+.3f})"
        seq = ", ".join(f"{k}: {v:.2f}" for k, v in r.get("sequential_recall", {}).items()) or "-"
        lines.append(
            f"| {r['label']} | {r['efficacy']:.2f} | {r['paris_kept']:.2f} | {r['leakage']:.3f} | {r['surname_leakage']:.2f} | {ppl} | "
            f"{r['v_nll_mean']:.3f} | {r['clamped']}/{len(r['rows'])} | {seq} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["layers", "lam", "vstar", "seq"], default="layers")
    parser.add_argument(
        "--settings",
        default="v_stop_loss=0.05|v_stop_loss=0.01",
        help="for --part seq: '|'-separated MemitConfig overrides, each 'name=value,name=value'",
    )
    parser.add_argument("--windows", default="0-7,2-9,6-13,12-19,20-27")
    parser.add_argument("--window", default="2-9", help="the window for --part lam/vstar")
    parser.add_argument("--seq-windows", default=None, help="windows that also get the sequential test (default: all)")
    parser.add_argument("--lams", default="0.1,1,10,100,1000,15000")
    parser.add_argument("--vstar", default="0.75:0.5,1.5:0.5,3:0.5,1.5:0.05", help="clamp_norm_factor:v_weight_decay pairs")
    parser.add_argument("--facts", type=int, default=20)
    parser.add_argument("--ppl-facts", type=int, default=5)
    parser.add_argument("--seq-facts", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out")
    args = parser.parse_args()
    setup_threads()
    lm = load_model(ModelSpec())
    facts = fact_pool(args.facts, seed=args.seed)
    base_ppl = perplexity(lm)[0]
    base = MemitConfig()
    log(f"base PPL {base_ppl:.4f}; defaults {dataclasses.asdict(base)}")
    results = []
    if args.part == "layers":
        seq_windows = args.windows.split(",") if args.seq_windows is None else args.seq_windows.split(",")
        for window in args.windows.split(","):
            cfg = dataclasses.replace(base, layers=tuple(parse_layers(window)))
            results.append(run_setting(lm, facts, cfg, args, base_ppl, f"layers {window}", window in seq_windows))
    elif args.part == "lam":
        window_cfg = dataclasses.replace(base, layers=tuple(parse_layers(args.window)))
        v_star = batched_v_star(lm, facts, window_cfg)  # λ does not enter v*
        for lam in (float(x) for x in args.lams.split(",")):
            cfg = dataclasses.replace(window_cfg, lam=lam)
            results.append(run_setting(lm, facts, cfg, args, base_ppl, f"λ={lam:g} ({args.window})", False, v_star))
    elif args.part == "seq":
        window_cfg = dataclasses.replace(base, layers=tuple(parse_layers(args.window)))
        seq_pool = fact_pool(args.seq_facts, seed=args.seed)
        checkpoints = sorted({c for c in range(5, args.seq_facts + 1, 5)} | {args.seq_facts})
        for setting in args.settings.split("|"):
            overrides = {k: type(getattr(base, k))(v) for k, v in (kv.split("=") for kv in setting.split(",") if kv)}
            cfg = dataclasses.replace(window_cfg, **overrides)
            log(f"sequential, {args.window}, {setting}")
            recall = sequential(lm, seq_pool, cfg, prepare_covariances(cached_covariance(lm, cfg, log)), checkpoints)
            results.append({"label": f"{setting} ({args.window})", "sequential_recall": recall})
        print("\n| setting | sequential recall |\n|---|---|")
        for r in results:
            print(f"| {r['label']} | " + ", ".join(f"{k}: {v:.2f}" for k, v in r["sequential_recall"].items()) + " |")
        write_json(args.out, {"args": vars(args), "results": results})
        return
    else:
        for pair in args.vstar.split(","):
            clamp, decay = (float(x) for x in pair.split(":"))
            cfg = dataclasses.replace(base, layers=tuple(parse_layers(args.window)), clamp_norm_factor=clamp, v_weight_decay=decay)
            results.append(run_setting(lm, facts, cfg, args, base_ppl, f"clamp {clamp:g}, decay {decay:g} ({args.window})", False))
    print()
    print(table(results))
    write_json(args.out, {"base_ppl": base_ppl, "args": vars(args), "results": results})


if __name__ == "__main__":
    main()
