"""Progress of long commands on stderr: rich bars on a terminal, plain lines elsewhere.

``progress_bars()`` yields a ``ProgressFn`` (``progress(description, done, total)``). When stderr
is a terminal it draws one rich bar per description. When it is not (a pipe, a file, CI), rich
would draw nothing until the command ends, so each step is written as one plain line instead,
flushed at once::

    inject 3/17 (21 s)
    sleep 1/6 (95 s)

A line is written when a description's ``done`` count changes; repeated calls with the same
count write nothing. stdout is never touched, so ``--format json`` stays one document.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from memlog.progress import ProgressFn, no_progress


class PlainProgress:
    """A ``ProgressFn`` writing ``description done/total (elapsed s)`` lines to ``stream``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started = time.monotonic()
        self.shown: dict[str, int] = {}

    def __call__(self, description: str, done: int, total: int) -> None:
        if self.shown.get(description) == done:
            return
        self.shown[description] = done
        self.stream.write(f"{description} {done}/{total} ({time.monotonic() - self.started:.0f} s)\n")
        self.stream.flush()


@contextmanager
def _rich_bars(stream: TextIO) -> Iterator[ProgressFn]:
    bars = Progress(
        TextColumn("[bold]{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(file=stream),
        transient=False,
    )
    tasks: dict[str, int] = {}

    def update(description: str, done: int, total: int) -> None:
        if description not in tasks:
            tasks[description] = bars.add_task(description, total=total)
        bars.update(tasks[description], completed=done, total=total)

    with bars:
        yield update


@contextmanager
def progress_bars(enabled: bool = True, stream: TextIO | None = None) -> Iterator[ProgressFn]:
    """A ``progress(description, done, total)`` callback for stderr (or ``stream``): rich bars on a
    terminal, one plain line per step otherwise; ``no_progress`` when not ``enabled``."""
    stream = stream if stream is not None else sys.stderr
    if not enabled:
        yield no_progress
    elif stream.isatty():
        with _rich_bars(stream) as update:
            yield update
    else:
        yield PlainProgress(stream)
