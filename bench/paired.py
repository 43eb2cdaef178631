"""Paired training speed, quickstart end to end, and memory against run length.

1. paired step: steps/s of the pair stepped by one compiled function (normlab's group step)
   against the same two networks stepped by two separately jitted single-network steps, mlp on
   28x28 inputs, batch 32, Adam (the Part 1 setting); interleaved repeats, medians.
2. quickstart end to end: wall time of `run_experiment(quickstart)` and the share JAX spent
   tracing and compiling (summed from jax.monitoring events).
3. peak memory (max RSS of a fresh process) of a quickstart-sized run at 200 and at 2,000 steps:
   the run store streams to disk, so memory should not grow with the number of steps.

Usage: ``.venv/bin/python bench/paired.py [--repeats 7]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).parent))
from timing import interleaved_medians, print_table  # noqa: E402

from normlab.data import load_dataset  # noqa: E402
from normlab.experiments import apply_overrides, get_preset, run_experiment  # noqa: E402
from normlab.experiments.runner import build_group, make_group_step  # noqa: E402
from normlab.train import train_step  # noqa: E402


def bench_paired_step(repeats: int, steps_per_sample: int = 200):
    config = apply_overrides(get_preset("part1").config, ["dataset=synthetic", "batch_size=32", "steps=1000"])
    dataset = load_dataset("synthetic", image_size=28, num_train=1024)
    specs, states = build_group(config, dataset)
    x = jnp.asarray(dataset.x_train[:32])
    y = jnp.asarray(dataset.y_train[:32])
    step_index = jnp.asarray(0, jnp.int32)
    group_step = make_group_step(specs, ())
    init = tuple({} for _ in states)  # no probes: nothing kept from step 0
    singles = [jax.jit(lambda s, x, y, spec=spec: train_step(spec, s, x, y), donate_argnums=(0,)) for spec in specs]
    state_box = {"pair": build_group(config, dataset)[1], "single": list(build_group(config, dataset)[1])}

    def run_pair():
        s = state_box["pair"]
        for _ in range(steps_per_sample):
            s, metrics, _ = group_step(s, x, y, step_index, init)
        state_box["pair"] = s
        return metrics

    def run_singles():
        s = state_box["single"]
        for _ in range(steps_per_sample):
            s = [single(si, x, y)[0] for single, si in zip(singles, s)]
        state_box["single"] = s
        return s[-1].params

    medians = interleaved_medians({"pair": run_pair, "two singles": run_singles}, repeats=repeats)
    pair_rate = steps_per_sample / medians["pair"]
    single_rate = steps_per_sample / medians["two singles"]
    return [
        ("mlp+BN pair, batch 32, Adam", f"{pair_rate:.0f}", f"{single_rate:.0f}", f"{pair_rate / single_rate:.2f}x")
    ]


def bench_quickstart():
    config = replace(get_preset("quickstart").config, report=False)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = run_experiment(config, out=out, quiet=True)
        wall = time.perf_counter() - start
        info = json.loads((result.path / "run.json").read_text())
    compile_seconds = info["compile_seconds"]
    return wall, compile_seconds


_MEMORY_CHILD = """
import resource, sys, tempfile
from dataclasses import replace
from normlab.experiments import apply_overrides, get_preset, run_experiment
config = apply_overrides(get_preset("quickstart").config, ["steps=%d", "report=false"])
with tempfile.TemporaryDirectory() as out:
    run_experiment(config, out=out, quiet=True)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_memory_mib(steps: int) -> float:
    output = subprocess.run([sys.executable, "-c", _MEMORY_CHILD % steps], capture_output=True, text=True, check=True)
    return int(output.stdout.strip().splitlines()[-1]) / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"backend {jax.default_backend()}, {jax.device_count()} device(s)")
    print_table("paired step (steps/s, medians of interleaved repeats)", bench_paired_step(args.repeats),
                ("workload", "pair in one jit", "two separate jits", "speed-up"))
    wall, compile_seconds = bench_quickstart()
    print_table(
        "quickstart end to end",
        [
            (
                "normlab run (quickstart, no report)",
                f"{wall:.1f}",
                f"{compile_seconds:.1f}",
                f"{100 * compile_seconds / wall:.0f}%",
            )
        ],
        ("run", "wall s", "compile s", "compile share"),
    )
    short, long = peak_memory_mib(200), peak_memory_mib(2000)
    print_table(
        "peak memory (max RSS of a fresh process)",
        [("quickstart", f"{short:.0f}", f"{long:.0f}", f"{long / short:.2f}x")],
        ("run", "200 steps MiB", "2,000 steps MiB", "ratio"),
    )


if __name__ == "__main__":
    main()
