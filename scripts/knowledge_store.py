"""Measure the CounterFact/zsRE records written into a store, before (base weights), at the
head, and after sleep; optionally write them first, one at a time, until a wall-clock time.

Usage: ``python scripts/knowledge_store.py --file data.json --sample 100 --seed 0 --store DIR
--out run.json [--sleep-cycles 1 | --until-converged K] [--inject-until HH:MM]
[--refresh-strategy correct] [--batch-refresh] [--no-head]``: the sample
is drawn as in ``scripts/knowledge.py`` and the records whose facts are in the store are
measured (for a sequential run stopped part-way). With ``--inject-until`` a new store is created
and the sampled records are injected in their seeded order (no audit between edits) until that
UTC time or the sample's end (an existing store is continued: records already in it are skipped), so a run that cannot write all of them in the time left measures
a seeded prefix of the sample instead of nothing.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone
from pathlib import Path

from _common import log, setup_threads, write_json

from memlog.core.factfile import read_cases
from memlog.core.memit_hparams import MemitConfig
from memlog.core.model import ModelSpec
from memlog.engine.config import EngineConfig
from memlog.engine.open import init_memory, open_memory
from memlog.store.events import FactInjected
from memlog.store.store import Store
from memlog.experiments.knowledge_eval import baseline, known_filter, measure, sample_cases, summarise


def inject_until(store: Path, cases, until: str, cap: int, max_cycles: int, wake: str = "unconstrained", batch_size: int = 1, protect: str = "subject", lam: float | None = None):
    """Create ``store`` (or continue one this script created: records whose fact it holds are
    skipped), inject ``cases`` one at a time (or ``batch_size`` per MEMIT solve, in their order)
    until ``until`` (HH:MM, UTC); the open memory and the run's timings."""
    hour, minute = map(int, until.split(":"))
    stop = datetime.now(timezone.utc).replace(hour=hour, minute=minute, second=0, microsecond=0)
    if Store.exists(store):
        mem = open_memory(store)
        cases = [c for c in cases if c.fact.fact_id not in mem.ledger.facts]
        log(f"continuing {store}: {len(mem.ledger.facts)} facts stored, {len(cases)} records to go")
    else:
        memit = MemitConfig(lam=lam)  # lam None: a new store's default for the wake mode
        mem = init_memory(store, ModelSpec(), memit=memit, engine=EngineConfig(cap=cap, max_cycles=max_cycles, wake=wake, protect_positions=protect))
    started, seconds = time.perf_counter(), []
    for first in range(0, len(cases), batch_size):
        if datetime.now(timezone.utc) >= stop:
            break
        step = cases[first : first + batch_size]
        begun = time.perf_counter()
        mem.inject([case.fact for case in step], audit=False, batch_size=batch_size)
        seconds.append(time.perf_counter() - begun)
        log(f"injected {first + len(step)}/{len(cases)} ({seconds[-1]:.1f}s for {len(step)}, {time.perf_counter() - started:.0f}s in all)")
    timings = {"inject_until": until, "batch_size": batch_size, "injected": min(len(cases), len(seconds) * batch_size)}
    return mem, timings | {"inject_each_seconds": seconds, "inject_seconds": time.perf_counter() - started}


