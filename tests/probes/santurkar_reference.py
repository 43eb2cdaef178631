"""Small models defined here (the user-model contract) and slow, obvious references.

The references share nothing with ``normlab.probes.ics`` / ``landscape`` but the model itself:
parameters are plain nested dicts copied explicitly, every gradient is one full
``jax.grad`` over all parameters (no jit), loops are Python loops, and which parameters belong
to which layer is written out by hand for each test model.
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

# ----------------------------------------------------------------------------- test models


class Block(nnx.Module):
    """A weight layer and an optional flax BatchNorm after it."""

    def __init__(self, linear: nnx.Module, features: int, *, batch_norm: bool, rngs: nnx.Rngs):
        self.linear = linear
        self.bn = nnx.BatchNorm(features, momentum=0.8, rngs=rngs) if batch_norm else None

    def __call__(self, x, *, train: bool):
        h = self.linear(x)
        if self.bn is not None:
            h = self.bn(h, use_running_average=not train)
        return jax.nn.relu(h)


class SmallMLP(nnx.Module):
    """5 -> 6 -> 4 -> 3, ReLU, optional BN after each hidden Dense. The contract: ``__call__(x, *,
    train)`` and ``weight_layers``; nothing else."""

    def __init__(self, *, batch_norm: bool, rngs: nnx.Rngs):
        self.layers = nnx.List([
            Block(nnx.Linear(5, 6, rngs=rngs), 6, batch_norm=batch_norm, rngs=rngs),
            Block(nnx.Linear(6, 4, rngs=rngs), 4, batch_norm=batch_norm, rngs=rngs),
        ])
        self.head = nnx.Linear(4, 3, rngs=rngs)

    @property
    def weight_layers(self):
        return [block.linear for block in self.layers] + [self.head]

    def __call__(self, x, *, train: bool):
        for block in self.layers:
            x = block(x, train=train)
        return self.head(x)


class SmallConvNet(nnx.Module):
    """6x6x2 images: conv 3x3 (2->3), conv 3x3 (3->4), 2x2 average pool, Dense to 3 classes."""

    def __init__(self, *, batch_norm: bool, rngs: nnx.Rngs):
        self.layers = nnx.List([
            Block(nnx.Conv(2, 3, (3, 3), padding="SAME", rngs=rngs), 3, batch_norm=batch_norm, rngs=rngs),
            Block(nnx.Conv(3, 4, (3, 3), padding="SAME", rngs=rngs), 4, batch_norm=batch_norm, rngs=rngs),
        ])
        self.head = nnx.Linear(3 * 3 * 4, 3, rngs=rngs)

    @property
    def weight_layers(self):
        return [block.linear for block in self.layers] + [self.head]

    def __call__(self, x, *, train: bool):
        for block in self.layers:
            x = block(x, train=train)
        x = nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        return self.head(x.reshape(x.shape[0], -1))


class LeastSquares(nnx.Module):
    """One linear layer without bias: f(x) = x W, the closed-form check."""

    def __init__(self, inputs: int, outputs: int, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(inputs, outputs, use_bias=False, rngs=rngs)

    @property
    def weight_layers(self):
        return [self.linear]

    def __call__(self, x, *, train: bool):
        return self.linear(x)


class TwoLinear(nnx.Module):
    """f(x) = x W1 W2 without biases: ICS of the second layer in closed form."""

    def __init__(self, inputs: int, hidden: int, outputs: int, *, rngs: nnx.Rngs):
        self.first = nnx.Linear(inputs, hidden, use_bias=False, rngs=rngs)
        self.second = nnx.Linear(hidden, outputs, use_bias=False, rngs=rngs)

    @property
    def weight_layers(self):
        return [self.first, self.second]

    def __call__(self, x, *, train: bool):
        return self.second(self.first(x))


class FlatMLP(nnx.Module):
    """Weight layers and norms as siblings (``dense0``, ``bn0``, ``dense1``): no path says which
    layer ``bn0`` belongs to, so the ICS probe holds it at its current value."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.dense0 = nnx.Linear(5, 4, rngs=rngs)
        self.bn0 = nnx.BatchNorm(4, rngs=rngs)
        self.dense1 = nnx.Linear(4, 3, rngs=rngs)

    @property
    def weight_layers(self):
        return [self.dense0, self.dense1]

    def __call__(self, x, *, train: bool):
        return self.dense1(jax.nn.relu(self.bn0(self.dense0(x), use_running_average=not train)))


def block_owner(path: tuple) -> int:
    """Hand-written: ``layers.j.*`` belongs to weight layer j, ``head.*`` to the last (2)."""
    return int(path[1]) if path[0] == "layers" else 2


