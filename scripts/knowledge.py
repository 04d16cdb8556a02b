"""CounterFact / zsRE on the embedded model: N records edited sequentially into a fresh store,
measured before the edits, after them, and after ``--sleep-cycles`` sleep cycles.

Usage: ``python scripts/knowledge.py --file data.json --sample 100 --seed 0 --out run.json
[--single N [--single-only]] [--sleep-cycles K | --until-converged K] [--boundary-weight W]
[--store DIR]``. With ``--single N`` it also measures single-fact efficacy (each of the first
N sampled records edited alone into the unedited model). Results are written after each stage.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import log, setup_threads, write_json

from memlog.core.factfile import read_cases
from memlog.core.memit import MemitConfig
from memlog.core.model import ModelSpec
from memlog.engine.config import EngineConfig
from memlog.engine.open import init_memory
from memlog.experiments.knowledge_eval import baseline, eval_single, known_filter, measure, sample_cases, summarise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", required=True)
    parser.add_argument("--sample", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--single", type=int, default=0)
    parser.add_argument("--sleep-cycles", type=int, default=2, help="sleep cycles after the edits (0: none)")
    parser.add_argument("--until-converged", type=int, default=0, help="instead: sleep until converged, at most K cycles")
    parser.add_argument("--store", default=None, help="keep the store here (default: a temporary directory)")
    parser.add_argument("--single-only", action="store_true", help="stop after the single-edit measurement")
    parser.add_argument("--boundary-weight", type=float, default=None, help="v* word-boundary weight (default: MemitConfig's)")
    parser.add_argument("--protect", default="subject", help="the store's protected positions (the documented runs held the subject's key)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    setup_threads()
    skipped: list[str] = []
    cases = sample_cases(read_cases(Path(args.file), skipped=skipped), args.sample, args.seed)
    out: dict = {"file": args.file, "sample": args.sample, "seed": args.seed, "skipped_invalid": skipped}
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(args.store) if args.store else Path(tmp) / "store"
        memit = MemitConfig() if args.boundary_weight is None else MemitConfig(v_boundary_weight=args.boundary_weight)
        out["memit"] = {"v_boundary_weight": memit.v_boundary_weight}
        mem = init_memory(store, ModelSpec(), memit=memit, engine=EngineConfig(cap=max(50, 2 * args.sample), max_cycles=max(1, args.until_converged), protect_positions=args.protect))
        lm = mem.editor.lm
        out["known_by_base"] = len(cases) - known_filter(lm, cases)[1]
        base = baseline(lm, cases)
        started = time.perf_counter()
        out["before"] = summarise(measure(lm, cases, base))
        out["ppl_before"] = mem.editor.perplexity()
        log(f"before: {out['before']['all']} ppl {out['ppl_before']:.3f} ({time.perf_counter() - started:.0f}s)")
        write_json(args.out, out)
        if args.single:
            started = time.perf_counter()
            rows = eval_single(mem.editor, cases[: args.single], base)
            out["single"] = summarise(rows)
            out["single_rows"] = rows
            log(f"single ({args.single}): {out['single']['all']} ({time.perf_counter() - started:.0f}s)")
            write_json(args.out, out)
        if args.single_only:
            mem.close()
            return
        started = time.perf_counter()
        out["inject_each_seconds"] = []
        for i, case in enumerate(cases):  # one edit at a time, no audit in between: measured at the end
            outcome = mem.inject([case.fact], audit=False).facts[0]
            out["inject_each_seconds"].append(outcome.seconds)
            if (i + 1) % 10 == 0 or i + 1 == len(cases):
                log(f"injected {i + 1}/{len(cases)} ({time.perf_counter() - started:.0f}s)")
        out["inject_seconds"] = time.perf_counter() - started
        rows = measure(lm, cases, base)
        out["after_edits"] = summarise(rows)
        out["after_edits_rows"] = rows
        out["ppl_after_edits"] = mem.editor.perplexity()
        log(f"after {len(cases)} sequential edits: {out['after_edits']['all']} ppl {out['ppl_after_edits']:.3f} ({out['inject_seconds']:.0f}s)")
        write_json(args.out, out)
        if args.sleep_cycles or args.until_converged:
            started = time.perf_counter()
            reports = mem.sleep(until_converged=True) if args.until_converged else mem.sleep(cycles=args.sleep_cycles)
            out["sleep_seconds"] = time.perf_counter() - started
            out["sleep"] = reports.to_dict()
            rows = measure(lm, cases, base)
            out["after_sleep"] = summarise(rows)
            out["after_sleep_rows"] = rows
            out["ppl_after_sleep"] = mem.editor.perplexity()
            log(f"after sleep: {out['after_sleep']['all']} ppl {out['ppl_after_sleep']:.3f} ({out['sleep_seconds']:.0f}s)")
            write_json(args.out, out)
        mem.close()


if __name__ == "__main__":
    main()
