"""memlog: lifelong memory stored in a language model's own MLP weights.

Facts are injected with MEMIT during *wake*, kept healthy by *sleep* (audit, revert,
null-space-constrained refresh, prune), and every operation is an immutable event in a
DuckDB log whose weight deltas live in a Zarr store. The live weights are a projection
of that log.
"""

__version__ = "0.1.0"

from memlog.adapters.attach import attach, detach  # noqa: E402
