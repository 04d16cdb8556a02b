"""The README's Python example runs exactly as written, on the embedded model.

The code block is read from README.md and executed in a fresh directory (it creates
``my-memory`` there). Its printed lines are checked: one active fact, sleep converged, and
replay at ``cycle=1`` verified the recorded audit on the rebuilt weights.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

pytestmark = pytest.mark.real_model


def python_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 1, "the README has one Python example"
    return blocks[0]


def test_readme_example_runs_as_written(tmp_path, monkeypatch, capsys):
    code = python_example()
    assert "import memlog" in code and "memlog.init(" in code
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "1 True", lines  # one active fact; sleep converged
    assert "Thessaloniki" in "\n".join(lines[1:-1]), lines  # the completion at cycle=0 (it may span lines)
    assert lines[-1] == "True", lines  # replay at cycle=1 verified the recorded audit
    assert (tmp_path / "my-memory" / "log.duckdb").is_file()
