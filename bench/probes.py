"""The Santurkar probe bundle against the obvious and the seed-notebook implementations.

Part 1 -- the bundle (ics + landscape + predictiveness + beta_smoothness, 8 step sizes) at one
step of one network (the BN twin, momentum SGD), three ways, timed side by side:

- ``normlab``: the probes' ``measure`` in one jit (per-layer ICS gradients unrolled so XLA shares
  the updated prefix; one shared gradient walk for the three step-size probes);
- ``naive``: the obvious functional code: one full forward+backward per layer and per step size,
  each a call of one separately jitted function (plus jitted helpers for the update and norms);
- ``seed``: the seed notebook's style: a deep copy of the nnx model and optimizer per layer
  (optimizer update on the copy, later layers restored), one ``nnx.jit`` call per layer, and per
  step size a deep copy, an ``nnx.jit`` perturbation and separate ``nnx.jit`` loss and gradient
  calls (its loss landscape and gradient landscape were two passes).

Each probe alone is also timed, in training steps (a jitted ``train_step`` of the same network
returning its whole new state).

Part 2 -- paired training (baseline + BN twin in one compiled group step, the runner's
``make_group_step``) with a probe bundle (``normlab.probes.BUNDLES``: standard, full) every 16 steps
against the same training with no probes: blocks of 16 steps, the first of each with probes.
From the probe step's extra cost it also prints the probe interval at which the overhead would
be 15%.

Repeats are interleaved (every variant once per round) so machine noise hits all alike; the table
shows medians. The three implementations' results are compared (max relative difference) so the
ratios compare equal work. Compile time is reported apart and excluded from the timings.

Usage: ``PYTHONPATH=src .venv/bin/python bench/probes.py [--models mlp,vgg,dln] [--reps 5]
[--blocks 3] [--vgg-batch 128]``
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, str(Path(__file__).parent))
from timing import time_call  # noqa: E402

from normlab.experiments.runner import make_group_step
from normlab.models import build_model
from normlab.probes import BUNDLES, ProbeContext, make_probe, probe_setups
from normlab.probes.ics import flat_parameters, parameter_owners, real_update
from normlab.train import gradient, make_network, make_optimizer, state_at, train_step

BUNDLE = ("ics", "landscape", "predictiveness", "beta_smoothness")
MULTIPLIERS = np.linspace(0.5, 4.0, 8)  # the probes' default grid, times lr


def setting(name: str, vgg_batch: int):
    """(build options, batch size, learning rate) of each benchmarked model."""
    if name == "mlp":
        return dict(input_shape=(28, 28, 1), num_classes=10), 32, 0.01
    if name == "vgg":
        return dict(input_shape=(32, 32, 3), num_classes=10, width=0.125), vgg_batch, 0.035
    if name == "dln":
        return dict(input_shape=(10,), num_classes=0), 1000, 1e-3  # S18 lr 1e-6 on the summed loss = 1e-3 on the mean
    raise SystemExit(f"unknown model {name!r}")


def network(name: str, norm: str, options: dict, lr: float):
    model = build_model(name, norm=norm, rngs=nnx.Rngs(params=0, noise=1, dropout=2), **options)
    tx, schedule = make_optimizer("momentum", lr, total_steps=1000)
    spec, state = make_network(norm, model, tx, schedule, task=model.task)
    return model, tx, spec, state


def batch(options: dict, size: int, regression: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(size,) + tuple(options["input_shape"])), jnp.float32)
    if regression:
        return x, jnp.asarray(rng.normal(size=(size, options["input_shape"][0])), jnp.float32)
    return x, jnp.asarray(rng.integers(0, 10, size), jnp.int32)


# ------------------------------------------------------------------------ the three bundles


def normlab_bundle(probes):
    measure = jax.jit(lambda ctx: {probe.name: probe.measure(ctx) for probe in probes})

    def run(ctx):
        out = measure(ctx)
        return (out["ics"]["l2"], out["ics"]["cosine"], out["landscape"]["loss"], out["predictiveness"]["distance"],
                out["beta_smoothness"]["beta"])

    return run


def naive_bundle(spec):
    """One full forward+backward per layer and per step size, each a separately jitted call."""
    full_gradient = jax.jit(lambda p, r, x, y: gradient(spec, p, r, x, y))
    update = jax.jit(lambda state, grads: real_update(spec, state, grads))
    move = jax.jit(lambda p, d, eta: jax.tree.map(lambda a, b: a - eta * b, p, d))
    distance = jax.jit(lambda a, b: optax.tree.norm(jax.tree.map(jnp.subtract, a, b)))
    kernel_stats = jax.jit(
        lambda g, h: (jnp.linalg.norm(g - h), jnp.vdot(g, h) / (jnp.linalg.norm(g) * jnp.linalg.norm(h)))
    )

    def run(ctx):
        state = ctx.state
        paths, current, treedef = flat_parameters(state.params)
        owners = parameter_owners(paths, spec.kernel_paths)
        _, updated, _ = flat_parameters(update(state, ctx.grads))
        l2, cosine = [], []
        for i, kernel_path in enumerate(spec.kernel_paths):
            mixed = jax.tree_util.tree_unflatten(
                treedef, [u if o is not None and o < i else c for u, c, o in zip(updated, current, owners)])
            _, shifted = full_gradient(mixed, state.rest, ctx.x, ctx.y)
            a, b = kernel_stats(state_at(ctx.grads, kernel_path), state_at(shifted, kernel_path))
            l2.append(a)
            cosine.append(b)
        losses, distances = [], []
        for eta in MULTIPLIERS * float(ctx.learning_rate):
            loss, grads = full_gradient(move(state.params, ctx.grads, eta), state.rest, ctx.x, ctx.y)
            losses.append(loss)
            distances.append(distance(ctx.grads, grads))
        beta = max(
            d / (e * optax.tree.norm(ctx.grads)) for d, e in zip(distances, MULTIPLIERS * float(ctx.learning_rate))
        )
        return jnp.stack(l2), jnp.stack(cosine), jnp.stack(losses), jnp.stack(distances), beta

    return run


def _seed_loss(model, x, y, regression):
    outputs = model(x, train=True)
    if regression:
        return jnp.sum(jnp.square(outputs - y)) / x.shape[0]  # per-sample mean, as normlab trains it
    return optax.softmax_cross_entropy_with_integer_labels(outputs, y).mean()


def seed_bundle(spec, model, tx, regression):
    """The seed notebook's way: deep copies of nnx objects and one nnx.jit call per variant."""
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def seed_gradient(m, x, y):
        return nnx.grad(lambda m: _seed_loss(m, x, y, regression))(m)

    @nnx.jit
    def seed_loss(m, x, y):
        return _seed_loss(m, x, y, regression)

    @nnx.jit
    def seed_update(m, opt, grads):
        opt.update(m, grads)

    @nnx.jit
    def seed_perturb(m, grads, eta):
        params = nnx.state(m, nnx.Param)
        nnx.update(m, jax.tree.map(lambda p, g: p - eta * g, params, grads))

    paths, _, _ = flat_parameters(nnx.state(model, nnx.Param))
    owners = parameter_owners(paths, spec.kernel_paths)

    def run(ctx):
        x, y = ctx.x, ctx.y
        grads = seed_gradient(model, x, y)
        original = nnx.state(model, nnx.Param)
        _, original_leaves, treedef = flat_parameters(original)
        l2, cosine = [], []
        for i, kernel_path in enumerate(spec.kernel_paths):
            model_copy, optimizer_copy = copy.deepcopy(model), copy.deepcopy(optimizer)
            seed_update(model_copy, optimizer_copy, grads)
            _, stepped, _ = flat_parameters(nnx.state(model_copy, nnx.Param))
            nnx.update(model_copy, jax.tree_util.tree_unflatten(
                treedef, [s if o is not None and o < i else c for s, c, o in zip(stepped, original_leaves, owners)]))
            shifted = seed_gradient(model_copy, x, y)
            g, h = state_at(grads, kernel_path), state_at(shifted, kernel_path)
            l2.append(jnp.linalg.norm(g - h))
            cosine.append(jnp.vdot(g, h) / (jnp.linalg.norm(g) * jnp.linalg.norm(h)))
        losses, distances = [], []
        lr = float(ctx.learning_rate)
        for eta in MULTIPLIERS * lr:
            landscape_copy = copy.deepcopy(model)
            seed_perturb(landscape_copy, grads, eta)
            losses.append(seed_loss(landscape_copy, x, y))
            gradient_copy = copy.deepcopy(model)
            seed_perturb(gradient_copy, grads, eta)
            moved = seed_gradient(gradient_copy, x, y)
            distances.append(optax.tree.norm(jax.tree.map(jnp.subtract, grads, moved)))
        beta = max(d / (e * optax.tree.norm(grads)) for d, e in zip(distances, MULTIPLIERS * lr))
        return jnp.stack(l2), jnp.stack(cosine), jnp.stack(losses), jnp.stack(distances), beta

    return run


