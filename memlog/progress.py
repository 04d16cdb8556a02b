"""The progress callback types shared by the engine, the experiments and the CLI.

``ProgressFn(description, done, total)`` reports named steps of a long command ("inject",
"sleep", "covariance"); ``StepFn(done, total)`` reports the steps of one computation (the
layers of a MEMIT edit, the batches of a covariance). ``no_progress`` shows nothing.
"""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[str, int, int], None]
StepFn = Callable[[int, int], None]


def no_progress(description: str, done: int, total: int) -> None:
    """A ``ProgressFn`` that shows nothing."""
    return None
