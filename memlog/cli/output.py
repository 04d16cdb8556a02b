"""CLI output: one JSON document on stdout in ``--format json``, rich tables otherwise.

Progress (``memlog.cli.progress``: bars on a terminal, plain lines otherwise) and logs always go
to stderr, so stdout stays machine-readable. The consoles print text as it is: data such as a
fact's subject ``[bold]Oslo`` or ``a [/] b`` is never read as rich markup (or emoji codes).
Styling is added with ``rich.text.Text`` objects (``styled``), never by formatting data into
markup strings.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from enum import Enum
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from memlog.cli.progress import progress_bars  # noqa: F401 - the commands import it from here


class Format(str, Enum):
    text = "text"
    json = "json"


def stdout(markup: bool = False) -> Console:
    """The console for results; ``markup`` only for fixed text that holds no data."""
    return Console(file=sys.stdout, soft_wrap=True, markup=markup, emoji=False, highlight=False)


def stderr(markup: bool = False) -> Console:
    return Console(file=sys.stderr, markup=markup, emoji=False, highlight=False)


def styled(*parts: str | tuple[str, str]) -> Text:
    """Text from plain strings and ``(text, style)`` pairs, e.g. ``styled(("ok", "green"), ": done")``;
    the strings are printed literally."""
    return Text.assemble(*parts)


def _default(value: Any):
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, default=_default, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def emit(data: Any, fmt: Format, render: Callable[[Console, Any], None]) -> None:
    """Print ``data`` as JSON, or render it for people."""
    if fmt == Format.json:
        print_json(data)
    else:
        render(stdout(), data)


def table(title: str | None, columns: list[str], rows: list[list[Any]], compact: bool = False) -> Table:
    """A rich table; ``compact`` drops the outer border so wide tables fit an 80-column terminal."""
    t = Table(title=title, show_lines=False, header_style="bold", show_edge=not compact)
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*[Text("") if v is None else _fmt(v) for v in row])
    return t


def _fmt(value: Any) -> Text:
    if isinstance(value, Text):
        return value
    if isinstance(value, bool):
        return Text("yes", style="green") if value else Text("no", style="red")
    if isinstance(value, float):
        return Text(f"{value:.3f}")
    return Text(str(value))
