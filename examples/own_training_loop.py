"""normlab's probes in your own Flax NNX training loop.

A small MLP written here (not one of normlab's models), trained with and without batch norm from
one seed on the 8x8 digits, with our own jitted step; normlab measures its "cheap" probe bundle
every few steps and writes a normal run directory:

    python examples/own_training_loop.py --steps 300 --out runs
    normlab report runs/<run>            # the same report as for `normlab run`

Both usage levels are shown: ``Monitor.wrap`` around the step (the easy one) and, with
``--pure``, ``normlab.measure`` inside our own ``jax.jit``.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import normlab


class MLP(nnx.Module):
    """784 -> hidden -> hidden -> 10; batch norm before each ReLU when ``batch_norm``.

    normlab's model contract: ``__call__(x, *, train)``, ``weight_layers`` and (optional) sown
    pre-activations with their names, so the activation probe sees each hidden layer.
    """

    def __init__(self, inputs: int, hidden: int, classes: int, *, batch_norm: bool, rngs: nnx.Rngs):
        self.hidden = nnx.List([nnx.Linear(inputs, hidden, rngs=rngs), nnx.Linear(hidden, hidden, rngs=rngs)])
        self.norms = nnx.List([nnx.BatchNorm(hidden, rngs=rngs) if batch_norm else None for _ in range(2)])
        self.head = nnx.Linear(hidden, classes, rngs=rngs)
        self.activation_names = ("dense0", "dense1")

    @property
    def weight_layers(self):
        """The layers holding a ``kernel``, in forward order (normlab's probes go layer by layer)."""
        return [*self.hidden, self.head]

    def __call__(self, x, *, train: bool):
        x = x.reshape((x.shape[0], -1))
        for layer, norm in zip(self.hidden, self.norms):
            x = layer(x)
            if norm is not None:
                x = norm(x, use_running_average=not train)
            # Sow only inside nnx.capture (normlab's probes capture): outside it `sow` would keep
            # the values on the model as new state, and the model's structure would change.
            if hasattr(self, "__captures__"):
                self.sow(nnx.Intermediate, "activations", x)
            x = jax.nn.relu(x)
        return self.head(x)


@nnx.jit
def train_step(model: MLP, optimizer: nnx.Optimizer, x, y):
    """Our own step: softmax cross-entropy, one optimizer update; returns (loss, accuracy)."""

    def loss_fn(model):
        logits = model(x, train=True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

    (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    optimizer.update(model, grads)
    return loss, jnp.mean(jnp.argmax(logits, -1) == y)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--probe-every", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--out", default="runs")
    parser.add_argument("--pure", action="store_true", help="measure inside our own jax.jit (the second level)")
    args = parser.parse_args(argv)

    data = normlab.load_dataset("digits")
    inputs = int(np.prod(data.input_shape))
    tx = optax.sgd(args.lr)
    models = {name: MLP(inputs, 64, data.num_classes, batch_norm=name == "batch", rngs=nnx.Rngs(0))
              for name in ("batch", "none")}  # one seed: the same first-layer weights in both
    optimizers = {name: nnx.Optimizer(model, tx, wrt=nnx.Param) for name, model in models.items()}
    monitor = normlab.Monitor(models, tx, optimizers=optimizers, learning_rate=args.lr, probes=["cheap"],
                              probe_every=args.probe_every, out=args.out, name="own_loop",
                              settings={"dataset": "digits", "seed": 0, "lr": args.lr,
                                        "batch_size": args.batch_size, "steps": args.steps},
                              total_steps=args.steps, dataset=data)
    batches = normlab.BatchIterator(len(data.x_train), args.batch_size, seed=0)
    step = monitor.wrap(train_step)  # level 1: probes before each update, losses logged
    measure = jax.jit(lambda spec_states, x, y, s: tuple(  # level 2: normlab.measure in our jit
        normlab.measure(monitor.probes, spec, state, x, y, s, setup)
        for spec, state, setup in zip(monitor.specs, spec_states, monitor.setups)))

    with monitor:
        monitor.evaluate(data.x_test, data.y_test)  # step 0: the networks as built
        for s in range(args.steps):
            idx = batches.indices_at(s)
            x, y = jnp.asarray(data.x_train[idx]), jnp.asarray(data.y_train[idx])
            if args.pure:
                if s % args.probe_every == 0:
                    monitor.record(s, dict(zip(monitor.names, measure(monitor.states(), x, y, s))))
                for name in monitor.names:
                    loss, accuracy = train_step(models[name], optimizers[name], x, y)
                    monitor.log(s, name, loss=loss, accuracy=accuracy, lr=args.lr)
                monitor.step += 1
            else:
                step(x, y)
            if monitor.step % 100 == 0 or monitor.step == args.steps:
                monitor.evaluate(data.x_test, data.y_test)
        monitor.save_checkpoint()
    print(monitor.path)
    return str(monitor.path)


if __name__ == "__main__":
    main()
