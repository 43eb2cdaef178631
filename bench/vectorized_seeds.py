"""Seeds in one compiled step: 8 seeds of the quickstart pair vectorized vs 8 runs one after another.

1. end to end: ``run_vectorized`` on the 8 members' configs (seeds 0-7, as ``normlab sweep
   quickstart --seeds 0-7`` makes them) against ``run_experiment`` on the same 8 configs one after
   another: the same total training steps, evaluations, probes, checkpoints and run directories
   (no reports). Vectorized and one-after-another alternate within each repeat, in this process,
   with one throw-away persistent compilation cache that a warm-up round fills first (so both sides
   load their compiled programs from it, as a user's second sweep would); medians of the wall
   time, shown as member-steps per second.
2. the compiled step alone: the 8 members' stacked states stepped by the vmapped group step
   against each member's state stepped by its own group step (``group_step=isolated``, the
   default), no probes, one fixed batch; interleaved repeats, medians.

Both print the throughput ratio (target: at least 3x) and, for (1), how far the vectorized
members' metrics are from the one-after-another runs (float-rounding identical, not
bit-identical: see ``normlab.experiments.vectorized``).

3. why conv nets are refused: a 3x3 convolution's forward and backward pass (narrow-VGG shapes,
   batch 32) vmapped over 8 weight variants against 8 separate calls of one compiled convolution.

Usage: ``PYTHONPATH=src .venv/bin/python bench/vectorized_seeds.py [--steps 440] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from timing import interleaved_medians, print_table  # noqa: E402

from normlab.experiments import apply_overrides, get_preset, run_experiment  # noqa: E402
from normlab.experiments.build import build_group, load_config_dataset  # noqa: E402
from normlab.experiments.compiled import make_group_step  # noqa: E402
from normlab.experiments.vectorized import make_member_step, run_vectorized  # noqa: E402
from normlab.store import load_run  # noqa: E402

SEEDS = tuple(range(8))


def member_configs(steps: int):
    """The sweep members of ``normlab sweep quickstart --seeds 0-7`` (``steps`` each, no report)."""
    base = apply_overrides(get_preset("quickstart").config, [f"steps={steps}", "report=false"])
    return [replace(base, seed=seed, data_seed=seed) for seed in SEEDS]


def largest_differences(vectorized_dirs, alone_dirs) -> dict[str, float]:
    """Max |vectorized - alone| over every member, row and network, per metric column."""
    worst: dict[str, float] = {}
    for mine, theirs in zip(vectorized_dirs, alone_dirs):
        a, b = load_run(mine).metrics, load_run(theirs).metrics
        assert a[["step", "network", "kind"]].equals(b[["step", "network", "kind"]]), "rows differ"
        for column in ("loss", "accuracy", "test_loss", "test_accuracy"):
            difference = np.nanmax(np.abs(a[column].to_numpy(float) - b[column].to_numpy(float)))
            worst[column] = max(worst.get(column, 0.0), float(difference))
    return worst


def bench_end_to_end(steps: int, repeats: int, root: Path):
    configs = member_configs(steps)
    rounds = {"vectorized": 0, "alone": 0}
    kept: dict[str, list[Path]] = {}

    def vectorized():
        rounds["vectorized"] += 1
        dirs = [root / f"v{rounds['vectorized']}" / f"seed{seed}" for seed in SEEDS]
        run_vectorized(configs, dirs, quiet=True)
        keep("vectorized", dirs)

    def alone():
        rounds["alone"] += 1
        dirs = [root / f"a{rounds['alone']}" / f"seed{seed}" for seed in SEEDS]
        for config, directory in zip(configs, dirs):
            run_experiment(config, run_dir=directory, quiet=True)
        keep("alone", dirs)

    def keep(name, dirs):  # the first round's directories, for the comparison; the rest go
        if name not in kept:
            kept[name] = dirs
        else:
            shutil.rmtree(dirs[0].parent)

    medians = interleaved_medians({"vectorized": vectorized, "alone": alone}, repeats=repeats)
    return medians, largest_differences(kept["vectorized"], kept["alone"])


def bench_step(repeats: int, steps_per_sample: int):
    configs = member_configs(1)
    dataset = load_config_dataset(configs[0])
    groups = [build_group(config, dataset) for config in configs]
    specs = groups[0][0]
    x = jnp.asarray(dataset.x_train[:32])
    y = jnp.asarray(dataset.y_train[:32])
    xs, ys = jnp.stack([x] * len(SEEDS)), jnp.stack([y] * len(SEEDS))
    step_index = jnp.asarray(0, jnp.int32)
    member_step = make_member_step(specs, (), fused=False, shared_batch=False)
    alone_step = make_group_step(specs, ())  # one compiled step for every member: the best case
    box = {
        "vectorized": jax.tree.map(lambda *leaves: jnp.stack(leaves), *[states for _, states in groups]),
        "alone": [states for _, states in groups],
    }
    no_setups = tuple({} for _ in specs)  # no probes: nothing kept from step 0
    lrs = jnp.asarray([config.lr for config in configs], jnp.float32)

    def vectorized():
        states = box["vectorized"]
        for _ in range(steps_per_sample):
            states, metrics, _ = member_step(states, xs, ys, step_index, no_setups, lrs)
        box["vectorized"] = states
        return metrics

    def alone():
        for k in range(len(SEEDS)):
            states = box["alone"][k]
            for _ in range(steps_per_sample):
                states, metrics, _ = alone_step(states, x, y, step_index, no_setups)
            box["alone"][k] = states
        return metrics

    return interleaved_medians({"vectorized": vectorized, "alone": alone}, repeats=repeats)


def bench_conv(repeats: int):
    """Seconds of the vmapped convolution gradient over the members vs the members one by one."""
    rng = np.random.default_rng(0)

    def loss(kernel, x):
        y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.sum(y**2)

    gradient = jax.grad(loss)
    vmapped, single = jax.jit(jax.vmap(gradient)), jax.jit(gradient)
    rows = []
    for size, channels in ((32, 16), (16, 32), (8, 64)):
        x = jnp.asarray(rng.standard_normal((len(SEEDS), 32, size, size, channels)), jnp.float32)
        kernel = jnp.asarray(rng.standard_normal((len(SEEDS), 3, 3, channels, channels)), jnp.float32)
        medians = interleaved_medians({
            "vectorized": lambda: vmapped(kernel, x),
            "alone": lambda: [single(kernel[k], x[k]) for k in range(len(SEEDS))],
        }, repeats=repeats)
        rows.append((f"{size}x{size}x{channels} -> {channels}", f"{1e3 * medians['vectorized']:.1f}",
                     f"{1e3 * medians['alone']:.1f}", f"{medians['vectorized'] / medians['alone']:.2f}x"))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=440, help="training steps per member (quickstart: 440)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--step-repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"backend {jax.default_backend()}, {jax.device_count()} device(s), load average "
          f"{os.getloadavg()[0]:.1f}, {len(SEEDS)} members of the quickstart pair")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["NORMLAB_COMPILE_CACHE"] = str(Path(tmp) / "cache")
        began = time.perf_counter()
        medians, worst = bench_end_to_end(args.steps, args.repeats, Path(tmp) / "runs")
        total = len(SEEDS) * args.steps
        rows = [(f"{len(SEEDS)} members x {args.steps} steps, end to end (no reports)",
                 f"{total / medians['vectorized']:.0f}", f"{total / medians['alone']:.0f}",
                 f"{medians['alone'] / medians['vectorized']:.2f}x",
                 f"{medians['vectorized']:.1f} / {medians['alone']:.1f}")]
        step_medians = bench_step(args.step_repeats, 50)
        rows.append((f"compiled step alone ({len(SEEDS)} members, batch 32, no probes)",
                     f"{len(SEEDS) * 50 / step_medians['vectorized']:.0f}",
                     f"{len(SEEDS) * 50 / step_medians['alone']:.0f}",
                     f"{step_medians['alone'] / step_medians['vectorized']:.2f}x",
                     f"{step_medians['vectorized']:.2f} / {step_medians['alone']:.2f}"))
        print_table("seeds in one compiled step (member-steps/s, medians of interleaved repeats)", rows,
                    ("workload", "vectorized", "one after another", "speed-up (target 3x)", "seconds v / a"))
        print_table("vectorized members vs the same runs one after another (largest |difference|)",
                    [(column, f"{value:.2g}") for column, value in worst.items()], ("metric", "max |difference|"))
        print_table(f"3x3 conv forward+backward, batch 32, {len(SEEDS)} weight variants (ms, medians)",
                    bench_conv(args.step_repeats),
                    ("conv", "vmapped", f"{len(SEEDS)} separate calls", "vmapped slower by"))
        print(f"\n({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
