"""GPU benchmark: inject and a sleep cycle at Llama-3.1-8B shape (random weights, bf16, no download).

Builds a Llama-3.1-8B-shaped model (hidden 4096, MLP 14336, 32 layers, 32 heads, 8 KV
heads, vocab 128256) on the meta device, materialises it on the GPU with ``to_empty`` and
fills it with a fast normal init (norms set to one, rotary buffers recomputed), and uses
the embedded model's tokenizer. Then it times, with memlog's real engine:

1. store creation: fingerprint, key covariance from ``--cov-samples`` reference samples
   (a small count, to keep it fast; the paper uses 200), base perplexity;
2. ``memit_edit`` of one fact on layers 12-19 (``--edits`` single-fact edits, mean and
   per-step breakdown), and the engine's inject per fact;
3. one sleep cycle at ``--facts`` (14) facts with ``--refreshes`` (6) refreshes. A random
   model recalls nothing, so the audit's *verdict* is overridden to call the first
   ``facts - refreshes`` facts healthy; the audit forward passes still run, and the
   refreshes are real constrained MEMIT edits.

At 8B shape each edit layer's covariance is 14336² float32 (822 MB): store creation writes
eight of them to the store and to the throw-away cache (~13 GB of disk, a minute or so).

It prints the card's name and every number. Without a CUDA device it stops with a clear
message. ``--tiny --device cpu`` runs the same code path on a 4-layer model on the CPU, to
check the set-up logic end to end where there is no GPU.

    python bench/gpu_8b.py                      # on a machine with a CUDA GPU
    python bench/gpu_8b.py --tiny --device cpu  # a quick check of the code path
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_common import ForcedVerdictEditor, add_repo_to_path, print_ratio, timed

add_repo_to_path()

LLAMA_8B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, vocab_size=128256)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, vocab_size=49152)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (cpu only makes sense with --tiny).")
    parser.add_argument("--tiny", action="store_true", help="A 4-layer model instead of the 8B shape (checks the code path).")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--layers", default=None, help="Edit layers (default 12-19; 1-2 with --tiny).")
    parser.add_argument("--cov-samples", type=int, default=16, help="Reference samples for the key covariance (paper: 200).")
    parser.add_argument("--cov-seq-len", type=int, default=64)
    parser.add_argument("--edits", type=int, default=None, help="Single-fact memit_edit calls to time (default 3; 2 with --tiny).")
    parser.add_argument("--facts", type=int, default=None, help="Facts in the store for the sleep cycle (default 14; 5 with --tiny).")
    parser.add_argument("--refreshes", type=int, default=None, help="Refreshes in the timed cycle (default 6; 2 with --tiny).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name, full, tiny in (("edits", 3, 2), ("facts", 14, 5), ("refreshes", 6, 2)):
        if getattr(args, name) is None:
            setattr(args, name, tiny if args.tiny else full)
    if not 0 < args.refreshes <= args.facts:
        parser.error("--refreshes must be between 1 and --facts")
    return args


def require_device(device: str) -> None:
    """Exit with a clear message when a CUDA device is asked for and none is present."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        sys.stderr.write(
            "gpu_8b: no CUDA device is present (torch.cuda.is_available() is False). This benchmark needs an NVIDIA GPU "
            "with ~40 GB free; run it on one, or check the code path here with: python bench/gpu_8b.py --tiny --device cpu\n"
        )
        sys.exit(2)


def card_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def llama_config(tiny: bool):
    from transformers import LlamaConfig

    shape = TINY if tiny else LLAMA_8B
    return LlamaConfig(
        **shape,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        initializer_range=0.02,
    )


@dataclass
class Built:
    lm: object
    seconds: float
    params: int


def reset_rotary_buffers(model) -> None:
    """Recompute non-persistent buffers (rotary inverse frequencies) that ``to_empty`` left uninitialised."""
    for module in model.modules():
        if not hasattr(module, "inv_freq"):
            continue
        fresh = type(module)(module.config)
        device = getattr(module, "inv_freq").device
        for name, buf in fresh.named_buffers(recurse=False):
            module.register_buffer(name, buf.to(device), persistent=False)  # float32, as a loaded model keeps them
        if hasattr(fresh, "attention_scaling"):
            module.attention_scaling = fresh.attention_scaling


