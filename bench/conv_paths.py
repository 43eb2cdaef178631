"""Time the conv paths (XLA, im2col, shifted, oneDNN) on every VGG conv shape, side by side.

Forward + backward (gradients w.r.t. input and kernel) of one stride-1 3x3 SAME convolution,
jitted, at batch B on the spatial size each VGG conv sees for a 32x32 input, for width 1 and 1/8
(plus LeNet's two 5x5 convs). Paths are interleaved within each repetition so that machine noise
hits all alike; medians are reported. ``ratio = xla / im2col`` (> 1: im2col faster); with the
``normlab[onednn]`` extra also ``onednn ms`` and ``old/onednn``: the time of the path the rule
picks without oneDNN over oneDNN's (> 1: oneDNN faster), and ``auto``, the path the rule picks now.

Usage: ``PYTHONPATH=src .venv/bin/python bench/conv_paths.py [--batch 128] [--reps 5]
[--widths 1,0.125]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).parent))
from timing import interleaved_medians  # noqa: E402

from normlab.models import onednn  # noqa: E402
from normlab.models.conv import (  # noqa: E402
    conv2d_im2col,
    conv2d_shifted,
    conv2d_xla,
    explicit_padding,
    resolve_conv_path,
    use_im2col_on_cpu,
)

VGG_WIDTHS = (64, 64, 128, 128, 256, 256, 512, 512, 512, 512)
POOL_AFTER = (1, 3, 5, 7, 9)


def vgg_conv_shapes(width: float, size: int = 32):
    """(name, spatial size, C_in, C_out, kernel, padding) for each VGG conv at ``width``."""
    shapes, c_in = [], 3
    for i, c in enumerate(VGG_WIDTHS):
        c_out = max(1, round(c * width))
        shapes.append((f"vgg w={width:g} conv{i}", size, c_in, c_out, 3, "SAME"))
        c_in = c_out
        if i in POOL_AFTER:
            size //= 2
    return shapes


def lenet_conv_shapes():
    return [("lenet conv0", 28, 1, 6, 5, 2), ("lenet conv1", 14, 6, 16, 5, 0)]


def make_step(fn, pads):
    """Jitted forward+backward: gradients of <conv(x, k), g> w.r.t. x and k."""
    def loss(x, k, g):
        return jnp.vdot(fn(x, k, pads), g)
    return jax.jit(jax.grad(loss, argnums=(0, 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--widths", default="1,0.125")
    args = parser.parse_args()

    shapes = [s for w in args.widths.split(",") for s in vgg_conv_shapes(float(w))]
    shapes += lenet_conv_shapes()
    key = jax.random.key(0)
    with_onednn = onednn.available()
    print(f"backend {jax.default_backend()}, batch {args.batch}, medians of {args.reps}, "
          f"onednn: {'yes' if with_onednn else onednn.unavailable_reason()}")
    print(f"{'conv':24s} {'HxW':>5s} {'Cin':>4s} {'Cout':>4s} {'patch':>5s} "
          f"{'xla ms':>9s} {'im2col ms':>9s} {'shift ms':>9s} {'ratio':>6s} {'xla/shift':>9s}"
          + (f" {'onednn ms':>9s} {'old/onednn':>10s} {'auto':>7s}" if with_onednn else ""))
    for name, size, c_in, c_out, k, padding in shapes:
        kx, kk, kg = jax.random.split(jax.random.fold_in(key, hash(name) % 2**31), 3)
        pads = explicit_padding(padding, (k, k))
        x = jax.random.normal(kx, (args.batch, size, size, c_in))
        kernel = jax.random.normal(kk, (k, k, c_in, c_out)) * 0.1
        h_out = size + sum(pads[0]) - k + 1
        g = jax.random.normal(kg, (args.batch, h_out, h_out, c_out))
        steps = {"xla": make_step(conv2d_xla, pads), "im2col": make_step(conv2d_im2col, pads),
                 "shifted": make_step(conv2d_shifted, pads)}
        if with_onednn:
            steps["onednn"] = make_step(onednn.conv2d_onednn, pads)
        # the first (warm-up) call compiles, outside the timed repeats
        med = interleaved_medians({p: (lambda step=step: step(x, kernel, g)) for p, step in steps.items()},
                                  repeats=args.reps)
        med = {p: seconds * 1e3 for p, seconds in med.items()}
        extra = ""
        if with_onednn:
            old = "im2col" if use_im2col_on_cpu(x.shape, kernel.shape) else "xla"
            extra = (f" {med['onednn']:>9.2f} {med[old] / med['onednn']:>10.2f} "
                     f"{resolve_conv_path('auto', x.shape, kernel.shape):>7s}")
        print(f"{name:24s} {size:>3d}^2 {c_in:>4d} {c_out:>4d} {k * k * c_in:>5d} "
              f"{med['xla']:>9.2f} {med['im2col']:>9.2f} {med['shifted']:>9.2f} "
              f"{med['xla'] / med['im2col']:>6.2f} {med['xla'] / med['shifted']:>9.2f}{extra}",
              flush=True)


if __name__ == "__main__":
    main()
