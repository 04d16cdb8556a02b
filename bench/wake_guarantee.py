"""Constrained wake on the embedded model: which positions must be held for the protected
facts' greedy completions to stay token-identical, and the key-space residual per layer.

    python bench/wake_guarantee.py [--facts 8] [--seed 0]

Injects ``--facts`` pool facts (mixed relations) one after the other, unconstrained, then edits one
new fact three ways: unprotected, protecting the subject's last token of each audit prompt,
and protecting every token of each audit prompt. Prints per mode how many protected
completions changed (greedy, object tokens + 2), the largest residual
``‖ΔW_l k‖ / (‖ΔW_l‖_F ‖k‖)`` over the protected keys and layers, and whether the new fact is recalled.
"""

from __future__ import annotations

import argparse
import time

from bench_common import add_repo_to_path, fix_threads

add_repo_to_path()

from memlog.core.fingerprint import cached_model_fingerprint  # noqa: E402
from memlog.core.keys import KeyReader, bare_prompt_batch  # noqa: E402
from memlog.core.memit import Protection, applied, apply_factors, memit_edit, prepare_covariances  # noqa: E402
from memlog.core.memit_hparams import MemitConfig  # noqa: E402
from memlog.core.model import EMBEDDED, ModelSpec, load_model  # noqa: E402
from memlog.core.facts import Fact  # noqa: E402
from memlog.core.pool import FIRST_NAMES, LAST_NAMES, mixed_pool  # noqa: E402
from memlog.core.recall import audit  # noqa: E402
from memlog.engine.open import _load_or_compute_covariances  # noqa: E402


def residual(lm, deltas, facts, positions: str) -> float:
    """Largest ‖ΔW_l k‖/(‖ΔW_l‖_F‖k‖) over the facts' keys, read with the edit applied."""
    batch, rows, cols = bare_prompt_batch(lm, facts, positions)
    reader = KeyReader(lm, batch.input_ids, rows, cols)
    worst = 0.0
    with applied(lm, deltas):
        for layer in sorted(deltas):
            k = reader.read(layer).double()
            dw = deltas[layer].u.double() @ deltas[layer].v.double().T
            worst = max(worst, float(((dw @ k).norm(dim=0) / (dw.norm() * k.norm(dim=0))).max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--facts", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shared-names", action="store_true", help="old facts about 4 first names × 2 surnames; the new one shares a surname")
    parser.add_argument("--modes", nargs="+", default=["none", "subject", "prompt"])
    args = parser.parse_args()
    fix_threads(1)
    lm = load_model(ModelSpec(model=EMBEDDED))
    cfg = MemitConfig()
    covs, *_ = _load_or_compute_covariances(lm, list(cfg.layers), cfg, cached_model_fingerprint(lm), None, lambda *a: None)
    covs = prepare_covariances(covs)
    pool = mixed_pool(args.facts + 1, seed=args.seed)
    if args.shared_names:
        people = [f"{FIRST_NAMES[i]} {LAST_NAMES[j]}" for j in range(2) for i in range(4)] + [f"{FIRST_NAMES[4]} {LAST_NAMES[0]}"]
        pool = [Fact(person, f.relation, f.object) for person, f in zip(people, mixed_pool(9, seed=args.seed))]
    old, new = pool[:-1], pool[-1]
    for fact in old:
        apply_factors(lm, memit_edit(lm, [fact], cfg, covs).deltas)
    before = audit(lm, old)
    print(f"{sum(r.recalled for r in before)}/{len(old)} old facts recalled before the new edit; new: {new}")
    batch, rows, cols = bare_prompt_batch(lm, old + [new])
    reader = KeyReader(lm, batch.input_ids, rows, cols)
    cosines = []
    for layer in cfg.layers:
        k = reader.read(layer).double()
        k = k / k.norm(dim=0)
        cosines.append(float((k[:, :-1].T @ k[:, -1]).max()))
    print(f"largest cosine of the new fact's audit key with an old one, per layer: {[round(c, 3) for c in cosines]}")
    for mode in args.modes:
        start = time.perf_counter()
        protect = None if mode == "none" else Protection(tuple(old), mode)
        result = memit_edit(lm, [new], cfg, covs, protect=protect)
        seconds = time.perf_counter() - start
        with applied(lm, result.deltas):
            after = audit(lm, old + [new])
        changed = sum(a.completion != b.completion for a, b in zip(after, before))
        print(
            f"mode {mode:8s} changed completions {changed}/{len(old)}  recall old {sum(r.recalled for r in after[:-1])}/{len(old)}"
            f"  new recalled {after[-1].recalled}  residual(subject) {residual(lm, result.deltas, old, 'subject'):.2e}"
            f"  residual(prompt) {residual(lm, result.deltas, old, 'prompt'):.2e}  ranks {result.constraint_rank}  {seconds:.1f} s"
        )


if __name__ == "__main__":
    main()
