"""Measure the CounterFact/zsRE records already written into a store, before (base weights),
at the head, and after ``--sleep-cycles`` sleep cycles.

Usage: ``python scripts/knowledge_store.py --file data.json --sample 100 --seed 0 --store DIR
--out run.json [--sleep-cycles 1]``: the sample is drawn as in ``scripts/knowledge.py`` and the
records whose facts are in the store are measured (for a sequential run stopped part-way).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import log, setup_threads, write_json

from memlog.core.factfile import read_cases
from memlog.engine.open import open_memory
from memlog.experiments.knowledge_eval import baseline, measure, sample_cases, summarise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", required=True)
    parser.add_argument("--sample", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", required=True)
    parser.add_argument("--sleep-cycles", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    setup_threads()
    mem = open_memory(Path(args.store))
    lm = mem.editor.lm
    sampled = sample_cases(read_cases(Path(args.file), skipped=[]), args.sample, args.seed)
    cases = [c for c in sampled if c.fact.fact_id in mem.ledger.facts]
    out: dict = {"file": args.file, "sample": args.sample, "seed": args.seed, "edited": len(cases)}
    with mem.weights_at(0):  # the base weights: no edit applied
        base = baseline(lm, cases)
        out["before"] = summarise(measure(lm, cases, base))
        out["ppl_before"] = mem.editor.perplexity()
    log(f"before ({len(cases)}): {out['before']['all']}")
    rows = measure(lm, cases, base)
    out["after_edits"], out["after_edits_rows"] = summarise(rows), rows
    out["ppl_after_edits"] = mem.editor.perplexity()
    log(f"after {len(cases)} sequential edits: {out['after_edits']['all']} ppl {out['ppl_after_edits']:.3f}")
    write_json(args.out, out)
    if args.sleep_cycles:
        started = time.perf_counter()
        out["sleep"] = mem.sleep(cycles=args.sleep_cycles).to_dict()
        out["sleep_seconds"] = time.perf_counter() - started
        rows = measure(lm, cases, base)
        out["after_sleep"], out["after_sleep_rows"] = summarise(rows), rows
        out["ppl_after_sleep"] = mem.editor.perplexity()
        log(f"after sleep: {out['after_sleep']['all']} ppl {out['ppl_after_sleep']:.3f} ({out['sleep_seconds']:.0f}s)")
        write_json(args.out, out)
    mem.close()


if __name__ == "__main__":
    main()
