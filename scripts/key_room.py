"""How much room the held keys leave at each fact's own key: stuck facts against recalled ones.

A constrained solve writes ΔW_l in the null space of the held keys. In the solve's whitened frame
(``λC = L Lᵀ``, ``k̃ = L⁻¹k``, ``Q`` an orthonormal basis of the held keys' ``L⁻¹K_h``), one new
key's edit reaches a fraction ``q / (1 + q)`` of the residual it is asked for at that key, with
``q = ‖(I − QQᵀ) k̃‖²`` (Sherman-Morrison on the projected system; unconstrained, ``q = ‖k̃‖²``).
This prints, per edit layer, that reach and the free fraction ``‖(I − QQᵀ) k̃‖² / ‖k̃‖²`` for each
fact the store's last audit found degraded, and for a seeded sample of recalled facts, each read
against the store's other recalled facts (less those sharing its key, as a refresh protects
them: ``constraints.protectable``), on the store's current weights.

    MEMLOG_THREADS=1 python scripts/key_room.py STORE --lam 3000 --sample 40 > room.json

Opens the store read-only. The held keys are the store's protected positions (``EngineConfig.
protect_positions``) at full energy; the recalled facts' keys are read once, in one batch, and
each fact is read against its own subset of their columns.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys

import torch

from _common import log, setup_threads
from memlog.core.solve import room_at
from memlog.engine.constraints import protectable
from memlog.engine.open import open_memory
from memlog.engine.wake import fact_of


def room(editor, fact, held_keys: dict, lam: float) -> dict:
    """Per layer: the free fraction and the reach of ``fact``'s subject key against ``held_keys``."""
    own = editor.audit_keys([fact], "subject")
    out = {}
    for layer, k in own.items():
        C = editor.covariances[layer]
        free, q = room_at(k, C, lam, held_keys.get(layer), norm_penalty=editor.config.norm_penalty)
        _, q_alone = room_at(k, C, lam, norm_penalty=editor.config.norm_penalty)
        out[layer] = {"free": float(free), "reach": float(q / (1 + q)), "q_unconstrained": float(q_alone)}
    return out


def columns_of(facts, keep, counts: list[int]) -> torch.Tensor:
    """The key columns of the facts in ``keep`` (ids), given each fact's key count in order."""
    index, at = [], 0
    for f, n in zip(facts, counts):
        if f.fact_id in keep:
            index.extend(range(at, at + n))
        at += n
    return torch.tensor(index, dtype=torch.long)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store")
    parser.add_argument("--lam", type=float, default=None, help="λ of the solve (default: the store's)")
    parser.add_argument("--sample", type=int, default=40, help="recalled facts to read (seeded sample)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    setup_threads()
    with open_memory(args.store, writable=False) as mem:
        lam = args.lam if args.lam is not None else mem.editor.config.lam
        positions = mem.config.protect_positions
        states = mem.ledger.active_facts()
        recalled = [s for s in states if s.last_audit is not None and s.last_audit.recalled]
        degraded = [s for s in states if s.last_audit is not None and not s.last_audit.recalled]
        sample = random.Random(args.seed).sample(recalled, min(args.sample, len(recalled)))
        log(f"{len(recalled)} recalled, {len(degraded)} degraded; λ = {lam}, held positions {positions}", stream=sys.stderr)
        pool = [fact_of(s.fact) for s in recalled]
        all_keys = mem.editor.audit_keys(pool, positions)  # read once; each probe takes its columns
        counts = mem.editor.key_counts(pool, positions)
        rows = []
        for n, (state, kind) in enumerate([(s, "degraded") for s in degraded] + [(s, "recalled") for s in sample]):
            fact = fact_of(state.fact)
            held = protectable([f for f in pool if f.fact_id != fact.fact_id], [fact], positions)
            cols = columns_of(pool, {f.fact_id for f in held}, counts)
            per_layer = room(mem.editor, fact, {layer: k[:, cols] for layer, k in all_keys.items()}, lam)
            rows.append({"fact_id": fact.fact_id, "prompt": fact.prompt, "object": fact.object, "kind": kind, "held_facts": len(held), "layers": per_layer})
            log(f"{n + 1}: {kind} {fact.prompt!r} min free {min(v['free'] for v in per_layer.values()):.3f}", stream=sys.stderr)
        summary = {}
        for kind in ("degraded", "recalled"):
            mine = [r for r in rows if r["kind"] == kind]
            if not mine:
                continue
            layers = sorted(mine[0]["layers"])
            summary[kind] = {
                str(layer): {
                    "median_free": statistics.median(r["layers"][layer]["free"] for r in mine),
                    "median_reach": statistics.median(r["layers"][layer]["reach"] for r in mine),
                }
                for layer in layers
            }
        print(json.dumps({"store": args.store, "lam": lam, "positions": positions, "summary": summary, "rows": rows}, indent=1, default=str))


if __name__ == "__main__":
    main()
