"""Check that an experiment re-executes bit for bit on this machine, and that its log replays exactly.

Runs ``memlog experiment phase-ab`` twice, each in its own process, into two fresh
stores; compares the two event streams with timestamps and durations removed; then
replays the first store at every cycle with ``verify`` (the weights rebuilt from the log,
every recorded audit recomputed on them). Prints a summary, writes ``summary.json`` in
the work directory and exits 0 only if both checks pass.

    .venv/bin/python scripts/check_determinism.py --facts 6 --second-wave 2 --mode copy --workdir /tmp/memlog-det
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--facts", type=int, default=6)
    p.add_argument("--second-wave", type=int, default=2)
    p.add_argument("--mode", default="in-place", choices=["in-place", "copy"])
    p.add_argument("--cap", type=int, default=50)
    p.add_argument("--max-cycles", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model", default="embedded")
    p.add_argument("--layers", default=None)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/memlog-determinism"))
    return p.parse_args()


def run_experiment(args, store: Path) -> tuple[dict, float]:
    """One ``memlog experiment phase-ab`` in its own process; returns (its JSON document, seconds)."""
    cmd = [
        str(ROOT / ".venv" / "bin" / "memlog"), "experiment", "phase-ab",
        "--facts", str(args.facts), "--second-wave", str(args.second_wave),
        "--refresh-mode", args.mode, "--cap", str(args.cap), "--max-cycles", str(args.max_cycles),
        "--seed", str(args.seed), "--threads", str(args.threads), "--model", args.model,
        "--store", str(store), "--format", "json",
    ] + (["--layers", args.layers] if args.layers else [])
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(proc.stdout), time.perf_counter() - start


def events_of(store: Path) -> list[dict]:
    from memlog.experiments.checks import comparable_events
    from memlog.store.store import Store

    st = Store.open(store, writable=False)
    try:
        return comparable_events(st.log.read())
    finally:
        st.close()


def replay_all(store: Path, threads: int) -> list[dict]:
    import torch

    from memlog.engine.open import open_memory
    from memlog.experiments.checks import verify_cycles

    torch.set_num_threads(threads)
    mem = open_memory(store, writable=False)
    try:
        return verify_cycles(mem)
    finally:
        mem.close()


def main() -> int:
    args = parse_args()
    from memlog.experiments.checks import first_difference

    if args.workdir.exists():
        shutil.rmtree(args.workdir)
    args.workdir.mkdir(parents=True)
    doc1, s1 = run_experiment(args, args.workdir / "run1")
    doc2, s2 = run_experiment(args, args.workdir / "run2")
    ev1, ev2 = events_of(args.workdir / "run1"), events_of(args.workdir / "run2")
    difference = first_difference(ev1, ev2)
    replays = replay_all(args.workdir / "run1", args.threads)
    ok = difference is None and all(r["verified"] is True and r["weights_match"] is not False for r in replays)
    summary = {
        "command": " ".join(sys.argv),
        "runs_seconds": [s1, s2],
        "events": [len(ev1), len(ev2)],
        "identical_events": difference is None,
        "first_difference": difference,
        "replay": replays,
        "recall_per_cycle": [(c["cycle"], c["recall"]) for p in doc1["phases"] for c in p["cycles"]],
        "ok": ok,
    }
    (args.workdir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"two runs: {len(ev1)} and {len(ev2)} events, {s1:.0f} s and {s2:.0f} s")
    print("event streams (timestamps and durations removed): " + ("IDENTICAL" if difference is None else f"DIFFER: {difference}"))
    for r in replays:
        print(f"replay cycle={r['cycle']} (seq {r['seq']}, audit at seq {r['audit_seq']}): verified={r['verified']} weights_match={r['weights_match']} mismatches={r['mismatches']}")
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
