"""Paired training speed, quickstart end to end, and memory against run length.

1. paired step: steps/s of the pair stepped by one compiled function (``group_step=fused``)
   against the same two networks each stepped by its own compiled step (``group_step=isolated``,
   the default, which makes a network's result independent of its group): an mlp (the Part 1
   setting) and a small VGG; interleaved repeats, medians.
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
from normlab.experiments.build import build_group  # noqa: E402
from normlab.experiments.compiled import make_group_step  # noqa: E402


def _pair_rates(preset: str, settings: list[str], repeats: int, steps_per_sample: int):
    """Steps/s of the pair with the fused group step and with the isolated (default) one."""
    config = apply_overrides(get_preset(preset).config, settings)
    dataset = load_dataset(config.dataset)
    specs, _ = build_group(config, dataset)
    x = jnp.asarray(dataset.x_train[: config.batch_size])
    y = jnp.asarray(dataset.y_train[: config.batch_size])
    step_index = jnp.asarray(0, jnp.int32)
    steps = {"fused": make_group_step(specs, (), fused=True), "isolated": make_group_step(specs, ())}
    state_box = {name: build_group(config, dataset)[1] for name in steps}
    init = tuple({} for _ in specs)  # no probes: nothing kept from step 0

    def runner(name):
        def run():
            s = state_box[name]
            for _ in range(steps_per_sample):
                s, metrics, _ = steps[name](s, x, y, step_index, init)
            state_box[name] = s
            return metrics
        return run

    medians = interleaved_medians({name: runner(name) for name in steps}, repeats=repeats)
    return {name: steps_per_sample / seconds for name, seconds in medians.items()}


def bench_paired_step(repeats: int):
    workloads = [
        ("mlp+BN pair, 28x28, batch 32, Adam", "part1", ["dataset=synthetic", "batch_size=32", "steps=1000"], 200),
        ("vgg width 0.125 + BN pair, 32x32x3, batch 32", "santurkar_vgg",
         ["dataset=synthetic_cifar", "width=0.125", "batch_size=32", "steps=1000", "networks=none,batch"], 5),
    ]
    rows = []
    for label, preset, settings, steps_per_sample in workloads:
        rates = _pair_rates(preset, settings, repeats, steps_per_sample)
        rows.append((label, f"{rates['fused']:.0f}", f"{rates['isolated']:.0f}",
                     f"{rates['fused'] / rates['isolated']:.2f}x"))
    return rows


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
                ("workload", "fused (one jit)", "isolated (default)", "fused speed-up"))
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
