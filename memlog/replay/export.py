"""Export the model with its memory: the weights at a point of the log, as a plain HF checkpoint.

``export_model(mem, out_dir, at)`` projects the weights as they were at ``at`` (the head by
default), saves the model (safetensors) and tokenizer with ``save_pretrained``, and writes
``memlog-export.json`` beside them (``provenance``): which store and point it came from, the
sha256 of the edit layers (the same hash the log records, so ``memlog verify``-style checks
work on the export), and the facts that were active there: whether their edit is in the
weights, and their last recorded audit (which predates a later revert).

The checkpoint needs nothing from memlog to load: ``AutoModelForCausalLM.from_pretrained(dir)``.
It is written into a hidden directory beside ``out_dir`` and renamed into place when complete
(``written_atomically``), so a crash never leaves a half-written export under the final name.
``out_dir`` must not exist or be empty, and must not lie inside the store. A 4-bit (NF4) model
is refused: its quantised layers would not round-trip exactly. The PEFT adapter export
(``memlog.adapters.peft_export``) shares these checks and the manifest.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from memlog.errors import UserError
from memlog.replay.replay import fact_rows
from memlog.store.outdir import check_out, written_atomically

MANIFEST = "memlog-export.json"


def loaded_model_for_export(mem):
    """The memory's model, refusing a 4-bit one (its layers would not round-trip exactly)."""
    lm = getattr(mem.editor, "lm", None)
    if lm is None:
        raise UserError("this memory has no loaded model to export")
    if getattr(lm.model, "is_quantized", False) or getattr(lm.model, "hf_quantizer", None) is not None:
        raise UserError(
            "the store's model is loaded in 4 bits; export needs exact weights: open it with a float dtype "
            "(create the store without --load-in-4bit) to export"
        )
    return lm


def provenance(mem, at: str | None, seq: int, ledger, sha: str) -> dict:
    """The manifest of an export: store, point, base model, weights hash and the active facts."""
    return {
        "store": str(mem.store.path),
        "point": at or "head",
        "seq": seq,
        "cycle": ledger.cycle,
        "model_id": mem.header.model_id,
        "base_fingerprint": mem.header.fingerprint,
        "edit_layers": list(mem.header.layers),
        "weights_sha256": sha,
        "weights_match_log": (sha == ledger.last_weights_sha256) if ledger.last_weights_sha256 else None,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "facts": [row for row in fact_rows(ledger) if row["active"]],
    }


def write_manifest(directory: Path, manifest: dict) -> None:
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def export_model(mem, out_dir: Path | str, at: str | None = None) -> dict:
    """Write the model as it was at ``at`` into ``out_dir``; return the manifest (plus ``out``)."""
    lm = loaded_model_for_export(mem)
    out = Path(out_dir)
    check_out(out, mem.store.path)
    seq = mem.point_seq(at)
    with written_atomically(out, mem.store.path) as tmp:
        with mem.weights_at(seq) as (_, ledger, sha):
            lm.model.save_pretrained(tmp, safe_serialization=True)
            lm.tokenizer.save_pretrained(tmp)
            manifest = {"format": "hf", **provenance(mem, at, seq, ledger, sha)}
            write_manifest(tmp, manifest)
    return {**manifest, "out": str(out)}
