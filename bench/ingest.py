"""Benchmark: per-fact cost of wake ingestion as the store grows, batched against one at a time, idle and loaded.

One run, one store (embedded SmolLM2-135M by default; ``--tiny`` a tiny random Llama for a
quick check). The store is filled with the batched path (``Memory.inject(batch_size=B)``,
audit off while filling) up to each level of ``--stored`` (default 1, 100, 1000), and at each
level it measures, per fact:

* ``single``: ``--probe`` facts injected one at a time with the wake audit after each (the
  experiments' protocol);
* ``batch``: one batch of ``--batch`` new facts, audited once at its end;
* the parts of the batch: the MEMIT solve, the one projection, the one audit.

At the first level it also runs the batch-size sweep (``--sweep``: per-fact time and the
recall of the batch's own facts right after it) and the loaded case: the same single and batch
measurements while one ``yes`` burner process keeps a core busy, for each ``--threads`` count,
printed as ratios against idle at the same thread count.

Every measurement runs in this one process, so the ratios compare like with like; absolute
times depend on what else the machine runs. Usage::

    python bench/ingest.py --tiny                    # about a minute
    python bench/ingest.py --stored 1,100,1000       # the embedded model (long: run it in the background)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_common import print_ratio  # noqa: E402

from memlog.core.adapter import LayerAdapter  # noqa: E402
from memlog.core.memit_hparams import MemitConfig  # noqa: E402
from memlog.core.model import LoadedModel, ModelSpec  # noqa: E402
from memlog.core.pool import fact_pool  # noqa: E402
from memlog.engine.config import EngineConfig  # noqa: E402
from memlog.engine.open import init_memory  # noqa: E402


class Facts:
    """Fresh facts from one seeded pool, handed out in order."""

    def __init__(self, n: int, seed: int):
        self.pool, self.at = fact_pool(n, seed=seed), 0

    def take(self, n: int):
        out = self.pool[self.at : self.at + n]
        if len(out) < n:
            raise SystemExit(f"the fact pool ran out ({len(self.pool)} facts); lower --stored or --probe")
        self.at += n
        return out


def tiny_model() -> LoadedModel:
    """The tests' tiny random Llama (4 layers, hidden 64) with the embedded tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from memlog.core.model import ensure_embedded_cache

    tok = AutoTokenizer.from_pretrained(str(ensure_embedded_cache()))
    tok.pad_token = tok.pad_token or tok.eos_token
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=256, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2,
    )
    model = LlamaForCausalLM(cfg).eval().requires_grad_(False)
    return LoadedModel(model=model, tokenizer=tok, adapter=LayerAdapter.for_model(model), model_id="tiny-llama", source="bench", spec=ModelSpec(model="tiny-llama"))


def per_fact(mem, facts, batch_size: int, audit: bool = True) -> tuple[float, object]:
    start = time.perf_counter()
    report = mem.inject(facts, audit=audit, batch_size=batch_size)
    return (time.perf_counter() - start) / len(facts), report


def batch_parts(mem, facts) -> dict[str, float]:
    """The batch's solve, projection and audit, timed apart (the batch is then in the store)."""
    parts = {}
    start = time.perf_counter()
    mem.inject(facts, audit=False, batch_size=len(facts))
    parts["inject"] = time.perf_counter() - start
    start = time.perf_counter()
    mem.project()
    parts["projection"] = time.perf_counter() - start
    start = time.perf_counter()
    mem.audit()
    parts["audit"] = time.perf_counter() - start
    return parts


def measure(mem, facts: Facts, args) -> dict[str, float]:
    single, _ = per_fact(mem, facts.take(args.probe), 1)
    batch, _ = per_fact(mem, facts.take(args.batch), args.batch)
    return {"single": single, "batch": batch}