def fast_init(model, std: float, seed: int) -> None:
    """Normal(0, std) for every matrix and embedding, one for every norm weight; in place, on the model's device."""
    import torch

    gen_device = next(model.parameters()).device
    torch.manual_seed(seed)
    if gen_device.type == "cuda":
        torch.cuda.manual_seed_all(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 1:
                param.fill_(1.0)
            else:
                param.normal_(0.0, std)


def build_model(tiny: bool, device: str, dtype_name: str, seed: int) -> Built:
    """A random-weight Llama of the chosen shape, materialised directly on ``device``."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from memlog.core.adapter import LayerAdapter
    from memlog.core.model import DTYPES, LoadedModel, ModelSpec, ensure_embedded_cache

    dtype = DTYPES[dtype_name]
    config = llama_config(tiny)
    start = time.perf_counter()
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model = model.to(dtype=dtype).to_empty(device=torch.device(device))
    fast_init(model, config.initializer_range, seed)
    reset_rotary_buffers(model)
    model.eval()
    model.requires_grad_(False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokenizer = AutoTokenizer.from_pretrained(str(ensure_embedded_cache()))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    name = "llama-tiny-random" if tiny else "llama-3.1-8b-shape-random"
    lm = LoadedModel(
        model=model,
        tokenizer=tokenizer,
        adapter=LayerAdapter.for_model(model),
        model_id=name,
        source="random-init",
        spec=ModelSpec(model=name, dtype=dtype_name, device="cuda" if device.startswith("cuda") else device),
    )
    return Built(lm=lm, seconds=seconds, params=sum(p.numel() for p in model.parameters()))


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_memit(lm, facts, cfg, covs, device: str) -> list:
    """(seconds, timings) for one single-fact ``memit_edit`` per fact."""
    from memlog.core.memit import memit_edit

    out = []
    for fact in facts:
        sync(device)
        seconds, result = timed(lambda: memit_edit(lm, [fact], cfg, covs))
        sync(device)
        out.append((seconds, result.timings))
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    require_device(args.device)
    import torch

    from memlog.core.memit_hparams import MemitConfig
    from memlog.core.model import parse_layers
    from memlog.core.pool import fact_pool
    from memlog.engine.config import EngineConfig
    from memlog.engine.open import init_memory
    from memlog.experiments.seeding import seed_everything

    seed_everything(args.seed)
    layers = parse_layers(args.layers or ("1-2" if args.tiny else "12-19"))
    print(f"gpu_8b: device {args.device}: {card_name(args.device)}; torch {torch.__version__}", flush=True)
    built = build_model(args.tiny, args.device, args.dtype, args.seed)
    lm = built.lm
    print(f"gpu_8b: built {lm.model_id} ({built.params / 1e9:.2f} B params, {args.dtype}) on {args.device} in {built.seconds:.1f} s", flush=True)
    cfg = MemitConfig(layers=tuple(layers), cov_samples=args.cov_samples, cov_seq_len=args.cov_seq_len, seed=args.seed)
    facts = fact_pool(args.facts + args.edits, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="memlog-gpu-bench-") as tmp:
        os.environ["MEMLOG_CACHE"] = str(Path(tmp) / "cache")  # the covariance cache of a random model is throw-away
        sync(args.device)
        init_s, mem = timed(lambda: init_memory(Path(tmp) / "store", lm.spec, memit=cfg, engine=EngineConfig(), lm=lm))
        print(f"gpu_8b: store created in {init_s:.1f} s (fingerprint, covariance from {args.cov_samples} samples x {args.cov_seq_len} tokens, base PPL)", flush=True)
        try:
            edits = time_memit(lm, facts[args.facts:], cfg, mem.editor.covariances, args.device)
            for i, (seconds, timings) in enumerate(edits, start=1):
                steps = ", ".join(f"{k} {v:.2f}" for k, v in timings.items())
                print(f"gpu_8b: memit_edit #{i} (1 fact, layers {layers[0]}-{layers[-1]}): {seconds:.2f} s  [{steps}]", flush=True)
            steady = [s for s, _ in edits[1:]] or [edits[0][0]]
            memit_s = sum(steady) / len(steady)
            sync(args.device)
            inject_s, _ = timed(lambda: mem.inject(facts[: args.facts], audit=False))
            sync(args.device)
            per_inject = inject_s / args.facts
            print(f"gpu_8b: engine inject (memit_edit + blob writes + projection + event): {per_inject:.2f} s/fact over {args.facts} facts", flush=True)
            healthy = {f.fact_id for f in facts[: args.facts - args.refreshes]}
            mem.editor = ForcedVerdictEditor(mem.editor, healthy)
            report = mem.sleep(cycles=1).cycles[0]
            sync(args.device)
        finally:
            mem.close()
    print(f"gpu_8b: sleep cycle at {args.facts} facts: {report.seconds:.2f} s; refreshed {report.refreshed}, rolled back {report.rolled_back}, reverted {report.reverted}")
    for step, seconds in report.step_seconds.items():
        print(f"gpu_8b:   {step:<16} {seconds:8.2f} s")
    if args.device.startswith("cuda"):
        print(f"gpu_8b: peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    print(f"gpu_8b: memit_edit, 1 fact: {memit_s:.2f} s (mean of calls after the first)")
    print_ratio("gpu_8b.cycle_over_inject", report.seconds, per_inject, f"sleep cycle ({args.facts} facts, {args.refreshes} refreshes) / one engine inject")
    print_ratio("gpu_8b.inject_over_memit", per_inject, memit_s, "engine inject / bare memit_edit")


if __name__ == "__main__":
    main()
