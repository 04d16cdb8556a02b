"""``memlog report``: files written, an empty store, and the page rendered by headless chromium.

The browser test opens a copy of index.html (beside the figures) with a small script that,
on the window's load event, writes into the DOM how many ``img`` elements loaded with a
``naturalWidth > 0``; ``--dump-dom`` then shows the count. A negative control with one
figure removed proves the check notices a broken image. The screenshot must be a real
page (right size, many colours), not a blank one.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from matplotlib.image import imread

from memlog.analytics.figures import FIGURE_NAMES
from memlog.analytics.report import write_report
from memlog.cli.app import main
from memlog.core.pool import fact_pool
from memlog.core.probes import ProbeResult
from memlog.engine.config import EngineConfig
from tests.fakes import fake_memory

CHROMIUM = shutil.which("chromium") or (shutil.which("/usr/bin/chromium"))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMG_CHECK = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var p = document.createElement("pre");
  p.id = "imgcheck";
  p.textContent = "IMGCHECK " + ok + "/" + imgs.length;
  document.body.appendChild(p);
});
</script>
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "store"
    pool = fact_pool(12, seed=4)
    mem = fake_memory(path, EngineConfig(wake="unconstrained", cap=9, ppl_bound=None))
    # measured probe values, as a real editor gives for facts with paraphrases and neighbours
    mem.editor.probes = lambda facts, befores: [ProbeResult(0.5, 1.0 if i % 2 else 0.0, i % 3 == 0) for i, _ in enumerate(facts)]
    try:
        mem.inject(pool[:9])
        mem.sleep(until_converged=True)
        mem.inject(pool[9:])
        mem.sleep(cycles=2)
    finally:
        mem.close()
    return path


@pytest.fixture(scope="module")
def report_dir(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("report-out") / "report"
    write_report(store, out)
    return out


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_report_writes_index_and_figures(report_dir):
    index = report_dir / "index.html"
    text = index.read_text(encoding="utf-8")
    for name in FIGURE_NAMES:
        width, height = _png_size(report_dir / name)
        assert width > 300 and height > 200
        assert f'src="{name}"' in text
    assert "Sleep cycles" in text and "Facts" in text and "Wake trajectory" in text
    # self-contained: no network references, CSS inline
    assert not re.search(r"(src|href)=\"(https?:)?//", text)
    assert "<style>" in text and "<script" not in text


def test_report_tables_hold_every_cycle_and_fact(store, report_dir):
    from memlog.analytics.views import run_sql

    text = (report_dir / "index.html").read_text(encoding="utf-8")
    for fact in run_sql(store, "SELECT subject FROM facts"):
        assert fact["subject"] in text
    n_cycles = run_sql(store, "SELECT count(*) AS n FROM cycles")[0]["n"]
    cycles_table = text.split("<h2>Sleep cycles</h2>")[1].split("</table>")[0]
    assert cycles_table.count("<tr>") == n_cycles + 1  # header + one row per cycle


def test_report_shows_the_probe_measures_of_every_sleep_audit(store, report_dir):
    from memlog.analytics.views import run_sql

    text = (report_dir / "index.html").read_text(encoding="utf-8")
    audits = run_sql(store, "SELECT seq, paraphrase_recall, neighbour_unchanged, chat_recall FROM measures WHERE phase LIKE 'sleep-%' ORDER BY seq")
    n_cycles = run_sql(store, "SELECT count(*) AS n FROM cycles")[0]["n"]
    assert len(audits) == 2 * n_cycles and all(a["paraphrase_recall"] == 0.5 for a in audits)
    table = text.split("<h2>Recall by measure</h2>")[1].split("</table>")[0]
    assert table.count("<tr>") == len(audits) + 1
    head = table.split("</thead>")[0]
    assert all(c in head for c in ("exact_recall", "paraphrase_recall", "neighbour_unchanged", "chat_recall"))
    exact = run_sql(store, f"SELECT avg(CASE WHEN recalled THEN 1.0 ELSE 0.0 END) AS r FROM audits WHERE seq = {audits[0]['seq']}")[0]["r"]
    first = table.split("<tbody>")[1].split("</tr>")[0]
    assert f"<td>{exact:.4g}</td>" in first and f"<td>{audits[0]['neighbour_unchanged']:.4g}</td>" in first


def test_a_store_without_probe_measures_has_no_measures_figure(tmp_path):
    mem = fake_memory(tmp_path / "store", EngineConfig(wake="unconstrained", ppl_bound=None))
    mem.inject(fact_pool(3, seed=1))
    mem.sleep(cycles=1)
    mem.close()
    result = write_report(tmp_path / "store", tmp_path / "out")
    assert not any(f.endswith("measures.png") for f in result["figures"]) and "Recall by measure" not in (tmp_path / "out" / "index.html").read_text()


def test_empty_store_gets_a_nothing_yet_page(tmp_path, capsys):
    mem = fake_memory(tmp_path / "empty")
    mem.close()
    code = main(["report", "--out", str(tmp_path / "out"), "--store", str(tmp_path / "empty"), "--format", "json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)
    assert result["empty"] is True and result["figures"] == []
    text = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert "Nothing to report yet" in text
    assert not any((tmp_path / "out" / name).exists() for name in FIGURE_NAMES)


def test_rewriting_a_report_removes_stale_figures(tmp_path, report_dir):
    out = tmp_path / "again"
    shutil.copytree(report_dir, out)
    mem = fake_memory(tmp_path / "empty")
    mem.close()
    write_report(tmp_path / "empty", out)
    assert not any((out / name).exists() for name in FIGURE_NAMES)


def test_report_cli_on_a_missing_store(tmp_path, capsys):
    code = main(["report", "--out", str(tmp_path / "out"), "--store", str(tmp_path / "nowhere")])
    assert code == 1 and "no memlog store" in capsys.readouterr().err


def _chromium(args: list[str], user_dir) -> subprocess.CompletedProcess:
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync", f"--user-data-dir={user_dir}", *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _loaded_images(page, user_dir) -> tuple[int, int]:
    result = _chromium(["--virtual-time-budget=10000", "--dump-dom", page.as_uri()], user_dir)
    match = re.search(r"IMGCHECK (\d+)/(\d+)", result.stdout)
    assert match, f"no image check in the dumped DOM; chromium said: {result.stderr[-2000:]}"
    return int(match.group(1)), int(match.group(2))


def _with_check(report_dir, dest):
    shutil.copytree(report_dir, dest)
    text = (dest / "index.html").read_text(encoding="utf-8")
    (dest / "check.html").write_text(text.replace("</body>", IMG_CHECK + "</body>"), encoding="utf-8")
    return dest / "check.html"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup.sh --with-browser installs it)")
def test_headless_chromium_loads_every_plot_and_renders_the_page(report_dir, tmp_path):
    page = _with_check(report_dir, tmp_path / "page")
    ok, total = _loaded_images(page, tmp_path / "chrome-1")
    assert total == len(FIGURE_NAMES) and ok == total

    broken = _with_check(report_dir, tmp_path / "broken")
    (broken.parent / FIGURE_NAMES[0]).unlink()
    ok, total = _loaded_images(broken, tmp_path / "chrome-2")
    assert (ok, total) == (len(FIGURE_NAMES) - 1, len(FIGURE_NAMES))  # the check notices a missing plot

    shot = tmp_path / "screenshot.png"
    result = _chromium([f"--screenshot={shot}", "--window-size=1200,2000", (report_dir / "index.html").as_uri()], tmp_path / "chrome-3")
    assert shot.is_file(), result.stderr[-2000:]
    assert _png_size(shot) == (1200, 2000)
    pixels = imread(shot)[..., :3]
    colours = np.unique((pixels.reshape(-1, 3) * 255).astype(np.uint8), axis=0)
    assert len(colours) > 100  # text, plots and tables, not a blank page
    assert float(pixels.std()) > 0.05


def test_demo_flow_with_the_fake_editor(tmp_path):
    """``memlog demo``'s flow (wake until degraded, sleep, time travel, report) on a fake Memory."""
    from memlog.cli.demo_cmds import RichNarrator
    from memlog.experiments.demo import DEMO_MARKER, DemoSettings, run_demo
    from memlog.errors import UserError

    said: list = []
    create = lambda path: fake_memory(path, EngineConfig(wake="unconstrained", ppl_bound=None, max_cycles=6))  # noqa: E731
    settings = DemoSettings(max_facts=12, stop_degraded=2)
    doc = run_demo(tmp_path / "demo", settings, create, RichNarrator(said.append), lambda *_: None)
    assert doc["wake"] and doc["wake"][-1]["degraded"] >= 2 or len(doc["wake"]) == 12
    assert doc["sleep"]["cycles"] and doc["time_travel"]["verified"] is True
    travel = doc["time_travel"]
    assert travel["recall_recorded_then"] == pytest.approx(travel["recall_recomputed_then"])
    assert travel["recall_recorded_then"] == pytest.approx(doc["wake"][-1]["recall"])
    example = travel["example"]  # a fact that recovered; the event that broke it comes from replaying the log
    assert example is not None and example["broken_by"].startswith("FactInjected")
    from memlog.replay.why import why_report

    with fake_memory(tmp_path / "demo", EngineConfig(wake="unconstrained", ppl_bound=None)) as again:
        steps = why_report(again, example["fact_id"], change="degraded")["steps"]
    assert example["broken_at_seq"] == next(s["seq"] for s in steps if s["changed"])
    assert (tmp_path / "demo" / "report" / "index.html").is_file() and (tmp_path / "demo" / DEMO_MARKER).is_file()
    assert any("report" in str(s) for s in said)
    # the narration fits an 80-column terminal unfolded, cycle rows as "before→after"
    from rich.console import Console

    console = Console(width=80, record=True, color_system=None)
    for item in said:
        console.print(item)
    text = console.export_text()
    first = doc["sleep"]["cycles"][0]
    assert f"{first['recall_before']:.3f}→{first['recall']:.3f}" in text
    for header in ("degraded", "refreshed", "pruned", "then (log)", "then (replayed)"):
        assert header in text  # rich folds cells that do not fit, which would split the header
    # a second run replaces the old demo store; a directory the demo did not make is refused
    again = run_demo(tmp_path / "demo", settings, create, RichNarrator(said.append), lambda *_: None)
    assert again["wake"] == [{**row, "seconds": again["wake"][i]["seconds"]} for i, row in enumerate(doc["wake"])]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="refusing"):
        run_demo(tmp_path / "other", settings, create, RichNarrator(said.append), lambda *_: None)
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"
