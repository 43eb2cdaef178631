"""The first-layer part of ``conv_path=auto``'s CPU rule, measured in the whole train step.

``normlab.models.conv`` takes im2col for a conv with at most ``IM2COL_MAX_INPUT_CHANNELS`` input
channels (a network's first layer, on images). This times the train step of
``bench/torch_compare.py`` (BN, batch 128, SGD momentum) for the narrow VGG (width 1/8) and
LeNet with that limit at 0 (the rule without it: conv0 on XLA's convolution) and at its value,
interleaved in one process; ``without / with`` > 1 means the first-layer rule is faster.

Usage: ``PYTHONPATH=src .venv/bin/python bench/first_layer_conv.py [--repeats 9] [--rounds 2]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from timing import interleaved_medians, print_table  # noqa: E402
from torch_compare import normlab_step  # noqa: E402

import normlab.models.conv as conv  # noqa: E402

# name -> (model, width, input shape)
WORKLOADS = {"vgg_narrow": ("vgg", 0.125, (32, 32, 3)), "lenet": ("lenet", 1.0, (28, 28, 1))}


def with_limit(limit: int, step):
    """``step`` run (and so traced, on its first call) with the first-layer limit at ``limit``."""
    def run():
        kept = conv.IM2COL_MAX_INPUT_CHANNELS
        conv.IM2COL_MAX_INPUT_CHANNELS = limit
        try:
            return step()
        finally:
            conv.IM2COL_MAX_INPUT_CHANNELS = kept
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for name, (model, width, shape) in WORKLOADS.items():
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.normal(size=(128, *shape)), jnp.float32)
        y = jnp.asarray(rng.integers(0, 10, 128), jnp.int32)
        candidates = {
            "without": with_limit(0, normlab_step(model, width, shape, 128, "momentum", 0.05, "auto", x, y)),
            "with": with_limit(conv.IM2COL_MAX_INPUT_CHANNELS,
                               normlab_step(model, width, shape, 128, "momentum", 0.05, "auto", x, y)),
        }
        for round_ in range(args.rounds):
            medians = interleaved_medians(candidates, repeats=args.repeats)
            rows.append((name, round_ + 1, f"{1e3 * medians['without']:.1f}", f"{1e3 * medians['with']:.1f}",
                         f"{medians['without'] / medians['with']:.3f}"))
            print(f"  {rows[-1]}", flush=True)
    print_table(f"train step with conv0 on XLA (without the first-layer rule) vs on im2col (with it); medians of "
                f"{args.repeats} interleaved repeats per round", rows,
                ("workload", "round", "without ms", "with ms", "without / with"))


if __name__ == "__main__":
    main()
