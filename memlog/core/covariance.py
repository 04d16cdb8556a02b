"""The key covariance C_l = mean of k kᵀ over reference tokens, for every edit layer at once.

One forward pass per batch of corpus chunks, stopped after the deepest edit layer, with a
pre-hook on each layer's MLP output projection that accumulates ``Kᵀ K`` (float32 products,
float64 sums). Position 0 of every chunk is excluded: without a BOS token the first token
is an attention sink whose activations are orders of magnitude larger than the rest and
would dominate C (see DESIGN.md, pitfalls). Chunks all have the same length, so there is no
padding to mask.

Normalisation: C is the *mean* over tokens (not the sum, not a per-dimension variance);
λ in ``solve_update`` is chosen for this normalisation (docs/MEMIT.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from memlog.core.corpus import corpus_sha256, covariance_chunks
from memlog.core.forward import forward_until
from memlog.core.memit_hparams import MemitConfig
from memlog.core.model import LoadedModel
from memlog.errors import UserError
from memlog.progress import StepFn

SKIP_POSITIONS = 1  # leading positions of each chunk left out of C


@dataclass(frozen=True)
class CovarianceResult:
    covs: dict[int, torch.Tensor]  # layer -> (d_in, d_in) float32 on cpu
    n_samples: int
    n_tokens: int  # tokens that entered the mean, per layer
    corpus_sha256: str


def _accumulate_hook(sums: dict[int, torch.Tensor], layer: int):
    def hook(_module, args):
        keys = args[0][:, SKIP_POSITIONS:].reshape(-1, args[0].shape[-1]).float()
        sums[layer] += (keys.T @ keys).double()

    return hook


def require_enough_keys(lm: LoadedModel, layers: list[int], windows: int, seq_len: int) -> dict[int, int]:
    """Each layer's key dimension; UserError if ``windows`` windows of ``seq_len`` tokens give
    fewer keys than the largest (the estimate of C would be singular)."""
    dims = {layer: lm.adapter.key_dim(lm.model, layer) for layer in layers}
    keys, largest = windows * (seq_len - SKIP_POSITIONS), max(dims.values())
    if keys < largest:
        need = -(-largest // (seq_len - SKIP_POSITIONS))
        raise UserError(
            f"--cov-samples {windows}: {keys} keys cannot estimate a {largest}x{largest} key covariance "
            f"(it would be singular); use at least {need} windows of {seq_len} tokens"
        )
    return dims


def compute_covariance(
    lm: LoadedModel,
    layers,
    cfg: "MemitConfig",
    texts: list[str] | None = None,
    progress: StepFn | None = None,
    corpus_path: str | Path | None = None,
    batch_size: int = 16,
) -> CovarianceResult:
    """C for each of ``layers`` from ``cfg.cov_samples`` chunks of ``cfg.cov_seq_len`` tokens.

    The chunks come from ``texts`` (joined by blank lines, used whole) if given, else from the
    covariance part of the corpus file at ``corpus_path``, else of the default corpus.
    ``progress(done, total)`` is called after each batch.
    """
    layers = sorted(set(layers))
    joined = "\n\n".join(texts) if texts is not None else None
    chunks = covariance_chunks(lm.tokenizer, cfg.cov_samples, cfg.cov_seq_len, path=corpus_path, text=joined)
    sha = "sha256:" + hashlib.sha256(joined.encode("utf-8")).hexdigest() if joined is not None else corpus_sha256(corpus_path)
    dims = require_enough_keys(lm, layers, len(chunks), cfg.cov_seq_len)
    sums = {layer: torch.zeros(d, d, dtype=torch.float64, device=lm.device) for layer, d in dims.items()}
    pre_hooks = [(lm.adapter.mlp_out(lm.model, layer), _accumulate_hook(sums, layer)) for layer in layers]
    total = len(chunks)
    with torch.no_grad():
        for start in range(0, total, batch_size):
            ids = torch.tensor(chunks[start : start + batch_size], dtype=torch.long, device=lm.device)
            forward_until(lm, layers[-1], ids, None, pre_hooks=pre_hooks)
            if progress is not None:
                progress(min(start + batch_size, total), total)
    n_tokens = total * (cfg.cov_seq_len - SKIP_POSITIONS)
    covs = {layer: (s / n_tokens).float().cpu() for layer, s in sums.items()}
    return CovarianceResult(covs=covs, n_samples=total, n_tokens=n_tokens, corpus_sha256=sha)