def burner() -> subprocess.Popen:
    return subprocess.Popen(["yes"], stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny random Llama instead of the embedded model")
    parser.add_argument("--stored", default="1,100,1000", help="comma-separated store sizes to measure at")
    parser.add_argument("--batch", type=int, default=32, help="batch size for the batched measurement and for filling")
    parser.add_argument("--probe", type=int, default=2, help="facts injected one at a time per measurement")
    parser.add_argument("--sweep", default="1,8,32,64", help="batch sizes to compare at the first level (empty: skip)")
    parser.add_argument("--threads", default="1,2", help="thread counts for the loaded/idle comparison")
    parser.add_argument("--no-loaded", action="store_true", help="skip the loaded case")
    parser.add_argument("--sweep-only", action="store_true", help="stop after the batch-size sweep")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", default=None, help="store directory (default: a temporary one)")
    args = parser.parse_args()
    levels = sorted(int(x) for x in args.stored.split(",") if x)
    torch.set_num_threads(1)
    root = Path(args.store) if args.store else Path(tempfile.mkdtemp(prefix="memlog-bench-ingest-"))
    if args.tiny:
        lm, memit, spec = tiny_model(), MemitConfig(layers=(1, 2), cov_samples=24, v_steps=10), ModelSpec(model="tiny-llama")
    else:
        lm, memit, spec = None, None, ModelSpec()
    sweep = [int(x) for x in args.sweep.split(",") if x]
    need = levels[-1] + (len(levels) + 2 * len(args.threads.split(","))) * (args.probe + args.batch) + sum(sweep) + 64
    facts = Facts(need, args.seed)
    mem = init_memory(root / "store", spec, lm=lm, memit=memit, engine=EngineConfig(ppl_bound=None, cap=10**6))
    print(f"model: {mem.header.model_id}, layers {mem.header.layers}; store {root / 'store'}; batch {args.batch}, probe {args.probe}", flush=True)
    try:
        stored = len(mem.ledger.active_facts())
        for n, level in enumerate(levels):
            fill_start, filled = time.perf_counter(), 0
            while stored < level:
                step = facts.take(min(args.batch, level - stored))
                mem.inject(step, audit=False, batch_size=args.batch)
                stored, filled = stored + len(step), filled + len(step)
            if filled:
                print(f"filled to {stored} facts: {(time.perf_counter() - fill_start) / filled:.2f}s per fact (batched, no audit)", flush=True)
            if n == 0 and sweep:
                for size in sweep:
                    batch_facts = facts.take(size)
                    seconds, _ = per_fact(mem, batch_facts, size, audit=False)
                    recalled = sum(r.recalled for r in mem.editor.audit(batch_facts))
                    print(f"sweep: batch {size}: {seconds:.2f}s per fact, recall of the batch right after it {recalled}/{size}", flush=True)
                stored = len(mem.ledger.active_facts())
                if args.sweep_only:
                    return
            stored = len(mem.ledger.active_facts())
            idle = measure(mem, facts, args)
            parts = batch_parts(mem, facts.take(args.batch))
            print(
                f"level {level:>5}, {stored} stored: single {idle['single']:.2f}s/fact, batch {idle['batch']:.2f}s/fact; "
                f"batch parts: inject {parts['inject']:.2f}s, projection {parts['projection']:.2f}s, audit {parts['audit']:.2f}s",
                flush=True,
            )
            print_ratio(f"single_vs_batch_at_{level}", idle["single"], idle["batch"], f"per-fact time, one at a time / batched, {level} stored")
            if n == 0 and not args.no_loaded:
                for threads in (int(x) for x in args.threads.split(",") if x):
                    torch.set_num_threads(threads)
                    quiet = measure(mem, facts, args)
                    proc = burner()
                    try:
                        busy = measure(mem, facts, args)
                    finally:
                        proc.kill()
                        proc.wait()
                    for kind in ("single", "batch"):
                        print(f"threads {threads}: {kind} idle {quiet[kind]:.2f}s/fact, loaded {busy[kind]:.2f}s/fact", flush=True)
                        print_ratio(f"loaded_vs_idle_{kind}_threads{threads}", busy[kind], quiet[kind], f"one `yes` burner running / none, {threads} thread(s)")
                torch.set_num_threads(1)
                stored = len(mem.ledger.active_facts())
    finally:
        mem.close()


if __name__ == "__main__":
    main()
