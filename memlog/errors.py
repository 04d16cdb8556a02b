"""Error types shared across memlog, each mapped to a CLI exit code.

``UserError`` (exit 1) is a problem with what the user asked for; the message names the
problem and the fix. ``IntegrityError`` (exit 2) is a problem with the store itself: a
corrupted delta, a model mismatch, a locked store.
"""


class MemlogError(Exception):
    """Base class of every error memlog raises on purpose."""

    exit_code = 1


class UserError(MemlogError):
    """Bad input or a bad request; nothing was written."""

    exit_code = 1


class IntegrityError(MemlogError):
    """The store is damaged, locked, or belongs to another model."""

    exit_code = 2


class StoreLockedError(IntegrityError):
    """Another process holds the store's writer lock."""


class ModelMismatchError(IntegrityError):
    """The store was created for another base model (fingerprint differs)."""
