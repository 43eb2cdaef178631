"""normlab's single-network train step against the same model in PyTorch eager, side by side.

Models (BN after every hidden layer, the defaults normlab builds): the Part 1 MLP
(784-256-128-64-10, batch 32, Adam), d2l's BN LeNet (28x28x1, batch 128, SGD momentum), the
VGG at width 1/8 and at full width (32x32x3, batch 128, SGD momentum). normlab: the network split
once and ``train_step`` under ``jax.jit`` with the state donated, as the runner does. PyTorch: the
same layer shapes as ``nn.Sequential`` in eager mode (conv nets in channels-last memory format,
PyTorch's faster CPU layout here), ``zero_grad / forward / backward / step``. Both stepped
alternately in one process, medians of per-call times; ``ratio = torch ms / normlab ms``
(> 1: normlab faster).

PyTorch is never a dependency of normlab. Install a CPU build by hand to run this:
``.venv/bin/pip install "torch==2.13.0+cpu" --index-url https://download.pytorch.org/whl/cpu``
(a plain ``pip install torch`` pulls the CUDA build). Without torch the script says so and exits 0.

Usage: ``PYTHONPATH=src .venv/bin/python bench/torch_compare.py [--models mlp,lenet,vgg_narrow,vgg]
[--repeats 7] [--conv-path auto]``
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
from normlab.train import make_network, make_optimizer, train_step  # noqa: E402

INSTALL_HINT = ('.venv/bin/pip install "torch==2.13.0+cpu" '
                "--index-url https://download.pytorch.org/whl/cpu")

# name -> (normlab model, width, input shape, batch, optimizer, learning rate, targets)
WORKLOADS = {
    "mlp": ("mlp", 1.0, (28, 28, 1), 32, "adam", 1e-3, "normlab faster"),
    "lenet": ("lenet", 1.0, (28, 28, 1), 128, "momentum", 0.05, "-"),
    "vgg_narrow": ("vgg", 0.125, (32, 32, 3), 128, "momentum", 0.05, "torch/normlab >= 1/1.5"),
    "vgg": ("vgg", 1.0, (32, 32, 3), 128, "momentum", 0.05, "torch/normlab >= 1"),
}


def normlab_step(model_name, width, shape, batch, optimizer, lr, conv_path, x, y):
    """A zero-argument callable running one normlab train step (state carried across calls)."""
    model = build_model(model_name, input_shape=shape, num_classes=10, norm="batch", width=width,
                        conv_path=conv_path, rngs=nnx.Rngs(params=0))
    tx, schedule = make_optimizer(optimizer, lr, total_steps=10**6)
    spec, state = make_network("batch", model, tx, schedule)
    step = jax.jit(lambda s, x, y: train_step(spec, s, x, y)[0], donate_argnums=(0,))
    box = {"state": state}

    def run():
        box["state"] = step(box["state"], x, y)
        return box["state"].params
    return run


def torch_model(torch, model_name, width, shape):
    """The same layer shapes in PyTorch (BN after each hidden layer, before the activation)."""
    nn = torch.nn
    if model_name == "mlp":
        layers, n_in = [nn.Flatten()], int(np.prod(shape))
        for n in (256, 128, 64):
            layers += [nn.Linear(n_in, n), nn.BatchNorm1d(n), nn.ReLU()]
            n_in = n
        return nn.Sequential(*layers, nn.Linear(n_in, 10))
    if model_name == "lenet":
        return nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.BatchNorm2d(6), nn.Sigmoid(), nn.AvgPool2d(2),
            nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16), nn.Sigmoid(), nn.AvgPool2d(2), nn.Flatten(),
            nn.Linear(400, 120), nn.BatchNorm1d(120), nn.Sigmoid(),
            nn.Linear(120, 84), nn.BatchNorm1d(84), nn.Sigmoid(), nn.Linear(84, 10))
    layers, c_in, size = [], shape[-1], shape[0]
    for i, c in enumerate((64, 64, 128, 128, 256, 256, 512, 512, 512, 512)):
        c_out = max(1, round(c * width))
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
        if i % 2 == 1:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        c_in = c_out
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * size * size, 96), nn.ReLU(),
                         nn.Linear(96, 96), nn.ReLU(), nn.Linear(96, 10))


def torch_step(torch, model_name, width, shape, optimizer, lr, x, y):
    model = torch_model(torch, model_name, width, shape)
    tx = torch.as_tensor(np.array(x)).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
    ty = torch.as_tensor(np.asarray(y)).long()
    if model_name != "mlp":
        model = model.to(memory_format=torch.channels_last)
        tx = tx.contiguous(memory_format=torch.channels_last)
    opt = (torch.optim.Adam(model.parameters(), lr=lr) if optimizer == "adam"
           else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9))
    loss_fn = torch.nn.CrossEntropyLoss()

    def run():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(tx), ty)
        loss.backward()
        opt.step()
        return None
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,lenet,vgg_narrow,vgg")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--conv-path", default="auto")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print(f"torch is not importable: skipped. Install a CPU build by hand: {INSTALL_HINT}")
        return 0
    print(f"jax {jax.__version__} backend {jax.default_backend()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), conv_path={args.conv_path}")
    rows = []
    rng = np.random.default_rng(0)
    for name in args.models.split(","):
        model_name, width, shape, batch, optimizer, lr, target = WORKLOADS[name]
        x = jnp.asarray(rng.normal(size=(batch, *shape)), jnp.float32)
        y = jnp.asarray(rng.integers(0, 10, batch), jnp.int32)
        # full VGG steps take seconds: fewer repeats there
        repeats = args.repeats if name != "vgg" else max(3, args.repeats // 2)
        candidates = {
            "normlab": normlab_step(model_name, width, shape, batch, optimizer, lr, args.conv_path, x, y),
            "torch": torch_step(torch, model_name, width, shape, optimizer, lr, x, y),
        }
        med = interleaved_medians(candidates, repeats=repeats, warmup=2)
        rows.append((f"{name} (batch {batch}, {optimizer})", f"{1e3 * med['normlab']:.2f}",
                     f"{1e3 * med['torch']:.2f}", f"{med['torch'] / med['normlab']:.2f}", target))
        print(f"  {rows[-1]}", flush=True)
    print_table("train step, normlab (jax.jit) vs PyTorch eager (ms, medians of interleaved repeats)",
                rows, ("workload", "normlab ms", "torch ms", "torch/normlab", "target"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
