"""memlog: lifelong memory stored in a language model's own MLP weights.

Facts are injected with MEMIT during *wake*, kept healthy by *sleep* (audit, revert,
null-space-constrained refresh, prune), and every operation is an immutable event in a
DuckDB log whose weight deltas live in a Zarr store. The live weights are a projection
of that log.
"""

__version__ = "0.1.0"

import importlib

# Public names loaded on first use, so that `import memlog` (and every CLI start) stays free of torch.
_LAZY = {
    "attach": "memlog.adapters.attach",
    "detach": "memlog.adapters.attach",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'memlog' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
