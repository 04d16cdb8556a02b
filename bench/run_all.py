"""Run every memlog benchmark in one go and print the ratios they measured (``make bench``).

Each benchmark is its own script under ``bench/`` and runs in its own process (so one
benchmark's allocations and thread settings cannot skew the next). Their output is shown
as it comes; at the end the ``ratio …`` lines of all of them are collected into one
summary. A script that is not there yet, or that fails, is reported and the rest still run.

    python bench/run_all.py [--only NAME ...] [--skip NAME ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# (name, script, extra arguments); gpu_8b needs CUDA and is run by hand.
BENCHMARKS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("inject", "inject.py", ()),
    ("storage", "storage.py", ()),
    ("model_load", "model_load.py", ()),
    ("replay", "replay.py", ()),
    ("sleep_cycle", "sleep_cycle.py", ()),
    ("integrity", "integrity.py", ()),
    ("ingest", "ingest.py", ("--tiny", "--stored", "1,100", "--sweep", "1,8")),
)


def run_one(script: Path, extra: tuple[str, ...]) -> tuple[int, list[str], float]:
    """Run one benchmark, echoing its stdout; return (exit code, stdout lines, seconds)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(script), *extra], stdout=subprocess.PIPE, text=True, cwd=BENCH.parent)
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        lines.append(line.rstrip("\n"))
    return proc.wait(), lines, time.perf_counter() - start


def ratio_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if "ratio" in line.lower()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="Run only these benchmarks.")
    parser.add_argument("--skip", nargs="*", default=[], help="Skip these benchmarks.")
    args = parser.parse_args()
    summary: list[str] = []
    failed = []
    for name, script, extra in BENCHMARKS:
        if (args.only and name not in args.only) or name in args.skip:
            continue
        path = BENCH / script
        print(f"\n=== {name} ({script}) ===", flush=True)
        if not path.is_file():
            summary.append(f"[{name}] not run: {script} is not there yet")
            continue
        code, lines, seconds = run_one(path, extra)
        if code != 0:
            failed.append(name)
            summary.append(f"[{name}] FAILED (exit {code}) after {seconds:.0f} s")
        found = ratio_lines(lines)
        summary.extend(f"[{name}] {line.strip()}" for line in found)
        if code == 0 and not found:
            summary.append(f"[{name}] (no ratio lines; see its output above) {seconds:.0f} s")
    print("\n=== ratios, measured in this run ===")
    print("\n".join(summary))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
