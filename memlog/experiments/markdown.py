"""Markdown tables of experiment results beside the paper's numbers (for docs/RESULTS.md).

    python -m memlog.experiments.markdown run.json [more.json ...]

reads the JSON documents that ``memlog experiment … --format json`` printed and writes
Markdown tables: the wake trajectory beside Table 3, and per phase the per-cycle table
(Tables 4 and 6) and the perplexity summary (Table 7). ``memlog experiment`` prints the same
tables (``wake_table``, ``phase_table``, ``perplexity_table``) with rich.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from memlog.experiments.paper import TABLE3_WAKE, TABLE6_SPIRAL, table3_row
from memlog.projections.readmodels import CYCLE_TABLE, cycle_cells, cycle_headers, cycle_values, mean_reach


def _f(value, digits: int = 3, missing: str = "—") -> str:
    return missing if value is None else f"{value:.{digits}f}"


def _pct(value, missing: str = "—") -> str:
    return missing if value is None else f"{100 * value:+.2f}%"


def md_table(columns: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# Each ``*_table`` returns (headers, rows of text cells); the CLI prints them with rich, this
# module as Markdown. ``missing`` is what a value that was not measured shows.

WAKE_HEADERS = ["facts", "recall", "degraded", "newly broken", "PPL", "new fact recalled", "inject s", "paper recall", "paper degraded", "paper PPL"]


def wake_table(doc: dict, only_paper_rows: bool = False, missing: str = "—") -> tuple[list[str], list[list]]:
    """Table 3 side by side: measured recall/degraded/PPL per fact count, the paper's where it reports one."""
    rows = []
    for r in doc["rows"]:
        paper = table3_row(r["facts"])
        if only_paper_rows and paper is None:
            continue
        rows.append(
            [r["facts"], _f(r["recall"], missing=missing), r["degraded"], r["newly_broken"], _f(r["ppl"], missing=missing), r["recalled"], f"{r['seconds']:.1f}"]
            + ([_f(paper[1]), paper[2], _f(paper[3])] if paper else ["", "", ""])
        )
    return WAKE_HEADERS, rows


def wake_notes(doc: dict) -> list[str]:
    """The thresholds of a wake-capacity run, one sentence each, beside the paper's."""
    jump = doc.get("largest_jump") or {}
    notes = [
        f"Base PPL {_f(doc['base_ppl'])}.",
        f"Wake capacity (last count with recall ≥ {doc['min_recall']}): {doc['wake_capacity']} (paper 8B: 13).",
        f"First count below {doc['min_recall']}: {doc['first_below']}.",
        f"Tipping point (degraded rises by ≥ {doc['jump']} in one inject): {doc['tipping_point']} (paper 8B: 14, degraded 1 → 6).",
    ]
    if jump:
        notes.append(f"Largest single-inject jump: at {jump.get('facts')} facts, degraded {jump.get('before')} → {jump.get('after')}.")
    return notes


def wake_markdown(doc: dict, only_paper_rows: bool = False) -> str:
    return md_table(*wake_table(doc, only_paper_rows)) + "\n\n" + " ".join(wake_notes(doc))


def phase_table(phase: dict, missing: str = "—") -> tuple[list[str], list[list]]:
    """One phase's cycles (Tables 4 and 6): the wave as row 0, then one row per sleep cycle,
    in the columns of ``memlog.projections.readmodels.CYCLE_TABLE``."""
    w = phase["wave"]
    wave = {
        "recall_after": w["recall"],
        "recall_after_active": w.get("recall_active"),
        "degraded_after": w["degraded"],
        "ledger_size": w["ledger_size"],
        "active_facts": w["active_facts"],
        "ppl_after": w["ppl"],
        "wall_seconds": w["seconds"],
    }
    rest = CYCLE_TABLE[1:]
    rows = [["0 (post-inj.)"] + cycle_cells(wave, rest, missing)]
    for c in phase["cycles"]:
        rows.append([f"{c['phase_cycle']} (#{c['cycle']})"] + cycle_cells(cycle_values(c), rest, missing))
    return cycle_headers(), rows


PERPLEXITY_HEADERS = ["baseline", "post-inj. A", "post-sleep A", "post-inj. B", "final", "peak", "drift post-sleep A", "drift final", "drift peak"]


def perplexity_table(p: dict, missing: str = "—") -> tuple[list[str], list[list]]:
    """Table 7: the perplexity summary of a phase-ab run."""
    values = [_f(p[k], missing=missing) for k in ("baseline", "post_injection", "post_sleep_A", "post_injection_B", "final", "peak")]
    drifts = [_pct(p[k], missing) for k in ("drift_post_sleep_A", "drift_final", "drift_peak")]
    return PERPLEXITY_HEADERS, [values + drifts]


CAPACITY_COLUMNS = ["wave", "facts", "active", "recall after wave", "recall after sleep", "cycles", "refreshed", "pruned", "released", "PPL after wave", "PPL after sleep", "min rank left", "reach", "max ‖ΔW‖/‖W‖", "inject s", "sleep s"]


def capacity_table(doc: dict, missing: str = "—") -> tuple[list[str], list[list]]:
    """The capacity protocol's waves: (columns, rows)."""
    rows = [
        [r["wave"], r["facts"], r["active_facts"], _f(r["recall_after_wave"], missing=missing), _f(r["recall_after_sleep"], missing=missing), r["cycles"], r["refreshed"], r["pruned"], r.get("released", 0),
         _f(r["ppl_after_wave"], missing=missing), _f(r["ppl_after_sleep"], missing=missing), min(r["rank_left"]) if r["rank_left"] else missing,
         _f(mean_reach(r.get("reach")), missing=missing), _f(max(r["delta_norm"]), 4, missing) if r["delta_norm"] else missing, f"{r['inject_seconds']:.0f}", f"{r['sleep_seconds']:.0f}"]
        for r in doc["rows"]
    ]
    return CAPACITY_COLUMNS, rows


def phase_line(phase: dict) -> str:
    return (
        f"Phase {phase['name']}: {phase['result']} after {phase['cycles_run']} cycle(s); first clean cycle "
        f"{phase['first_clean_cycle']}; final recall {_f(phase['final_recall'])}; max ledger {phase['max_ledger_size']}"
    )


def phase_ab_markdown(doc: dict) -> str:
    parts = []
    for phase in doc["phases"]:
        parts.append(f"**{phase_line(phase)}** ({phase['wave']['injected']} facts injected)\n")
        parts.append(md_table(*phase_table(phase)))
        parts.append("")
    parts.append(md_table(*perplexity_table(doc["perplexity"])))
    return "\n".join(parts)


def paper_table3() -> str:
    return md_table(["facts", "recall", "degraded", "PPL"], [[n, _f(r), d, _f(p)] for n, r, d, p in TABLE3_WAKE])


def paper_table6() -> str:
    rows = [[c if c else "0 (post-inj.)", _f(r), d, "—" if f is None else f, "—" if p is None else p] for c, r, d, f, p in TABLE6_SPIRAL]
    return md_table(["cycle", "recall", "degraded", "refreshed", "pruned"], rows)


def document_markdown(doc: dict) -> str:
    if doc["experiment"] == "wake-capacity":
        return wake_markdown(doc)
    return phase_ab_markdown(doc)


def main(argv: list[str] | None = None) -> int:
    paths = argv if argv is not None else sys.argv[1:]
    for path in paths:
        doc = json.loads(Path(path).read_text())
        print(f"### {path}\n")
        print(document_markdown(doc))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
