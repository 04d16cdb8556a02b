"""How the room at a new fact's key shrinks as more facts are held: the base model, a mixed pool.

For ``N`` held facts (the first ``N`` of ``mixed_pool``) and probe facts drawn after them, this
reads every fact's audit keys on the base model and prints, per edit layer, the rank the held
keys take and the median free fraction ``‖(I − QQᵀ) k̃‖² / ‖k̃‖²`` of the probes' subject keys
(``k̃ = L⁻¹k`` in the solve's whitened frame, ``Q`` a basis of the held keys' whitened span, or of
the part ``--energy`` of their energy holds: ``memlog.core.solve.whitened_basis``). A constrained
edit reaches the fraction ``q/(1+q)`` of its residual at a key, with ``q`` the free part of
``k̃ᵀk̃`` (λ-scaled), so the free fraction is what the held keys leave of each new edit's reach.
It reads keys on the base weights only: what edits do to the keys is measured on a real store
by ``scripts/key_room.py``.

    MEMLOG_THREADS=1 python scripts/room_curve.py --held 50,100,200,300,400,600,1000 > curve.json
    python scripts/room_curve.py --plot curve.json room.png     # reach against held facts
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from _common import log, setup_threads
from memlog.core.fingerprint import cached_model_fingerprint
from memlog.core.memit_hparams import MemitConfig
from memlog.core.model import ModelSpec, load_model
from memlog.core.pool import mixed_pool
from memlog.core.solve import constraint_rank, room_at
from memlog.engine.editor import MemitEditor
from memlog.engine.open import _load_or_compute_covariances


def plot(data: dict, path: str) -> None:
    """Median reach (mean over the edit layers) against held facts, one line per held-key set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[tuple[str, float], dict[int, list[float]]] = {}
    for r in data["rows"]:
        series.setdefault((r["positions"], r["energy"]), {}).setdefault(r["held_facts"], []).append(r["median_reach"])
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (positions, energy), by_n in series.items():
        ns = sorted(by_n)
        label = f"{positions}, " + ("exact" if energy >= 1 else f"E = {energy}")
        ax.plot(ns, [statistics.mean(by_n[n]) for n in ns], marker="o", linestyle="-" if energy >= 1 else "--", label=label)
    ax.set_xlabel("facts held")
    ax.set_ylabel("reach of one new key's edit (median)")
    ax.set_title(f"Room the held keys leave (λ = {data['lam']:g}, layers {data['layers'][0]}-{data['layers'][-1]}, base weights)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--plot":
        with open(sys.argv[2]) as f:
            plot(json.load(f), sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held", default="50,100,200,300,400,600,1000", help="held-fact counts")
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", default="3-9")
    parser.add_argument("--cov-samples", type=int, default=1600)
    parser.add_argument("--lam", type=float, default=3000.0)
    parser.add_argument("--positions", default="subject,object")
    parser.add_argument("--energy", default="1.0,0.99")
    args = parser.parse_args()
    setup_threads()
    lo, hi = (int(x) for x in args.layers.split("-"))
    cfg = MemitConfig(layers=tuple(range(lo, hi + 1)), cov_samples=args.cov_samples, lam=args.lam)
    lm = load_model(ModelSpec())
    covs = _load_or_compute_covariances(lm, list(cfg.layers), cfg, cached_model_fingerprint(lm), None, lambda *a: None)[0]
    editor = MemitEditor(lm, cfg, covs)
    counts = sorted(int(x) for x in args.held.split(","))
    pool = mixed_pool(counts[-1] + args.probes, seed=args.seed)
    held_pool, probes = pool[: counts[-1]], pool[counts[-1] :]
    own = editor.audit_keys(probes, "subject")
    rows = []
    for positions in args.positions.split(","):
        log(f"reading the held keys at {positions}", stream=sys.stderr)
        keys = editor.audit_keys(held_pool, positions)
        per_fact = editor.key_counts(held_pool, positions)
        for n in counts:
            width = sum(per_fact[:n])
            for energy in (float(e) for e in args.energy.split(",")):
                for layer in cfg.layers:
                    held = keys[layer][:, :width].double()
                    free, q_free = room_at(own[layer], covs[layer], args.lam, held, energy=energy, norm_penalty=cfg.norm_penalty)
                    rank = constraint_rank(held, covs[layer], args.lam, energy=energy, norm_penalty=cfg.norm_penalty)
                    rows.append(
                        {
                            "positions": positions,
                            "held_facts": n,
                            "held_keys": width,
                            "energy": energy,
                            "layer": layer,
                            "rank": rank,
                            "median_free": statistics.median(free.tolist()),
                            "median_reach": statistics.median((q_free / (1 + q_free)).tolist()),
                        }
                    )
                log(f"{positions} N={n} E={energy}: median free {[round(r['median_free'], 3) for r in rows[-len(cfg.layers):]]}", stream=sys.stderr)
    print(json.dumps({"seed": args.seed, "probes": args.probes, "lam": args.lam, "layers": list(cfg.layers), "cov_samples": args.cov_samples, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