def max_relative_difference(a, b) -> float:
    worst = 0.0
    for x, y in zip(a, b):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        worst = max(worst, float(np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-6))))
    return worst


def bench_bundle(name: str, reps: int, vgg_batch: int) -> dict:
    options, size, lr = setting(name, vgg_batch)
    model, tx, spec, state = network(name, "batch", options, lr)
    x, y = batch(options, size, model.task == "regression")
    loss, grads = jax.jit(lambda s: gradient(spec, s.params, s.rest, x, y))(state)
    ctx = ProbeContext(spec=spec, state=state, x=x, y=y, loss=loss, grads=grads, activations=(),
                       learning_rate=jnp.asarray(lr, jnp.float32), step=jnp.asarray(0))
    probes = tuple(make_probe(probe) for probe in BUNDLE)
    # The whole new state is returned: returning only the loss would let XLA drop the backward.
    step = jax.jit(lambda s: train_step(spec, s, x, y))
    runs = {"step": lambda: step(state), "normlab": normlab_bundle(probes), "naive": naive_bundle(spec),
            "seed": seed_bundle(spec, model, tx, model.task == "regression")}
    for probe in probes[:3]:  # each alone (beta_smoothness costs what predictiveness costs)
        alone = jax.jit(probe.measure)
        runs[probe.name] = lambda ctx, alone=alone: alone(ctx)
    results, compile_seconds = {}, {}
    for key, run in runs.items():
        start = time.perf_counter()
        results[key] = jax.block_until_ready(run() if key == "step" else run(ctx))
        compile_seconds[key] = time.perf_counter() - start
    times = {key: [] for key in runs}
    for _ in range(reps):
        for key, run in runs.items():
            times[key].append(time_call(run if key == "step" else (lambda run=run: run(ctx))))
    median = {key: statistics.median(values) for key, values in times.items()}
    return {
        "model": name, "batch": size, "layers": len(spec.kernel_paths), "median": median, "compile": compile_seconds,
        "agree_naive": max_relative_difference(results["normlab"], results["naive"]),
        "agree_seed": max_relative_difference(results["normlab"], results["seed"]),
    }


