"""memlog: lifelong memory stored in a language model's own MLP weights.

Facts are injected with MEMIT during *wake*, kept healthy by *sleep* (audit, revert,
null-space-constrained refresh, prune), and every operation is an immutable event in a
DuckDB log whose weight deltas live in a Zarr store. The live weights are a projection
of that log.

The Python API::

    import memlog

    with memlog.init("my-memory") as mem:      # or memlog.open("my-memory")
        mem.inject([memlog.Fact("Aria Nakamura", "lives in", "Thessaloniki")])
        mem.sleep(until_converged=True)
        mem.recall("Aria Nakamura lives in", at="cycle=0")

The names below are loaded on first use (PEP 562), so ``import memlog.store`` and the CLI's
store-only commands start without importing torch. To export another name, add one line to
``_EXPORTS`` and one to ``__all__``.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Fact": "memlog.core.facts",
    "attach": "memlog.adapters.attach",
    "detach": "memlog.adapters.attach",
    "Memory": "memlog.engine.memory",
    "OFF": "memlog.engine.config",
    "init": "memlog.api",
    "open": "memlog.api",
}

__all__ = [
    "Fact",
    "Memory",
    "OFF",
    "attach",
    "detach",
    "init",
    "open",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'memlog' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
