"""Markdown tables of experiment results beside the paper's numbers (for docs/RESULTS.md).

    python -m memlog.experiments.markdown run.json [more.json ...]

reads the JSON documents that ``memlog experiment … --format json`` printed and writes
Markdown tables: the wake trajectory beside Table 3, and per phase the per-cycle table
(Tables 4 and 6) and the perplexity summary (Table 7).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from memlog.experiments.paper import TABLE3_WAKE, TABLE6_SPIRAL, table3_row


def _f(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:+.2f}%"


def md_table(columns: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def wake_markdown(doc: dict, only_paper_rows: bool = False) -> str:
    """Table 3 side by side: measured recall/degraded/PPL per fact count, the paper's where it reports one."""
    rows = []
    for r in doc["rows"]:
        paper = table3_row(r["facts"])
        if only_paper_rows and paper is None:
            continue
        rows.append(
            [r["facts"], _f(r["recall"]), r["degraded"], r["newly_broken"], _f(r["ppl"]), f"{r['seconds']:.1f}"]
            + ([_f(paper[1]), paper[2], _f(paper[3])] if paper else ["", "", ""])
        )
    table = md_table(["facts", "recall", "degraded", "newly broken", "PPL", "inject s", "paper recall", "paper degraded", "paper PPL"], rows)
    jump = doc.get("largest_jump") or {}
    notes = (
        f"\n\nBase PPL {_f(doc['base_ppl'])}. Wake capacity (last count with recall ≥ {doc['min_recall']}): "
        f"**{doc['wake_capacity']}** (paper 8B: 13). First count below {doc['min_recall']}: {doc['first_below']}. "
        f"Tipping point (degraded rises by ≥ {doc['jump']} in one inject): **{doc['tipping_point']}** (paper 8B: 14, 1 → 6). "
        f"Largest single-inject jump: at {jump.get('facts')} facts, {jump.get('before')} → {jump.get('after')}."
    )
    return table + notes


def cycle_rows(phase: dict) -> list[list]:
    w = phase["wave"]
    rows = [["0 (post-inj.)", _f(w["recall"]), _f(w.get("recall_active")), w["degraded"], "—", "—", "—", "—", w["ledger_size"], w["active_facts"], "—", _f(w["ppl"]), "—"]]
    for c in phase["cycles"]:
        rows.append(
            [
                f"{c['phase_cycle']} (#{c['cycle']})", _f(c["recall"]), _f(c.get("recall_active")), c["degraded"], c["refreshed"], c["pruned"], c["blocked"],
                c["rolled_back"], c["ledger_size"], c["active_facts"], _f(c["ppl_before"]), _f(c["ppl_after"]), f"{c['seconds']:.0f}",
            ]
        )
    return rows


CYCLE_COLUMNS = ["cycle", "recall (all injected)", "recall (active)", "degraded (all injected)", "refreshed", "pruned", "blocked", "rolled back", "ledger", "active", "PPL before", "PPL after", "wall s"]


def phase_ab_markdown(doc: dict) -> str:
    parts = []
    for phase in doc["phases"]:
        parts.append(f"**Phase {phase['name']}** ({phase['wave']['injected']} facts injected; {phase['result']}, {phase['cycles_run']} cycle(s), first clean cycle {phase['first_clean_cycle']}, max ledger {phase['max_ledger_size']})\n")
        parts.append(md_table(CYCLE_COLUMNS, cycle_rows(phase)))
        parts.append("")
    p = doc["perplexity"]
    parts.append(
        md_table(
            ["baseline", "post-inj. A", "post-sleep A", "post-inj. B", "final", "peak", "drift post-sleep A", "drift final", "drift peak"],
            [[_f(p["baseline"]), _f(p["post_injection"]), _f(p["post_sleep_A"]), _f(p["post_injection_B"]), _f(p["final"]), _f(p["peak"]), _pct(p["drift_post_sleep_A"]), _pct(p["drift_final"]), _pct(p["drift_peak"])]],
        )
    )
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
