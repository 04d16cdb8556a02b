"""The per-edit cost of constrained wake on the embedded model at M = 100 and 1,000 protected facts.

    python bench/wake_cost.py [--protect subject|object]

Times ``solve_layers`` (steps 2-3 of MEMIT for one new fact, v* computed once) unprotected and
with M protected facts (M = 100 and 1,000 for the subject's key, 100 and 400 for the object
positions; their audit keys re-read at every layer, the whitened solve; at the larger M also
holding 0.99 of their energy), and the solver alone at the first 1,000 protected keys of layer 2: the SVD
basis against the whitened QR, and the whitened solve holding 0.99 of the keys' energy (an
eigendecomposition of the whitened keys' Gram matrix) against the exact one. Prints ratios (one run, so machine load affects
both sides alike).
"""

from __future__ import annotations

import argparse
import time

from bench_common import add_repo_to_path, fix_threads

add_repo_to_path()

from memlog.core.fingerprint import cached_model_fingerprint  # noqa: E402
from memlog.core.keys import KeyReader, bare_prompt_batch  # noqa: E402
from memlog.core.memit import Protection, prepare_covariances, solve_layers  # noqa: E402
from memlog.core.memit_hparams import MemitConfig  # noqa: E402
from memlog.core.model import EMBEDDED, ModelSpec, load_model  # noqa: E402
from memlog.core.pool import mixed_pool  # noqa: E402
from memlog.core.solve import solve_update  # noqa: E402
from memlog.core.vstar import compute_v_star  # noqa: E402
from memlog.engine.open import _load_or_compute_covariances  # noqa: E402


def seconds(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protect", default="subject", choices=["subject", "object"], help="the protected facts' positions held")
    args = parser.parse_args()
    fix_threads(1)
    lm = load_model(ModelSpec(model=EMBEDDED))
    cfg = MemitConfig()
    covs, *_ = _load_or_compute_covariances(lm, list(cfg.layers), cfg, cached_model_fingerprint(lm), None, lambda *a: None)
    covs = prepare_covariances(covs)
    pool = mixed_pool(1001, seed=0)
    new, others = pool[:1], pool[1:]
    targets, _ = compute_v_star(lm, new, cfg.layers[-1], cfg)
    base = seconds(lambda: solve_layers(lm, new, cfg, covs, targets))
    print(f"solve_layers unprotected: {base:.2f} s")
    # the object positions hold ~3.3 keys per fact: 1,000 facts would span all 1,536 dimensions
    sizes = (100, 1000) if args.protect == "subject" else (100, 400)
    for m in sizes:
        t = seconds(lambda m=m: solve_layers(lm, new, cfg, covs, targets, protect=Protection(tuple(others[:m]), args.protect)))
        print(f"solve_layers with {m} protected: {t:.2f} s")
        print(f"ratio protected_{m} = {t / base:.2f}  (solve_layers with {m} protected over unprotected)")
    m = sizes[-1]
    t = seconds(lambda: solve_layers(lm, new, cfg, covs, targets, protect=Protection(tuple(others[:m]), args.protect, 0.99)))
    print(f"ratio protected_{m}_energy_0.99 = {t / base:.2f}  (solve_layers with {m} protected, 0.99 of their energy held, over unprotected)")
    batch, rows, cols = bare_prompt_batch(lm, others, args.protect)
    keys = KeyReader(lm, batch.input_ids, rows, cols).read(cfg.layers[0])[:, :1000]
    k_new = keys[:, :1] * 0 + keys.mean(dim=1, keepdim=True) + 0.1 * keys[:, :1]
    r = lm.model.config.hidden_size
    import torch

    R = torch.randn(r, 1)
    svd = seconds(lambda: solve_update(k_new, R, covs[cfg.layers[0]], cfg.solve_lam, keys[:, 1:], method="svd"), 2)
    white = seconds(lambda: solve_update(k_new, R, covs[cfg.layers[0]], cfg.solve_lam, keys[:, 1:], method="whitened"), 2)
    held = seconds(lambda: solve_update(k_new, R, covs[cfg.layers[0]], cfg.solve_lam, keys[:, 1:], method="whitened", held_energy=0.99), 2)
    print(f"solve_update at 999 keys: svd {svd:.3f} s, whitened {white:.3f} s, whitened holding 0.99 of the energy {held:.3f} s")
    print(f"ratio whitened_over_svd = {white / svd:.2f}  (one layer's constrained solve, 999 protected keys)")
    print(f"ratio energy_over_exact = {held / white:.2f}  (the whitened solve holding 0.99 of the keys' energy over the exact one)")


if __name__ == "__main__":
    main()