def measure_at_injections(mem, cases, args, out: dict) -> None:
    """Measure the first ``args.at_injections`` records on the weights right after that many
    injections (``Memory.weights_at``), and write ``out``."""
    injected = [item.seq for item in mem.logged if isinstance(item.event, FactInjected)]
    if not 0 < args.at_injections <= len(injected):
        raise SystemExit(f"--at-injections must be between 1 and {len(injected)}")
    seq = injected[args.at_injections - 1]
    cases = cases[: args.at_injections]
    out.update({"edited": len(cases), "at_injections": args.at_injections, "at_seq": seq})
    with mem.weights_at(0):
        base = baseline(mem.editor.lm, cases)
    with mem.weights_at(seq):
        rows = measure(mem.editor.lm, cases, base)
        out["after_edits"], out["after_edits_rows"] = summarise(rows), rows
        out["ppl_after_edits"] = mem.editor.perplexity()
    log(f"after {args.at_injections} injections (seq {seq}): {out['after_edits']['all']} ppl {out['ppl_after_edits']:.3f}")
    write_json(args.out, out)
    mem.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", required=True)
    parser.add_argument("--sample", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", required=True)
    parser.add_argument("--sleep-cycles", type=int, default=1)
    parser.add_argument("--until-converged", type=int, default=0, help="instead: sleep until converged, at most K cycles")
    parser.add_argument("--inject-until", default=None, help="create the store and inject the sample until HH:MM (UTC)")
    parser.add_argument("--no-before", action="store_true", help="skip the measurement on the base weights (its neighbour reference is still taken)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--at-injections", type=int, default=None, help="measure the first K injected records on the weights as they were right after the K-th injection (time travel; no sleep)")
    parser.add_argument("--batch-size", type=int, default=1, help="facts per MEMIT solve (with --inject-until; 1: one edit at a time)")
    parser.add_argument("--wake", default="unconstrained", choices=["unconstrained", "constrained"], help="the new store's wake mode (with --inject-until)")
    parser.add_argument("--protect", default="subject", help="the new store's protected positions (with --inject-until; e.g. subject+paraphrases)")
    parser.add_argument("--lam", type=float, default=None, help="the new store's MEMIT λ (with --inject-until; default: a new store's for the wake mode; the runs in docs/RESULTS.md used 10)")
    parser.add_argument("--refresh-strategy", default=None, choices=["reinject", "correct"], help="sleep's refresh strategy (default: the store's)")
    parser.add_argument("--batch-refresh", action="store_true", help="sleep refreshes a cycle's degraded facts in one constrained solve")
    parser.add_argument("--no-head", action="store_true", help="skip the measurement at the head (taken before, e.g. by the run that wrote the store); measure after sleep only")
    args = parser.parse_args()
    setup_threads()
    sampled = sample_cases(read_cases(Path(args.file), skipped=[]), args.sample, args.seed)
    out: dict = {"file": args.file, "sample": args.sample, "seed": args.seed}
    if args.inject_until:
        mem, timings = inject_until(Path(args.store), sampled, args.inject_until, max(50, 2 * args.sample), max(1, args.until_converged), args.wake, args.batch_size, args.protect, args.lam)
        out.update(timings)
    else:
        overrides = {"max_cycles": args.until_converged or None, "refresh_strategy": args.refresh_strategy, "batch_refresh": args.batch_refresh or None}
        mem = open_memory(Path(args.store), engine_overrides=overrides)
    lm = mem.editor.lm
    cases = [c for c in sampled if c.fact.fact_id in mem.ledger.facts]
    if args.at_injections is not None:
        return measure_at_injections(mem, cases, args, out)
    out["edited"] = len(cases)
    started = time.perf_counter()
    with mem.weights_at(0):  # the base weights: no edit applied
        base = baseline(lm, cases)
        if not args.no_before:
            out["known_by_base"] = len(cases) - known_filter(lm, cases)[1]
            out["before"] = summarise(measure(lm, cases, base))
            out["ppl_before"] = mem.editor.perplexity()
            log(f"before ({len(cases)}): {out['before']['all']} ({time.perf_counter() - started:.0f}s)")
    if not args.no_head:
        started = time.perf_counter()
        rows = measure(lm, cases, base)
        out["after_edits"], out["after_edits_rows"] = summarise(rows), rows
        out["ppl_after_edits"] = mem.editor.perplexity()
        out["measure_seconds"] = time.perf_counter() - started
        log(f"at the head, {len(cases)} records: {out['after_edits']['all']} ppl {out['ppl_after_edits']:.3f} ({out['measure_seconds']:.0f}s)")
        write_json(args.out, out)
    if args.sleep_cycles or args.until_converged:
        started = time.perf_counter()
        def progress(step: str, done: int, total: int) -> None:  # a line every 10 % of a step
            if total and (done == total or done % max(1, total // 10) == 0):
                log(f"{step} {done}/{total} ({time.perf_counter() - started:.0f}s)")

        cycles = {"until_converged": True} if args.until_converged else {"cycles": args.sleep_cycles}
        report = mem.sleep(progress=progress, **cycles)
        out["sleep"] = report.to_dict()
        out["sleep_seconds"] = time.perf_counter() - started
        log(f"sleep: {len(report.cycles)} cycles, converged {report.converged} ({out['sleep_seconds']:.0f}s)")
        rows = measure(lm, cases, base)
        out["after_sleep"], out["after_sleep_rows"] = summarise(rows), rows
        out["ppl_after_sleep"] = mem.editor.perplexity()
        log(f"after sleep: {out['after_sleep']['all']} ppl {out['ppl_after_sleep']:.3f}")
        write_json(args.out, out)
    mem.close()


if __name__ == "__main__":
    main()
