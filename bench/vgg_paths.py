"""Whole-network conv path: VGG forward+backward with the chosen ("auto") conv path vs XLA's.

For each width, builds the BN VGG twice from one seed, once with ``conv_path="xla"``
(``lax.conv_general_dilated`` everywhere) and once with ``conv_path="auto"`` (normlab's measured
per-shape rule, see ``normlab/models/conv.py``), and times one jitted loss+gradient call on a
CIFAR-shaped batch, the two interleaved, medians over repeats. ``speed-up = xla / auto``.

Usage: ``.venv/bin/python bench/vgg_paths.py [--widths 0.125,1] [--batch 128] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, str(Path(__file__).parent))
from timing import interleaved_medians, print_table  # noqa: E402

from normlab.models import build_model  # noqa: E402
from normlab.train import gradient, make_network, make_optimizer  # noqa: E402


def loss_and_grad_fn(width: float, conv_path: str):
    model = build_model("vgg", input_shape=(32, 32, 3), num_classes=10, norm="batch", width=width,
                        conv_path=conv_path, rngs=nnx.Rngs(params=0, dropout=1, noise=2))
    tx, schedule = make_optimizer("sgd", 0.1, total_steps=1)
    spec, state = make_network(conv_path, model, tx, schedule)
    step = jax.jit(lambda params, rest, x, y: gradient(spec, params, rest, x, y))
    return lambda x, y: step(state.params, state.rest, x, y)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="0.125,1")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(args.batch, 32, 32, 3)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, args.batch), jnp.int32)
    rows = []
    for width in (float(w) for w in args.widths.split(",")):
        xla, auto = loss_and_grad_fn(width, "xla"), loss_and_grad_fn(width, "auto")
        medians = interleaved_medians({"xla": lambda: xla(x, y), "auto": lambda: auto(x, y)}, repeats=args.repeats)
        rows.append((f"vgg+BN width {width:g}, batch {args.batch}", f"{1000 * medians['xla']:.0f}",
                     f"{1000 * medians['auto']:.0f}", f"{medians['xla'] / medians['auto']:.2f}x"))
    print(f"backend {jax.default_backend()}")
    print_table("VGG forward+backward (ms, medians of interleaved repeats)", rows,
                ("workload", "xla ms", "auto ms", "speed-up"))


if __name__ == "__main__":
    main()
