"""probe_budget: the overhead a budgeted probe schedule really costs, against the budget.

For each workload and budget: build the group as the runner does, let ``choose_probe_schedule``
time the probes and pick their steps for a run of ``--steps`` steps, then time that many steps
with the chosen schedule ("probed") and without probes ("plain"), the two loops alternating over
the repeats. ``overhead = probed / plain - 1`` of the medians (the target: the budget +-3
points), and beside it of the fastest loops (what preemption on a loaded machine leaves least
touched). "plain spread" is (slowest - fastest) / median of the plain loops: where it is
several points, so is the uncertainty of the overhead. Same batch every step (the schedule, not
the data, is what is measured). The load average is printed at the start and the end: above the
core count the figures are noise.

Usage: ``PYTHONPATH=src .venv/bin/python bench/probe_budget.py [--models mlp,vgg,dln]
[--budgets 0.05,0.2] [--steps 300] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).parent))
from timing import interleaved_times, print_table  # noqa: E402

from normlab.data import load_dataset  # noqa: E402
from normlab.experiments import apply_overrides, get_preset  # noqa: E402
from normlab.experiments.runner import (  # noqa: E402
    active_probes,
    build_group,
    build_probes,
    choose_probe_schedule,
    make_group_step,
    probe_setups,
    scheduled_probes,
)

WORKLOADS = {
    "mlp": ("quickstart", ["dataset=synthetic", "probes=standard"]),
    "vgg": ("quickstart", ["dataset=synthetic_cifar", "model=vgg", "width=0.125", "batch_size=128",
                           "optimizer=momentum", "lr=0.05", "probes=standard"]),
    "dln": ("santurkar_dln", ["probes=standard"]),
}


def loop(config, specs, states, probes, compiled, x, y, init, steps):
    """The runner's loop without its store: the probes due at a step chosen in Python, steps
    dispatched back to back, the probe outputs read back every ``log_every`` steps."""
    box = {"states": states}

    def run():
        s = jax.tree.map(jnp.copy, box["states"])
        pending = []
        for step in range(steps):
            due = active_probes(probes, step)
            key = frozenset(p.name for p in due)
            if key not in compiled:
                compiled[key] = make_group_step(specs, due, fused=config.group_step == "fused",
                                                fast_compile=config.fast_compile)  # as the runner compiles it
            s, metrics, outputs = compiled[key](s, x, y, jnp.asarray(step, jnp.int32), init)
            pending.append((metrics, outputs if due else None))
            if (step + 1) % config.log_every == 0:
                jax.device_get(pending)
                pending.clear()
        jax.device_get(pending)
        return s
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,vgg,dln")
    parser.add_argument("--budgets", default="0.05,0.2")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at the start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)", flush=True)
    rows = []
    for name in args.models.split(","):
        preset, overrides = WORKLOADS[name]
        for budget in (float(b) for b in args.budgets.split(",")):
            config = apply_overrides(get_preset(preset).config,
                                     overrides + [f"steps={args.steps}", f"probe_budget={budget}"])
            dataset = load_dataset(config.dataset, normalize=config.input_normalization or None)
            specs, states = build_group(config, dataset)
            compiled: dict = {}
            chosen = choose_probe_schedule(config, dataset, specs, states, build_probes(config), compiled)
            probes = scheduled_probes(build_probes(config), chosen)
            n = min(config.batch_size, len(dataset.x_train)) if not config.full_batch else len(dataset.x_train)
            x, y = jnp.asarray(dataset.x_train[:n]), jnp.asarray(dataset.y_train[:n])
            init = probe_setups(probes, specs, states)
            times = interleaved_times({
                "plain": loop(config, specs, states, (), compiled, x, y, init, args.steps),
                "probed": loop(config, specs, states, probes, compiled, x, y, init, args.steps),
            }, repeats=args.repeats)
            used = statistics.median(times["probed"]) / statistics.median(times["plain"]) - 1
            fastest = min(times["probed"]) / min(times["plain"]) - 1
            counts = ", ".join(f"{p} {len(s)} x {chosen['costs'][p]:.2f}" for p, s in chosen["steps"].items())
            # The resolution: how far apart identical plain loops ran, against the 3-point target.
            spread = (max(times["plain"]) - min(times["plain"])) / statistics.median(times["plain"])
            rows.append((name, f"{budget:.0%}", f"{used:+.1%}", f"{100 * (used - budget):+.1f}",
                         "yes" if abs(used - budget) <= 0.03 else "no", f"{fastest:+.1%}", f"{spread:.1%}",
                         f"{1e3 * min(times['plain']) / args.steps:.2f}", counts))
            print(f"  {rows[-1]}", flush=True)
    print_table(f"probing overhead under probe_budget ({args.steps} steps, interleaved loops, {args.repeats} repeats; "
                f"load average at the end {os.getloadavg()[0]:.1f})",
                rows, ("model", "budget", "median", "points off", "within 3", "fastest", "plain spread",
                       "plain ms/step", "measurements x measured cost (plain steps)"))


if __name__ == "__main__":
    main()
