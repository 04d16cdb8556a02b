"""Creating and opening stores with a model: ``init_memory`` and ``open_memory``.

``init_memory`` loads (or takes) the model, fingerprints all its weights, computes the
per-layer key covariance once (reusing a copy cached under ``$MEMLOG_CACHE`` keyed by
fingerprint, layer, sample count and corpus hash), and records ``StoreCreated``,
``CovarianceComputed`` and the base perplexity.

``open_memory`` opens a store, loads the model recorded in its header (unless one is
given), refuses a model whose fingerprint differs, and projects the log's head onto the
weights (the paper's Eq. 2 restart).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from memlog.core.corpus import corpus_sha256
from memlog.core.covariance import compute_covariance, require_enough_keys
from memlog.core.fingerprint import cached_model_fingerprint, fingerprint_for
from memlog.core.memit import prepare_covariances
from memlog.core.memit_hparams import MemitConfig, store_lam
from memlog.core.model import LoadedModel, ModelSpec, cache_dir, format_layers, load_model
from memlog.engine.config import EngineConfig, finite_reading
from memlog.engine.editor import MemitEditor
from memlog.engine.header import check_fingerprint, covariances_from_log, memit_config_of
from memlog.engine.memory import Memory
from memlog.errors import UserError
from memlog.progress import no_progress
from memlog.projections.weights import WeightProjector
from memlog.store.events import CovarianceComputed, PerplexityMeasured, StoreCreated
from memlog.store.store import Store, is_store

# MEMIT settings a session may override (``open_memory(memit_overrides=...)``): they change how
# new edits are solved; the logged deltas replay as they were written
SESSION_MEMIT_SETTINGS = ("lam", "norm_penalty", "v_stop")


def _cov_cache_path(fp: str, layer: int, cfg: MemitConfig, corpus_sha: str) -> Path:
    key = hashlib.sha256(f"{fp}|{layer}|{cfg.cov_samples}|{cfg.cov_seq_len}|{corpus_sha}".encode()).hexdigest()[:24]
    return cache_dir() / "covariance" / f"{key}.npy"


def _load_or_compute_covariances(lm: LoadedModel, layers: list[int], cfg: MemitConfig, fp: str, corpus_path: str | None, progress):
    """Each layer's covariance from the cache, else computed and cached. Every layer's file has its
    own ``.meta.npy`` (samples, tokens), so windows that share layers share the cache."""
    require_enough_keys(lm, layers, cfg.cov_samples, cfg.cov_seq_len)  # a cached estimate from too few keys is refused too
    corpus_sha = corpus_sha256(corpus_path)
    paths = {layer: _cov_cache_path(fp, layer, cfg, corpus_sha) for layer in layers}
    metas = {layer: p.with_suffix(".meta.npy") for layer, p in paths.items()}
    if all(p.is_file() and metas[layer].is_file() for layer, p in paths.items()):
        meta = np.load(metas[layers[0]])
        covs = {layer: torch.from_numpy(np.load(p)) for layer, p in paths.items()}
        return covs, int(meta[0]), int(meta[1]), corpus_sha
    result = compute_covariance(lm, layers, cfg, corpus_path=corpus_path, progress=lambda d, t: progress("covariance", d, t))
    for layer, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, result.covs[layer].numpy())
        tmp.replace(path)
        tmp_meta = path.with_suffix(".meta-tmp.npy")
        np.save(tmp_meta, np.array([result.n_samples, result.n_tokens]))
        tmp_meta.replace(metas[layer])
    return result.covs, result.n_samples, result.n_tokens, result.corpus_sha256


def init_memory(
    store_dir: Path,
    spec: ModelSpec,
    layers: list[int] | None = None,
    memit: MemitConfig | None = None,
    engine: EngineConfig | None = None,
    lm: LoadedModel | None = None,
    corpus_path: str | None = None,
    progress=no_progress,
) -> Memory:
    store_dir = Path(store_dir)
    if is_store(store_dir):
        raise UserError(f"{store_dir} already holds a memlog store; pick another --store or remove it first")
    lm = lm or load_model(spec)
    memit = memit or MemitConfig()
    if layers is not None:
        memit = MemitConfig(**{**asdict(memit), "layers": tuple(layers)})
    layers = list(memit.layers)
    n_layers = lm.adapter.num_layers(lm.model)
    bad = [x for x in layers if not 0 <= x < n_layers]
    if bad:
        raise UserError(f"--layers {format_layers(bad)} is out of range: this model has {n_layers} layers (0-{n_layers - 1})")
    engine = engine or EngineConfig()
    fp = cached_model_fingerprint(lm)
    if memit.lam is None:  # the header records the number, so the store keeps it whatever the default becomes
        memit = replace(memit, lam=store_lam(lm.adapter.key_dim(lm.model, layers[0]), engine.constrained_in_place))
    covs, n_samples, n_tokens, corpus_sha = _load_or_compute_covariances(lm, layers, memit, fp, corpus_path, progress)
    header = StoreCreated(
        model_id=spec.model,
        model_source=str(lm.source),
        fingerprint=fp,
        layers=layers,
        dtype=spec.dtype,
        config={
            "memit": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(memit).items()},
            "engine": engine.to_dict(),
            "device": spec.device,
            "load_in_4bit": spec.load_in_4bit,
        },
    )
    made_dir = not store_dir.exists()
    store = Store.create(store_dir, header)
    try:
        mem = _memory(store, lm, memit, covs, engine)
        with mem.unit():
            for layer in layers:
                ref = store.blobs.put(covs[layer].numpy())
                mem.emit(CovarianceComputed(layer=layer, cov=ref, n_samples=n_samples, n_tokens=n_tokens, corpus_sha256=corpus_sha))
            mem.emit(PerplexityMeasured(ppl=finite_reading(mem.editor.perplexity(), "of the base model"), phase="base"))
    except BaseException:  # a store with a header and no covariances could neither be opened nor made again
        store.discard(remove_dir=made_dir)
        raise
    return mem


def _memory(store: Store, lm: LoadedModel, memit: MemitConfig, covs, engine: EngineConfig | None) -> Memory:
    # Factorise each layer's C once per open instead of once per edit.
    editor = MemitEditor(lm=lm, config=memit, covariances=prepare_covariances(covs, device=lm.device, norm_penalty=memit.norm_penalty))
    projector = WeightProjector(lm.model, lm.adapter, list(memit.layers), store.blobs.get)
    return Memory(store, editor, projector, engine)


def open_memory(
    store_dir: Path,
    lm: LoadedModel | None = None,
    writable: bool = True,
    device: str | None = None,
    engine_overrides: dict | None = None,
    memit_overrides: dict | None = None,
) -> Memory:
    """Open a store with its header's model and settings. ``engine_overrides`` (``EngineConfig``
    fields) and ``memit_overrides`` (only ``SESSION_MEMIT_SETTINGS``: they change how new edits are
    solved, not what the logged ones are) apply to this session; the header keeps its settings."""
    unknown = sorted(set(memit_overrides or {}) - set(SESSION_MEMIT_SETTINGS))
    if unknown:
        raise UserError(f"MEMIT setting(s) {unknown} are fixed when a store is created; a session may override only {list(SESSION_MEMIT_SETTINGS)}")
    store = Store.open(Path(store_dir), writable=writable)
    try:
        header = store.log.header()
        if lm is None:
            lm = load_model(
                ModelSpec(
                    model=header.model_id,
                    dtype=header.dtype,
                    device=device or header.config.get("device", "cpu"),
                    load_in_4bit=bool(header.config.get("load_in_4bit", False)),
                    keep_unquantized=tuple(header.layers),
                )
            )
        actual = fingerprint_for(header.fingerprint, lm, list(header.layers), header.model_id)
        check_fingerprint(header, actual, f"model {lm.model_id!r} ({lm.source})")
        memit = replace(memit_config_of(header), **{k: v for k, v in (memit_overrides or {}).items() if v is not None})
        covs = covariances_from_log(store, store.log.read(kinds=["CovarianceComputed"]))
        engine = EngineConfig.from_dict(header.config.get("engine", {})).with_overrides(**(engine_overrides or {}))
        return _memory(store, lm, memit, covs, engine)
    except BaseException:
        store.close()
        raise
