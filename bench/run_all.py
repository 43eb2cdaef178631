"""Run every benchmark in one go and print their tables (ratios measured side by side).

Each benchmark runs in its own process, one after the other, so they do not share caches or
compete for the two cores. Usage: ``make bench`` or ``.venv/bin/python bench/run_all.py [--quick]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent

BENCHMARKS = [
    (
        "conv paths per conv shape: im2col vs lax.conv_general_dilated, forward+backward",
        "conv_paths.py",
        [],
        ["--reps", "3"],
    ),
    ("VGG forward+backward, chosen conv path vs lax.conv_general_dilated", "vgg_paths.py", [], ["--repeats", "2"]),
    ("the first-layer conv rule in the whole train step", "first_layer_conv.py", [],
     ["--repeats", "3", "--rounds", "1"]),
    ("paired step, quickstart end to end, peak memory", "paired.py", [], ["--repeats", "3"]),
    (
        "probe bundle vs naive and seed-style references; probing overhead",
        "probes.py",
        [],
        ["--reps", "3", "--blocks", "2"],
    ),
    ("first-step compile of the narrow VGG pair", "compile_vgg.py", [], []),
    ("train step against PyTorch eager (skipped without torch)", "torch_compare.py", [], ["--repeats", "3"]),
    ("where the narrow VGG step's time goes, piece by piece, vs PyTorch", "vgg_profile.py", [],
     ["--repeats", "3"]),
    ("first run vs repeat with the persistent compilation cache", "compile_cache.py", [], ["--repeats", "1"]),
    ("probing overhead under probe_budget", "probe_budget.py", [], ["--steps", "120", "--repeats", "2"]),
    ("8 seeds in one vmapped step vs 8 runs one after another", "vectorized_seeds.py", [],
     ["--steps", "110", "--repeats", "1", "--step-repeats", "3"]),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (noisier ratios)")
    args = parser.parse_args()
    failures = 0
    for title, script, full, quick in BENCHMARKS:
        path = HERE / script
        if not path.exists():
            print(f"\n=== {title}: {script} missing, skipped")
            continue
        print(f"\n=== {title} ({script})", flush=True)
        start = time.perf_counter()
        result = subprocess.run([sys.executable, str(path), *(quick if args.quick else full)])
        failures += result.returncode != 0
        print(f"--- {script}: {time.perf_counter() - start:.0f} s, exit {result.returncode}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
