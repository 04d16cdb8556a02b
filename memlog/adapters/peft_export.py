"""The memory at a point of the log as a PEFT LoRA adapter (``memlog export --format peft``).

For every edit layer that holds an edit, the adapter targets the edited MLP projection
(``model.layers.N.mlp.down_proj`` on Llama) with ``lora_B = [s_1 U_1 | s_2 U_2 | …]`` and
``lora_A = [V_1 | V_2 | …]ᵀ`` (``memlog.adapters.lowrank``), so ``lora_B @ lora_A`` is the
layer's ΔW exactly. Ranks differ per layer (``rank_pattern``); peft multiplies the product by
``lora_alpha / r``, so every module gets ``alpha = r`` (``lora_alpha = r`` globally and
``alpha_pattern`` per module) and the scaling is 1: base + adapter equals memlog's projected
weights up to float32 rounding. Loaders that ignore the patterns (vLLM) use ``lora_alpha / r``
= 1 too and take each module's rank from its tensors.

``max_rank`` truncates each layer's factors by SVD (``truncate``); the export then reports
each layer's relative error of ΔW and re-audits the active facts on the truncated weights,
listing the facts the truncation costs against the full-rank weights.

The directory holds ``adapter_config.json``, ``adapter_model.safetensors`` and the provenance
manifest of the HF export (``memlog-export.json``) with an ``adapter`` section.
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig
from safetensors.torch import save_file

from memlog.adapters.lowrank import LayerFactors, stacked_factors, truncate
from memlog.projections.facts import fact_of
from memlog.errors import UserError
from memlog.replay.export import loaded_model_for_export, provenance, write_manifest
from memlog.store.outdir import check_out, written_atomically

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def memory_factors(mem, ledger, max_rank: int | None = None) -> list[LayerFactors]:
    """Per edit layer, the stacked factors of the applied edits (truncated to ``max_rank`` if given)."""
    entries = ledger.applied_entries()
    layers = []
    for layer in mem.header.layers:
        factors = stacked_factors(entries, layer, mem.store.blobs.get)
        if factors is None:
            continue
        if max_rank is not None:
            factors = truncate(factors, max_rank)
        layers.append(factors)
    return layers


def lora_config(lm, factors: list[LayerFactors], base_model: str):
    """The peft ``LoraConfig``: per-module rank and alpha = rank, so the scaling is 1 everywhere."""

    names = {f.layer: lm.adapter.mlp_out_name(lm.model, f.layer) for f in factors}
    top = max(f.rank for f in factors)
    return LoraConfig(
        r=top,
        lora_alpha=top,
        target_modules=[names[f.layer] for f in factors],
        rank_pattern={names[f.layer]: f.rank for f in factors},
        alpha_pattern={names[f.layer]: f.rank for f in factors},
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
        fan_in_fan_out=lm.adapter.spec.transposed,
        base_model_name_or_path=base_model,
        inference_mode=True,
    )


def adapter_tensors(lm, factors: list[LayerFactors]) -> dict[str, torch.Tensor]:
    """The safetensors state dict in peft's naming (``base_model.model.<module>.lora_A.weight``)."""
    tensors = {}
    for f in factors:
        prefix = f"base_model.model.{lm.adapter.mlp_out_name(lm.model, f.layer)}"
        tensors[f"{prefix}.lora_A.weight"] = f.a.contiguous()
        tensors[f"{prefix}.lora_B.weight"] = f.b.contiguous()
    return tensors


def _truncated_weights(mem, factors: list[LayerFactors]) -> dict:
    """``W_base + b a`` per edit layer (the base where no edit is applied)."""
    by_layer = {f.layer: f for f in factors}
    weights = {}
    for layer in mem.header.layers:
        base = mem.projector.base_weight(layer)
        f = by_layer.get(layer)
        weights[layer] = base if f is None else base + f.delta().to(base.device)
    return weights


def truncation_cost(mem, seq: int, ledger, factors: list[LayerFactors]) -> dict:
    """Recall of the active facts on the full projection and on the truncated weights."""
    states = ledger.active_facts()
    facts = [fact_of(s.fact) for s in states]
    with mem.weights_at(seq):
        full = mem.editor.audit(facts)
        mem.projector.write(_truncated_weights(mem, factors))  # weights_at restores the head after
        truncated = mem.editor.audit(facts)
    lost = [s.fact.fact_id for s, a, b in zip(states, full, truncated) if a.recalled and not b.recalled]
    gained = [s.fact.fact_id for s, a, b in zip(states, full, truncated) if b.recalled and not a.recalled]
    n = len(facts)
    return {
        "recall_full": sum(r.recalled for r in full) / n if n else None,
        "recall_truncated": sum(r.recalled for r in truncated) / n if n else None,
        "facts_lost": lost,
        "facts_gained": gained,
    }


def export_peft(mem, out_dir: Path | str, at: str | None = None, max_rank: int | None = None) -> dict:
    """Write the memory at ``at`` as a PEFT LoRA adapter into ``out_dir``; return the manifest (plus ``out``)."""
    lm = loaded_model_for_export(mem)
    if max_rank is not None and max_rank < 1:
        raise UserError(f"--max-rank must be at least 1, got {max_rank}")
    out = Path(out_dir)
    check_out(out, mem.store.path)
    seq = mem.point_seq(at)
    ledger = mem.ledger_at(seq)
    full = memory_factors(mem, ledger)
    if not full:
        raise UserError(f"no edit is applied at {at or 'head'} (seq {seq}); there is nothing to export as an adapter")
    factors = [truncate(f, max_rank) for f in full] if max_rank is not None else full
    with mem.weights_at(seq) as (_, _, sha):
        pass
    section = {
        "format": "peft",
        "target_modules": [lm.adapter.mlp_out_name(lm.model, f.layer) for f in factors],
        "ranks": {str(f.layer): f.rank for f in factors},
        "full_ranks": {str(f.layer): f.rank for f in full},
        "max_rank": max_rank,
        "scaling": 1.0,
    }
    if max_rank is not None:
        section["relative_error"] = {str(f.layer): f.relative_error for f in factors}
        section["max_relative_error"] = max(f.relative_error for f in factors)
        section.update(truncation_cost(mem, seq, ledger, factors))
    with written_atomically(out, mem.store.path) as tmp:
        lora_config(lm, factors, str(mem.header.model_source)).save_pretrained(str(tmp))
        save_file(adapter_tensors(lm, factors), str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        manifest = {"format": "peft", **provenance(mem, at, seq, ledger, sha), "adapter": section}
        write_manifest(tmp, manifest)
    return {**manifest, "out": str(out)}