# -------------------------------------------------------------------- paired training overhead


def bench_training(name: str, blocks: int, vgg_batch: int, bundle: tuple[str, ...], every: int = 16) -> dict:
    options, size, lr = setting(name, vgg_batch)
    specs, states = [], []
    for norm in ("none", "batch"):
        _, _, spec, state = network(name, norm, options, lr)
        specs.append(spec)
        states.append(state)
    x, y = batch(options, size, name == "dln")
    probes = tuple(make_probe(probe) for probe in bundle)
    specs, init = tuple(specs), probe_setups(probes, specs, states)  # copies: the group step donates states
    plain, probed = make_group_step(specs, ()), make_group_step(specs, probes)
    states = {"plain": tuple(states), "probed": jax.tree.map(jnp.copy, tuple(states))}
    compile_seconds = {}
    for key, fn in (("plain", plain), ("probed", probed)):
        start = time.perf_counter()
        states[key] = jax.block_until_ready(fn(states[key], x, y, jnp.int32(0), init)[0])
        compile_seconds[key] = time.perf_counter() - start

    def blocks_of(key, count):
        start = time.perf_counter()
        for _ in range(count):
            for i in range(every):
                fn = probed if key == "probed" and i == 0 else plain
                states[key], metrics, outputs = fn(states[key], x, y, jnp.int32(i), init)
        jax.block_until_ready((states[key], metrics, outputs))
        return (time.perf_counter() - start) / count

    # Fast models: several consecutive blocks per timing, so each timing spans about half a second.
    inner = max(1, round(0.5 / blocks_of("plain", 1)))
    times = {"plain": [], "probed": []}
    for _ in range(blocks):
        for key in times:
            times[key].append(blocks_of(key, inner))
    median = {key: statistics.median(values) for key, values in times.items()}
    extra = median["probed"] - median["plain"]  # the probe step's cost beyond a plain step
    plain_step = median["plain"] / every
    return {"model": name, "median": median, "compile": compile_seconds,
            "overhead": median["probed"] / median["plain"] - 1.0,
            "probe_step_in_steps": extra / plain_step,
            "interval_for_15_percent": extra / (0.15 * plain_step)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,vgg,dln")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--vgg-batch", type=int, default=128)
    parser.add_argument("--bundles", default="standard,full", help="probe bundles for the training overhead")
    args = parser.parse_args()
    models = args.models.split(",")
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, {args.reps} interleaved repeats, medians")
    print("\nBundle (ics + landscape + predictiveness + beta_smoothness, K=8) at one step, BN twin:")
    header = (f"{'model':<6}{'batch':>6}{'layers':>7}{'step ms':>9}{'normlab ms':>12}{'(steps)':>8}{'naive ms':>10}"
              f"{'seed ms':>10}{'naive/normlab':>15}{'seed/normlab':>14}{'compile s':>11}{'agree':>10}")
    print(header)
    print("-" * len(header))
    singles = []
    for name in models:
        r = bench_bundle(name, args.reps, args.vgg_batch)
        m = r["median"]
        singles.append((name, {probe: m[probe] / m["step"] for probe in BUNDLE[:3]}))
        print(f"{name:<6}{r['batch']:>6}{r['layers']:>7}{1e3 * m['step']:>9.2f}{1e3 * m['normlab']:>12.1f}"
              f"{m['normlab'] / m['step']:>8.1f}{1e3 * m['naive']:>10.1f}{1e3 * m['seed']:>10.1f}"
              f"{m['naive'] / m['normlab']:>14.2f}x{m['seed'] / m['normlab']:>13.2f}x{r['compile']['normlab']:>11.1f}"
              f"{max(r['agree_naive'], r['agree_seed']):>10.1e}", flush=True)
    print("\nEach probe alone, in training steps of the same network (beta_smoothness = predictiveness;")
    print("the three step-size probes together cost what predictiveness costs: one shared walk):")
    print(f"{'model':<6}" + "".join(f"{probe:>16}" for probe in BUNDLE[:3]))
    for name, costs in singles:
        print(f"{name:<6}" + "".join(f"{costs[probe]:>16.2f}" for probe in BUNDLE[:3]))
    for bundle_name in args.bundles.split(","):
        bundle = BUNDLES[bundle_name]
        print(f"\nPaired training (none + batch, one group step), the {bundle_name!r} bundle "
              f"({'+'.join(bundle)}) every 16 steps vs no probes:")
        header = (f"{'model':<6}{'16 steps plain s':>18}{'with probes s':>15}{'overhead':>10}"
                  f"{'probe step (steps)':>20}{'15% at every':>14}{'compile s':>11}")
        print(header)
        print("-" * len(header))
        for name in models:
            r = bench_training(name, args.blocks, args.vgg_batch, bundle)
            print(f"{name:<6}{r['median']['plain']:>18.3f}{r['median']['probed']:>15.3f}{100 * r['overhead']:>9.1f}%"
                  f"{r['probe_step_in_steps']:>20.1f}{math.ceil(r['interval_for_15_percent']):>14d}"
                  f"{r['compile']['probed']:>11.1f}", flush=True)
    print("probe step (steps): the probe step's extra cost in plain paired steps; 15% at every: the probe "
          "interval at which that extra cost is 15% of training")


if __name__ == "__main__":
    main()