# ------------------------------------------------------------------------- plain dict params


def to_plain(state) -> dict:
    """An ``nnx.State`` as a flat ``{path tuple: np/jnp array}`` dict."""
    flat = {}

    def walk(node, prefix):
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, prefix + (key,))
        else:
            flat[prefix] = node

    walk(nnx.to_pure_dict(state), ())
    return flat


def from_plain(template, flat: dict):
    """A copy of the ``nnx.State`` ``template`` holding the values of ``flat``."""
    nested: dict = {}
    for path, value in flat.items():
        node = nested
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    state = jax.tree.map(lambda a: a, template)
    nnx.replace_by_pure_dict(state, nested)
    return state


def reference_loss(spec, params_template, flat: dict, rest, x, y, train: bool):
    """The loss by hand: softmax cross-entropy or squared error, both means over the samples."""
    model = nnx.merge(spec.graphdef, from_plain(params_template, flat), rest, copy=True)
    outputs = model(x, train=train)
    if spec.task == "regression":
        return jnp.sum(jnp.square(outputs - y)) / x.shape[0]
    log_probs = jax.nn.log_softmax(outputs, axis=-1)
    return -jnp.mean(log_probs[jnp.arange(x.shape[0]), y])


def reference_value_and_grad(spec, state, flat: dict, x, y, train: bool):
    """One full forward+backward over every parameter, not jitted."""
    return jax.value_and_grad(lambda f: reference_loss(spec, state.params, f, state.rest, x, y, train))(flat)


def momentum_trace(opt_state) -> dict | None:
    """The momentum buffer of an ``optax.sgd(momentum=...)`` state, or None for plain SGD."""
    traces = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, optax.TraceState))
              if isinstance(s, optax.TraceState)]
    return to_plain(traces[0].trace) if traces else None


def reference_update(flat: dict, grads: dict, lr: float, trace: dict | None, momentum: float = 0.9) -> dict:
    """SGD ``W - lr G``; heavy-ball momentum ``W - lr (G + momentum * trace)`` (optax's order)."""
    if trace is None:
        return {p: flat[p] - lr * grads[p] for p in flat}
    return {p: flat[p] - lr * (grads[p] + momentum * trace[p]) for p in flat}


def _norm(a) -> float:
    return float(np.sqrt(np.sum(np.square(np.asarray(a, np.float64)))))


def reference_ics(spec, state, x, y, lr: float, owner, *, train: bool) -> dict:
    """ICS by the definition: a fresh parameter copy and one full gradient call per layer."""
    current = to_plain(state.params)
    _, training_grads = reference_value_and_grad(spec, state, current, x, y, True)
    updated = reference_update(current, training_grads, lr, momentum_trace(state.opt_state))
    _, g_mode = reference_value_and_grad(spec, state, current, x, y, train)
    kernels = [tuple(path) for path in spec.kernel_paths]
    l2, cosine = [], []
    for i, kernel in enumerate(kernels):
        mixed = {p: copy.deepcopy(updated[p] if owner(p) < i else current[p]) for p in current}
        _, g_shifted = reference_value_and_grad(spec, state, mixed, x, y, train)
        g, gp = np.asarray(g_mode[kernel]).ravel(), np.asarray(g_shifted[kernel]).ravel()
        l2.append(_norm(g - gp))
        cosine.append(float(np.dot(g, gp)) / (_norm(g) * _norm(gp)))
    return {"l2": np.array(l2), "cosine": np.array(cosine)}


def reference_walk(spec, state, x, y, etas, *, train: bool) -> dict:
    """Loss and gradient change at ``theta - eta d`` for each eta, one full gradient per point."""
    current = to_plain(state.params)
    _, direction = reference_value_and_grad(spec, state, current, x, y, True)
    loss0, g0 = reference_value_and_grad(spec, state, current, x, y, train)
    direction_norm = np.sqrt(sum(_norm(direction[p]) ** 2 for p in current))
    losses, distances = [], []
    for eta in etas:
        moved = {p: current[p] - eta * direction[p] for p in current}
        loss, g = reference_value_and_grad(spec, state, moved, x, y, train)
        losses.append(float(loss))
        distances.append(np.sqrt(sum(_norm(g0[p] - g[p]) ** 2 for p in current)))
    losses, distances = np.array(losses), np.array(distances)
    return {
        "loss0": float(loss0),
        "loss": losses,
        "distance": distances,
        "ratio_beta": distances / (np.asarray(etas) * direction_norm),
        "ratio_divergence": losses / float(loss0),
    }
