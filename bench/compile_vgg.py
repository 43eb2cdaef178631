"""First-step compile time of the narrow VGG pair (width 1/8, batch 128, SGD momentum, with BN).

Measures, in one fresh process: building both networks, then the first call of the group step
(tracing + lowering + XLA compilation, summed from jax.monitoring events) and a second call (the
step itself), so the compile cost is shown next to what one step costs.
Usage: ``.venv/bin/python bench/compile_vgg.py [--width 0.125] [--conv-path auto]``
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from normlab.data import Dataset
from normlab.experiments import apply_overrides, get_preset
from normlab.experiments.runner import build_group, make_group_step
from normlab.train.compile_time import CompileTimer


def fake_cifar(n: int = 256) -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, n).astype(np.int32)
    return Dataset(name="cifar10-shaped", x_train=x, y_train=y, x_test=x[:64], y_test=y[:64], num_classes=10,
                   input_shape=(32, 32, 3), task="classification", normalization="none")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--conv-path", default="auto")
    args = parser.parse_args()
    config = apply_overrides(
        get_preset("part2").config, [f"width={args.width}", f"conv_path={args.conv_path}", "steps=10"]
    )
    dataset = fake_cifar()
    start = time.perf_counter()
    with CompileTimer() as build_timer:
        specs, states = build_group(config, dataset)
        init = tuple({} for _ in states)  # no probes: nothing kept from step 0
    build_seconds = time.perf_counter() - start
    step = make_group_step(specs, ())
    x, y = jnp.asarray(dataset.x_train[:128]), jnp.asarray(dataset.y_train[:128])
    with CompileTimer() as timer:
        start = time.perf_counter()
        states, metrics, _ = step(states, x, y, jnp.asarray(0, jnp.int32), init)
        jax.block_until_ready(metrics)
        first = time.perf_counter() - start
    start = time.perf_counter()
    states, metrics, _ = step(states, x, y, jnp.asarray(1, jnp.int32), init)
    jax.block_until_ready(metrics)
    second = time.perf_counter() - start
    print(f"narrow VGG pair (width {args.width:g}, batch 128, conv path {args.conv_path}) on {jax.default_backend()}")
    print(
        f"  building both networks:      {build_seconds:6.1f} s  (of which JAX compiling {build_timer.seconds:.1f} s)"
    )
    print(f"  first group step:            {first:6.1f} s  (compile {timer.seconds:.1f} s, target < 10 s)")
    print(f"  second group step:           {second:6.2f} s")


if __name__ == "__main__":
    main()
