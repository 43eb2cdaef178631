"""First run vs repeat: how much sooner a run reaches its first training step with a warm cache.

For each workload, a fresh Python process imports normlab and runs one training step
(``steps=1``, no report; the step-0 and step-1 evaluations included), once with an empty
persistent compilation cache ("cold") and once more with the cache that run filled ("warm").
Cold and warm alternate over the repeats (a new empty cache each cold run); medians of the wall
time from process start to the end of that one-step run, and of the hits ``run.json`` records.

Usage: ``PYTHONPATH=src .venv/bin/python bench/compile_cache.py [--repeats 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from timing import print_table  # noqa: E402

WORKLOADS = {
    "quickstart": ["quickstart", "steps=1", "report=false"],
    "narrow vgg pair (width 1/8, batch 128)": [
        "quickstart", "dataset=synthetic_cifar", "model=vgg", "width=0.125", "batch_size=128",
        "optimizer=momentum", "lr=0.05", "steps=1", "report=false"],
}

CHILD = """
import json, sys, time
start = time.perf_counter()
from normlab.experiments import apply_overrides, get_preset, run_experiment
preset, *overrides = sys.argv[1:-1]
result = run_experiment(apply_overrides(get_preset(preset).config, overrides), out=sys.argv[-1], quiet=True)
info = json.loads((result.path / "run.json").read_text())
print(json.dumps({"seconds": time.perf_counter() - start, "cache": info["compile_cache"]}))
"""


def one_run(args: list[str], cache: str, out: str) -> dict:
    env = dict(os.environ, NORMLAB_COMPILE_CACHE=cache)
    done = subprocess.run([sys.executable, "-c", CHILD, *args, out], env=env, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for name, overrides in WORKLOADS.items():
        cold, warm, hits = [], [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                cache, out = str(Path(tmp) / "cache"), str(Path(tmp) / "runs")
                first = one_run(overrides, cache, out)
                second = one_run(overrides, cache, out)
            cold.append(first["seconds"])
            warm.append(second["seconds"])
            hits.append(f"{second['cache']['hits']}/{second['cache']['hits'] + second['cache']['misses']}")
            print(f"  {name}: cold {first['seconds']:.1f} s, warm {second['seconds']:.1f} s, "
                  f"warm hits {hits[-1]}", flush=True)
        c, w = statistics.median(cold), statistics.median(warm)
        rows.append((name, f"{c:.1f}", f"{w:.1f}", f"{c / w:.2f}x", ", ".join(hits)))
    print_table("process start to first training step done (s, medians): empty vs warm cache", rows,
                ("workload", "cold s", "warm s", "sooner", "warm hits/requests"))


if __name__ == "__main__":
    main()
