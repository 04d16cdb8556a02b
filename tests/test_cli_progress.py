"""Progress off a terminal: one plain, flushed line per step; rich bars only on a terminal.

The CLI check runs ``memlog init`` on a tiny random Llama saved to disk, with stderr captured (not a
terminal): the covariance batches show up as plain lines while the command runs, and stdout keeps
exactly one JSON document.
"""

from __future__ import annotations

import io
import json

from memlog.cli.app import main
from memlog.cli.progress import PlainProgress, progress_bars
from tests.conftest import make_tiny_llama


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class CountingFlushes(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushed_lines: list[int] = []

    def flush(self) -> None:
        self.flushed_lines.append(self.getvalue().count("\n"))
        super().flush()


def test_plain_lines_when_not_a_terminal():
    stream = CountingFlushes()
    with progress_bars(stream=stream) as progress:
        assert isinstance(progress, PlainProgress)
        for done in (0, 1, 1, 2):
            progress("inject", done, 2)
        progress("sleep", 0, 3)
    lines = stream.getvalue().splitlines()
    assert [line.rsplit(" (", 1)[0] for line in lines] == ["inject 0/2", "inject 1/2", "inject 2/2", "sleep 0/3"]
    assert all(line.endswith(" s)") for line in lines)
    assert stream.flushed_lines == [1, 2, 3, 4]  # each line is flushed as it is written


def test_rich_bars_on_a_terminal():
    stream = FakeTerminal()
    with progress_bars(stream=stream) as progress:
        assert not isinstance(progress, PlainProgress)
        progress("inject", 1, 2)
        progress("inject", 2, 2)
    out = stream.getvalue()
    assert "inject" in out and "2/2" in out and "inject 1/2 (" not in out


def test_disabled_writes_nothing():
    stream = io.StringIO()
    with progress_bars(False, stream=stream) as progress:
        progress("inject", 1, 2)
    assert stream.getvalue() == ""


def test_init_piped_prints_a_line_per_step(tmp_path, embedded_tokenizer, capsys, monkeypatch):
    monkeypatch.setenv("MEMLOG_CACHE", str(tmp_path / "cache"))
    model_dir = tmp_path / "tiny"
    make_tiny_llama(seed=0).save_pretrained(model_dir)
    embedded_tokenizer.save_pretrained(model_dir)
    code = main(["init", "--store", str(tmp_path / "s"), "--model", str(model_dir), "--layers", "1-2", "--format", "json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["layers"] == [1, 2]
    steps = [line for line in out.err.splitlines() if line.startswith("covariance ")]
    assert len(steps) >= 2 and steps[-1].split()[1].split("/")[0] == steps[-1].split()[1].split("/")[1], out.err
