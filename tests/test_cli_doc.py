"""docs/CLI.md and ``--help`` agree: the same commands, and per command the same options.

The commands are read from ``memlog --help`` (and each group's own ``--help``), the options from
each command's ``--help``. In docs/CLI.md a command is a ``### `memlog …``` heading and its options
are the first cells of the option table under it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from memlog.cli.app import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "CLI.md"
HEADING = re.compile(r"^### `memlog ([a-z][a-z0-9 -]*?)(?: [A-Z][A-Z_ .]*)?`\s*$")
OPTION_ROW = re.compile(r"^\| `(--[a-z0-9-]+)`")
HELP_OPTION = re.compile(r"^│ (?:\*)?\s*(--[a-z0-9-]+)")
HELP_COMMAND = re.compile(r"^│ ([a-z][a-z0-9-]*)\s")


def _help(capsys, monkeypatch, path: list[str]) -> str:
    monkeypatch.setenv("COLUMNS", "200")
    assert main([*path, "--help"]) == 0
    return capsys.readouterr().out


def _sections(text: str) -> list[str]:
    """The panels of a rich ``--help``: the lines of each ``╭─ Title ─…╮`` box, keyed by title."""
    panels: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("╭─"):
            current = line.strip("╭─╮ ").split(" ─")[0].strip()
            panels[current] = []
        elif line.startswith("╰"):
            current = None
        elif current is not None:
            panels[current].append(line)
    return panels


def _from_help(capsys, monkeypatch, path: list[str] | None = None) -> dict[str, set[str]]:
    """{command path: its options} for every leaf command under ``path``, read from ``--help``."""
    path = path or []
    panels = _sections(_help(capsys, monkeypatch, path))
    commands = [m.group(1) for line in panels.get("Commands", []) if (m := HELP_COMMAND.match(line))]
    if commands:
        found: dict[str, set[str]] = {}
        for name in commands:
            found.update(_from_help(capsys, monkeypatch, [*path, name]))
        return found
    options = {m.group(1) for lines in panels.values() for line in lines if (m := HELP_OPTION.match(line))}
    return {" ".join(path): options - {"--help"}}


def _from_doc() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    current = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            match = HEADING.match(line)
            current = match.group(1) if match else None
            if current is not None:
                assert current not in found, f"docs/CLI.md documents `memlog {current}` twice"
                found[current] = set()
        elif current is not None and (match := OPTION_ROW.match(line)):
            found[current].add(match.group(1))
    return found


@pytest.fixture(scope="module")
def doc() -> dict[str, set[str]]:
    return _from_doc()


def test_the_doc_parser_reads_headings_and_option_rows(doc):
    assert doc["inject"] >= {"--file", "--no-audit", "--store", "--format"}
    assert doc["experiment phase-ab"] >= {"--facts", "--second-wave", "--refresh-strategy"}


def test_cli_doc_matches_help(doc, capsys, monkeypatch):
    helped = _from_help(capsys, monkeypatch)
    assert {"init", "inject", "sleep", "replay", "experiment phase-ab"} <= set(helped)
    assert all(options for options in helped.values()), [c for c, o in helped.items() if not o]
    assert sorted(helped) == sorted(doc), "commands in --help but not docs/CLI.md, or the reverse"
    for command, options in helped.items():
        assert options - doc[command] == set(), f"`memlog {command}`: options in --help missing from docs/CLI.md"
        assert doc[command] - options == set(), f"`memlog {command}`: options in docs/CLI.md that --help does not list"
