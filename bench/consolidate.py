"""Benchmark: consolidation of the applied edits, before against after, in one run.

On one store (embedded SmolLM2-135M by default; ``--tiny`` a tiny random Llama for a quick
check), filled with ``--facts`` pool facts (batched MEMIT, no audit) unless ``--store`` names
an existing one, it measures:

* the projection time (median of ``--repeats`` projections of the head) and the stacked factor
  columns per layer, before and after ``Memory.consolidate``;
* the Zarr bytes of the delta blobs the log references (file bytes under ``deltas.zarr/blobs``,
  the layers' covariances left out) before and after, and of the consolidated factors alone;
* every fact's change: its edit-layer outputs at its own keys (relative to the layer's output
  there, and relative to the edits' contribution there) and its next-token logits on its prompt;
* that replay is exact: the head replays to its recorded hash, a replay up to the seq before the
  consolidation gives the pre-consolidation weights' hash, and the revert gives them back;
* the truncation: for each of ``--rtols``, the kept rank per layer and the largest change of a
  fact's layer output at its keys (float64, from the factors), and the singular values;
* the projection cost at larger column counts (``--columns``), with random factors of the
  model's real shapes: N single-column factors concatenated, against one rank-min(N, d_out) pair,
  and the consolidation's own QR + SVD time at that N (no MEMIT: a cost model, not facts).

Everything is measured in this one process; ratios compare like with like, absolute times
depend on what else the machine runs. Usage::

    python bench/consolidate.py --tiny
    MEMLOG_THREADS=1 python bench/consolidate.py --facts 24 --store /tmp/consolidate-store
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_common import median_time, print_ratio  # noqa: E402
from ingest import tiny_model  # noqa: E402

from memlog.core.memit_hparams import MemitConfig  # noqa: E402
from memlog.core.model import ModelSpec  # noqa: E402
from memlog.core.pool import fact_pool  # noqa: E402
from memlog.engine.config import EngineConfig  # noqa: E402
from memlog.engine.consolidate import layer_factors, member_keys, output_changes, truncated_factors  # noqa: E402
from memlog.engine.open import init_memory, open_memory  # noqa: E402
from memlog.projections.consolidation import stacked_columns  # noqa: E402
from memlog.store.blobs import BLOBS_DIR  # noqa: E402
from memlog.store.events import EditRefreshed, FactInjected, blob_refs  # noqa: E402
from memlog.store.store import is_store  # noqa: E402


def blob_bytes(mem, shas: set[str] | None = None) -> int:
    """File bytes of the blobs named ``shas`` (default: every edit's delta blobs; covariances and
    consolidations left out)."""
    if shas is None:
        shas = {ref.sha256 for item in mem.logged if isinstance(item.event, (FactInjected, EditRefreshed)) for ref in blob_refs(item.event)}
    root = mem.store.blobs.root / BLOBS_DIR
    return sum(p.stat().st_size for sha in shas for p in (root / sha).rglob("*") if p.is_file())


def weights(mem) -> dict[int, torch.Tensor]:
    p = mem.projector
    return {layer: p.adapter.edit_weight_view(p.model, layer).detach().to(torch.float32).clone() for layer in p.layers}


@torch.no_grad()
def prompt_logits(mem, prompts: list[str]) -> torch.Tensor:
    """Next-token logits on each prompt (float64), one forward per prompt."""
    model, tok = mem.projector.model, mem.editor.lm.tokenizer
    rows = []
    for prompt in prompts:
        ids = tok(prompt, return_tensors="pt").input_ids.to(next(model.parameters()).device)
        rows.append(model(ids).logits[0, -1].to(torch.float64).cpu())
    return torch.stack(rows)


def edit_relative(before, after, base, keys) -> dict[str, float]:
    """Per edit: max over layers of ‖(W_after − W_before) K‖ / ‖(W_before − W_base) K‖ (the edits' own contribution)."""
    out = {}
    for edit_id, per_layer in keys.items():
        worst = 0.0
        for layer, k in per_layer.items():
            kt = torch.from_numpy(np.ascontiguousarray(k)).to(torch.float64)
            num = torch.linalg.norm((after[layer].double() - before[layer].double()) @ kt)
            den = torch.linalg.norm((before[layer].double() - base[layer].double()) @ kt).clamp_min(1e-30)
            worst = max(worst, float(num / den))
        out[edit_id] = worst
    return out


def rtol_sweep(mem, entries, base: dict[int, torch.Tensor], rtols: list[float]) -> None:
    """Per rtol: the kept rank per layer and the largest change of a fact's layer output at its keys
    (float64, from the factors: relative to W_before K and to the edits' ΔW K)."""
    keys = member_keys(mem, entries)
    stacks = {}
    for layer in base:
        us, vs = layer_factors(mem, entries, layer)
        stacks[layer] = (us, vs, np.concatenate(us, axis=1) @ np.concatenate(vs, axis=1).T)
    for rtol in rtols:
        ranks, worst_out, worst_own = [], 0.0, 0.0
        for layer, (us, vs, delta) in stacks.items():
            a, b, sigma = truncated_factors(us, vs, rtol)
            ranks.append(a.shape[1])
            err = a @ b.T - delta
            w = base[layer].double().numpy() + delta
            for per_layer in keys.values():
                k = np.asarray(per_layer[layer], dtype=np.float64)
                worst_out = max(worst_out, np.linalg.norm(err @ k) / np.linalg.norm(w @ k))
                worst_own = max(worst_own, np.linalg.norm(err @ k) / np.linalg.norm(delta @ k))
        print(f"rtol {rtol:g}: rank {ranks}; max change of a fact's layer output at its keys {worst_out:.2e} of the output, {worst_own:.2e} of the edits' contribution", flush=True)
        if rtol == rtols[0]:
            print(f"singular values of the last layer, relative to the largest: {', '.join(f'{x:.1e}' for x in sigma / sigma[0])}", flush=True)


def column_sweep(base: torch.Tensor, n_layers: int, columns: list[int], repeats: int) -> None:
    d_out, d_in = base.shape
    gen = torch.Generator().manual_seed(0)
    for n in columns:
        us = [torch.randn(d_out, 1, generator=gen) * 1e-3 for _ in range(n)]
        vs = [torch.randn(d_in, 1, generator=gen) for _ in range(n)]
        stacked = median_time(lambda: torch.addmm(base, torch.cat(us, dim=1), torch.cat(vs, dim=1).T), repeats) * n_layers
        start = time.perf_counter()
        a, b, _ = truncated_factors([u.numpy() for u in us], [v.numpy() for v in vs], 1e-7)
        svd = (time.perf_counter() - start) * n_layers
        a32, b32 = torch.from_numpy(a).float(), torch.from_numpy(b).float()
        pair = median_time(lambda: torch.addmm(base, a32 * 1.0, b32.T), repeats) * n_layers
        print(f"columns {n:>5}: projection {stacked:.4f}s stacked, {pair:.4f}s rank {a.shape[1]}; consolidation QR+SVD {svd:.2f}s ({n_layers} layers)", flush=True)
        print_ratio(f"projection_stacked_vs_consolidated_at_{n}_columns", stacked, pair, f"random factors {d_out}x{d_in}, {n} columns / rank {a.shape[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny random Llama instead of the embedded model")
    parser.add_argument("--facts", type=int, default=24, help="pool facts to inject when the store is new")
    parser.add_argument("--batch", type=int, default=8, help="facts per MEMIT solve while filling")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--columns", default="40,576,1000,2000", help="column counts for the random-factor projection sweep (empty: skip)")
    parser.add_argument("--rtols", default="1e-7,1e-3,0.1,0.3,0.5", help="tolerances for the truncation sweep on the store's facts (empty: skip)")
    parser.add_argument("--store", default=None, help="store directory (reused when it holds a store; default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("MEMLOG_THREADS", "1")))
    path = Path(args.store) if args.store else Path(tempfile.mkdtemp(prefix="memlog-bench-consolidate-")) / "store"
    lm = tiny_model() if args.tiny else None
    if is_store(path):
        mem = open_memory(path, lm=lm)
    else:
        memit = MemitConfig(layers=(1, 2), cov_samples=24, v_steps=10) if args.tiny else None
        spec = ModelSpec(model="tiny-llama") if args.tiny else ModelSpec()
        mem = init_memory(path, spec, lm=lm, memit=memit, engine=EngineConfig(ppl_bound=None, cap=10**6))
    try:
        if not mem.ledger.active_facts():
            start = time.perf_counter()
            mem.inject(fact_pool(args.facts, seed=args.seed), audit=False, batch_size=args.batch)
            print(f"filled {args.facts} facts in {time.perf_counter() - start:.0f}s (batches of {args.batch}, no audit)", flush=True)
        layers = list(mem.projector.layers)
        entries = mem.ledger.applied_entries()
        facts = [s.fact for s in mem.ledger.active_facts()]
        print(f"model {mem.header.model_id}, layers {layers}, {len(entries)} applied edits; store {path}", flush=True)
        seq_before, sha_before = mem.head_seq, mem.project()
        cols_before, t_before, bytes_before = stacked_columns(entries, layers[0]), median_time(mem.project, args.repeats), blob_bytes(mem)
        w_before, logits_before = weights(mem), prompt_logits(mem, [f.prompt for f in facts])
        report = mem.consolidate()
        new = {ref.sha256 for ref in blob_refs(mem.logged[-1].event)}
        cols_after, t_after, bytes_after = stacked_columns(mem.ledger.applied_entries(), layers[0]), median_time(mem.project, args.repeats), blob_bytes(mem) + blob_bytes(mem, new)
        w_after, logits_after = weights(mem), prompt_logits(mem, [f.prompt for f in facts])
        keys = member_keys(mem, entries)
        base = {layer: mem.projector.base_weight(layer) for layer in layers}
        out_rel = output_changes(w_before, w_after, keys)
        own_rel = edit_relative(w_before, w_after, base, keys)
        logit_rel = (torch.linalg.norm(logits_after - logits_before, dim=1) / torch.linalg.norm(logits_before, dim=1)).tolist()
        print(f"consolidated factors: {blob_bytes(mem, new):,} bytes in {len(new)} blobs; per applied edit before: {bytes_before / len(entries):,.0f} bytes", flush=True)
        print(f"consolidated {report.members} edits in {report.seconds:.2f}s: columns {report.columns} -> rank {report.rank} (rtol {report.rtol:g})", flush=True)
        print(f"stacked columns per layer {cols_before} -> {cols_after}; projection {t_before:.4f}s -> {t_after:.4f}s; Zarr delta blob bytes {bytes_before:,} -> {bytes_after:,}", flush=True)
        for name, values in (("layer output at keys / output", out_rel), ("layer output at keys / edit contribution", own_rel)):
            vals = list(values.values())
            print(f"per-fact {name}: max {max(vals):.2e}, median {statistics.median(vals):.2e}", flush=True)
        print(f"per-fact prompt logits change (relative): max {max(logit_rel):.2e}, median {statistics.median(logit_rel):.2e}", flush=True)
        replay_head = mem.replay(f"seq={mem.head_seq}")["weights_match"]
        with mem.weights_at(seq_before) as (_, _, sha):
            replay_before = sha == sha_before
        mem.revert_consolidation()
        print(f"replay of the head matches its hash: {replay_head}; replay before the consolidation equals the weights then: {replay_before}; "
              f"revert gives them back bit for bit: {mem.projector.weights_sha256() == sha_before}", flush=True)
        print_ratio("projection_before_vs_after", t_before, t_after, f"median projection time, {cols_before} stacked columns / {cols_after}")
        print_ratio("zarr_bytes_after_vs_before", bytes_after, bytes_before, "blob bytes with the consolidated factors / without (members stay stored)")
        rtols = [float(x) for x in args.rtols.split(",") if x]
        if rtols:
            rtol_sweep(mem, entries, base, rtols)
        sweep = [int(x) for x in args.columns.split(",") if x]
        if sweep:
            column_sweep(base[layers[0]], len(layers), sweep, args.repeats)
    finally:
        mem.close()


if __name__ == "__main__":
    main()
