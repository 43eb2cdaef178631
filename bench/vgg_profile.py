"""Where the VGG train step's time goes: each piece jitted on its own, normlab vs PyTorch eager.

The VGG+BN train step (width 1/8 by default, batch 128, SGD momentum) cut into the pieces it is
made of, each timed alone at the shapes the step sees:

- per conv layer: forward (conv + bias), backward-input (the gradient w.r.t. the layer's input,
  a ``jax.vjp`` of the conv in x alone; conv0 has none, its input is the data) and
  backward-weight (w.r.t. kernel and bias);
- per conv layer: BN (batch statistics, normalize, affine) + ReLU, forward and backward;
- per pooled layer: the 2x2 max-pool, forward and backward;
- the dense head (three Dense layers and the softmax cross-entropy), forward + backward;
- the optimizer update (SGD momentum over every parameter);
- the whole train step, as ``bench/torch_compare.py`` times it.

normlab's pieces are its own functions (``normlab.models.conv.conv2d`` on the path the model
resolves, the norms' ``_maths``, ``pool_2x2``, the optax optimizer of ``make_optimizer``), each
under its own ``jax.jit``. PyTorch's are the ATen calls its autograd makes: ``conv2d`` and
``convolution_backward`` with an output mask per direction (channels-last, as in
``bench/torch_compare.py``), ``batch_norm`` + ``relu`` and ``max_pool2d`` with their backward
through ``torch.autograd.grad`` on a graph kept between calls, ``SGD.step``. Every piece of a
layer is timed interleaved with its PyTorch twin; the table shows the fastest of the repeats, not
the median: on a loaded machine preemption only ever adds time, and PyTorch's OpenMP threads
suffer far more from it than XLA's (see the README), so medians measure the load.

The sum of the pieces is not the step: inside one jit XLA fuses neighbours (the BN backward with
the bias gradient, the ReLU mask with the pool backward) and drops nothing that is needed; the
table shows both so the gap is visible.

PyTorch is never a dependency of normlab; without it only normlab's column is printed (install a
CPU build by hand, see ``bench/torch_compare.py``).

On a machine other jobs load, wall-clock times measure the load more than the work (PyTorch's
2-thread pieces were 10-100x their idle times at load average 10). Then pin the process to one
core and time CPU seconds: ``taskset -c 1 ... bench/vgg_profile.py --clock cpu`` (one thread
for XLA and PyTorch alike; the time the process waits to be scheduled is not counted).

Usage: ``PYTHONPATH=src .venv/bin/python bench/vgg_profile.py [--width 0.125] [--batch 128]
[--repeats 15] [--conv-path auto] [--clock wall|cpu]``
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, str(Path(__file__).parent))
from conv_paths import POOL_AFTER, vgg_conv_shapes  # noqa: E402
from timing import CLOCKS, interleaved_times, print_table  # noqa: E402
from torch_compare import INSTALL_HINT, WORKLOADS, normlab_step, torch_model, torch_step  # noqa: E402

from normlab.models import build_model  # noqa: E402
from normlab.models.conv import conv2d, resolve_conv_path  # noqa: E402
from normlab.models.layers import pool_2x2  # noqa: E402
from normlab.norms import _maths  # noqa: E402
from normlab.train import make_network, make_optimizer  # noqa: E402

EPS = 1e-5
LR = 0.05

Pieces = dict[str, Callable[[], object]]


# ----------------------------------------------------------------------------- normlab's pieces
def bn_relu(z, gamma, beta):
    """BN in train mode (batch statistics) then ReLU, as a BN hidden layer computes it."""
    mean, var = _maths.batch_moments(z)
    return jax.nn.relu(_maths.affine(_maths.standardize(z, mean, var, EPS), gamma, beta))


def jax_layer_pieces(i, size, c_in, c_out, batch, conv_path, key) -> Pieces:
    """Zero-argument callables for conv layer ``i``'s pieces (each its own jit)."""
    kx, kk, kg = jax.random.split(key, 3)
    x = jax.random.normal(kx, (batch, size, size, c_in))
    kernel = jax.random.normal(kk, (3, 3, c_in, c_out)) * 0.1
    bias = jnp.zeros((c_out,))
    g = jax.random.normal(kg, (batch, size, size, c_out))
    gamma, beta = jnp.ones((c_out,)), jnp.zeros((c_out,))

    def conv(x, kernel, bias):
        return conv2d(x, kernel, padding="SAME", path=conv_path) + bias

    forward = jax.jit(conv)
    backward_input = jax.jit(lambda x, k, b, g: jax.vjp(lambda x: conv(x, k, b), x)[1](g))
    backward_weight = jax.jit(lambda x, k, b, g: jax.vjp(lambda k, b: conv(x, k, b), k, b)[1](g))
    bn_forward = jax.jit(bn_relu)
    bn_backward = jax.jit(lambda z, gm, bt, g: jax.vjp(bn_relu, z, gm, bt)[1](g))
    pieces = {
        "conv fwd": lambda: forward(x, kernel, bias),
        "conv bwd-input": lambda: backward_input(x, kernel, bias, g),
        "conv bwd-weight": lambda: backward_weight(x, kernel, bias, g),
        "bn+relu fwd": lambda: bn_forward(g, gamma, beta),
        "bn+relu bwd": lambda: bn_backward(g, gamma, beta, g),
    }
    if i == 0:
        del pieces["conv bwd-input"]  # the data needs no gradient
    if i in POOL_AFTER:
        pooled = g[:, : size // 2, : size // 2, :]
        pool_forward = jax.jit(lambda a: pool_2x2(a, "max"))
        pool_backward = jax.jit(lambda a, gp: jax.vjp(lambda a: pool_2x2(a, "max"), a)[1](gp))
        pieces["maxpool fwd"] = lambda: pool_forward(g)
        pieces["maxpool bwd"] = lambda: pool_backward(g, pooled)
    return pieces


def jax_model_pieces(width, batch, conv_path) -> Pieces:
    """The dense head (forward + backward with the loss) and the optimizer update."""
    model = build_model("vgg", input_shape=(32, 32, 3), num_classes=10, norm="batch", width=width,
                        conv_path=conv_path, rngs=nnx.Rngs(params=0))
    tx, schedule = make_optimizer("momentum", LR, total_steps=10**6)
    _, state = make_network("batch", model, tx, schedule)
    head = [(layer.linear.kernel[...], layer.linear.bias[...]) for layer in model.hidden[10:]]
    head.append((model.head.kernel[...], model.head.bias[...]))
    features = jax.random.normal(jax.random.key(1), (batch, head[0][0].shape[0]))
    labels = jnp.arange(batch) % 10

    def head_loss(weights, h):
        for k, (kernel, b) in enumerate(weights):
            h = h @ kernel + b
            h = jax.nn.relu(h) if k < len(weights) - 1 else h
        return optax.softmax_cross_entropy_with_integer_labels(h, labels).mean()

    head_step = jax.jit(jax.grad(head_loss, argnums=(0, 1)))

    def update(params, opt_state, grads):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    update_step = jax.jit(update)
    grads = jax.tree.map(jnp.ones_like, state.params)
    return {
        "dense head fwd+bwd": lambda: head_step(head, features),
        "optimizer update": lambda: update_step(state.params, state.opt_state, grads),
    }


# ----------------------------------------------------------------------------- PyTorch's pieces
def torch_layer_pieces(torch, i, size, c_in, c_out, batch) -> Pieces:
    """The same pieces as the ATen calls PyTorch's autograd makes (channels-last)."""
    f = torch.nn.functional
    cl = torch.channels_last
    x = torch.randn(batch, c_in, size, size).contiguous(memory_format=cl)
    kernel = (0.1 * torch.randn(c_out, c_in, 3, 3)).contiguous(memory_format=cl)
    bias = torch.zeros(c_out)
    g = torch.randn(batch, c_out, size, size).contiguous(memory_format=cl)
    conv_backward = torch.ops.aten.convolution_backward

    def backward(mask):
        return lambda: conv_backward(g, x, kernel, [c_out], [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                                     mask)

    z = g.clone().requires_grad_(True)
    gamma, beta = torch.ones(c_out, requires_grad=True), torch.zeros(c_out, requires_grad=True)
    running_mean, running_var = torch.zeros(c_out), torch.ones(c_out)

    def bn_forward():
        return f.relu(f.batch_norm(z, running_mean, running_var, gamma, beta, training=True,
                                   momentum=0.1, eps=EPS))

    bn_out = bn_forward()
    pieces = {
        "conv fwd": lambda: f.conv2d(x, kernel, bias, padding=1),
        "conv bwd-input": backward([True, False, False]),
        "conv bwd-weight": backward([False, True, True]),
        "bn+relu fwd": bn_forward,
        "bn+relu bwd": lambda: torch.autograd.grad(bn_out, (z, gamma, beta), g, retain_graph=True),
    }
    if i == 0:
        del pieces["conv bwd-input"]
    if i in POOL_AFTER:
        a = g.clone().requires_grad_(True)
        pooled = f.max_pool2d(a, 2)
        pooled_grad = torch.randn_like(pooled)
        pieces["maxpool fwd"] = lambda: f.max_pool2d(g, 2)
        pieces["maxpool bwd"] = lambda: torch.autograd.grad(pooled, a, pooled_grad, retain_graph=True)
    return {name: _returning_none(fn) for name, fn in pieces.items()}


def torch_model_pieces(torch, width, batch) -> Pieces:
    model = torch_model(torch, "vgg", width, (32, 32, 3)).to(memory_format=torch.channels_last)
    dense = [m for m in model if isinstance(m, torch.nn.Linear)]
    head = torch.nn.Sequential(dense[0], torch.nn.ReLU(), dense[1], torch.nn.ReLU(), dense[2])
    features = torch.randn(batch, dense[0].in_features)
    labels = torch.arange(batch) % 10
    loss_fn = torch.nn.CrossEntropyLoss()

    def head_step():
        head.zero_grad(set_to_none=True)
        loss_fn(head(features), labels).backward()

    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    return {"dense head fwd+bwd": head_step, "optimizer update": _returning_none(opt.step)}


def _returning_none(fn):
    def run():
        fn()
    return run


# ----------------------------------------------------------------------------- the table
def fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1e3 * seconds:.2f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}"


def fastest(candidates: Pieces, repeats: int, clock: str) -> dict:
    """The fastest call of each candidate, the candidates timed in alternation."""
    samples = interleaved_times(candidates, repeats=repeats, warmup=2, clock=CLOCKS[clock])
    return {name: min(times) for name, times in samples.items()}


def timed(jax_pieces: Pieces, torch_pieces: Pieces | None, repeats: int, clock: str):
    """{piece: (normlab s, torch s or None)}, every normlab piece interleaved with its twin."""
    candidates = {("normlab", name): fn for name, fn in jax_pieces.items()}
    if torch_pieces is not None:
        candidates |= {("torch", name): fn for name, fn in torch_pieces.items()}
    best = fastest(candidates, repeats, clock)  # type: ignore[arg-type]
    return {name: (best[("normlab", name)], best.get(("torch", name))) for name in jax_pieces}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--conv-path", default="auto")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                        help="cpu: CPU seconds, fair only pinned to one core (taskset -c 1)")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        torch = None
        print(f"torch is not importable: normlab only. Install a CPU build by hand: {INSTALL_HINT}")
    print(f"jax {jax.__version__} backend {jax.default_backend()}"
          + (f", torch {torch.__version__} ({torch.get_num_threads()} threads)" if torch else "")
          + f"; VGG+BN width {args.width:g}, batch {args.batch}, conv_path={args.conv_path}, "
          f"{len(os.sched_getaffinity(0))} core(s), {args.clock} clock, "
          f"load average {os.getloadavg()[0]:.1f}")

    rows, totals = [], {}
    for i, (_, size, c_in, c_out, _, _) in enumerate(vgg_conv_shapes(args.width)):
        path = resolve_conv_path(args.conv_path, (args.batch, size, size, c_in), (3, 3, c_in, c_out))
        jax_pieces = jax_layer_pieces(i, size, c_in, c_out, args.batch, args.conv_path,
                                      jax.random.key(i))
        torch_pieces = torch_layer_pieces(torch, i, size, c_in, c_out, args.batch) if torch else None
        for piece, (ours, theirs) in timed(jax_pieces, torch_pieces, args.repeats, args.clock).items():
            rows.append((f"conv{i} {size}x{size} {c_in}->{c_out}", piece,
                         path if piece.startswith("conv") else "", fmt(ours), fmt(theirs),
                         ratio(ours, theirs)))
            kind = piece.split(" ")[0] + " " + piece.split(" ")[-1]
            before = totals.get(kind, (0.0, 0.0 if torch else None))
            totals[kind] = (before[0] + ours, None if theirs is None else before[1] + theirs)
        print(f"  conv{i} done", flush=True)
    model_pieces = timed(jax_model_pieces(args.width, args.batch, args.conv_path),
                         torch_model_pieces(torch, args.width, args.batch) if torch else None,
                         args.repeats, args.clock)
    for piece, (ours, theirs) in model_pieces.items():
        rows.append(("model", piece, "", fmt(ours), fmt(theirs), ratio(ours, theirs)))
        totals[piece] = (ours, theirs)
    header = ("layer", "piece", "path", "normlab ms", "torch ms", "normlab/torch")
    print_table("pieces (ms, fastest of the interleaved repeats)", rows, header)

    sum_ours = sum(t[0] for t in totals.values())
    sum_theirs = sum(t[1] for t in totals.values()) if torch else None
    model_name, width, shape, batch, optimizer, lr, _ = WORKLOADS["vgg_narrow"]
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(args.batch, *shape)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, args.batch), jnp.int32)
    steps = {"normlab": normlab_step(model_name, args.width, shape, args.batch, optimizer, lr,
                                     args.conv_path, x, y)}
    if torch:
        steps["torch"] = torch_step(torch, model_name, args.width, shape, optimizer, lr, x, y)
    step = fastest(steps, args.repeats, args.clock)
    summary = [(kind, fmt(ours), fmt(theirs), ratio(ours, theirs),
                f"{100 * ours / sum_ours:.0f}%") for kind, (ours, theirs) in totals.items()]
    summary.append(("sum of the pieces", fmt(sum_ours), fmt(sum_theirs), ratio(sum_ours, sum_theirs),
                    "100%"))
    summary.append(("whole train step", fmt(step["normlab"]), fmt(step.get("torch")),
                    ratio(step["normlab"], step.get("torch")), ""))
    print_table(f"by kind, all layers (ms; load average now {os.getloadavg()[0]:.1f})", summary,
                ("kind", "normlab ms", "torch ms", "normlab/torch", "share of normlab's sum"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
