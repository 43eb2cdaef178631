"""The building blocks every normlab model is made of.

A model is a :class:`Network`: a sequence of :class:`HiddenLayer` blocks followed by a
:class:`Dense` output layer ("head"). A hidden layer is

    before_activation (BN15 Sec. 3.2, the default):  z = W x + b;  a = act(norm(z))
    after_activation  (the "placement" option):      z = W x + b;  a = norm(act(z))

then optional dropout on ``a`` and an optional 2x2 pooling. ``W x`` is a :class:`Dense` matmul or
a :class:`~normlab.models.conv.Conv`; ``norm`` is a module from ``normlab.norms`` (the ``none``
norm is the identity, so baseline and candidate have the same structure).

What each hidden layer reports to probes is the *input to its nonlinearity*: ``norm(z)`` before
the activation (what BN15 Fig. 1 and the seed notebooks plot), ``z`` when the norm comes after.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from normlab.errors import NormlabError, check_name
from normlab.models.conv import Conv

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "elu": jax.nn.elu,
    "silu": jax.nn.silu,
    "leaky_relu": jax.nn.leaky_relu,
    "identity": lambda x: x,  # the deep linear network (S18 Sec. 3)
}

NORM_POSITIONS = ("before_activation", "after_activation")
OUTPUT_LAYER = "output"  # the head's name in layer tables, probes and figures
POOLS = {"max": nnx.max_pool, "avg": nnx.avg_pool}


class Dense(nnx.Module):
    """``y = x @ kernel + bias`` with ``kernel`` (in, out) and optional ``bias`` (out,) Params.

    The kernel comes from ``kernel_init(key, (in, out))`` with the explicit ``key`` the model
    builder hands each weight layer (fixed draw order, see ``build_model``); the bias starts at 0.
    """

    def __init__(self, in_features: int, out_features: int, *, key: jax.Array, kernel_init,
                 use_bias: bool = True):
        self.in_features, self.out_features = in_features, out_features
        self.kernel = nnx.Param(kernel_init(key, (in_features, out_features), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32)) if use_bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        y = x @ self.kernel[...]
        if self.bias is not None:
            y = y + self.bias[...]
        return y


def pool_2x2(x: jax.Array, kind: str) -> jax.Array:
    """Non-overlapping 2x2 max or average pooling on NHWC (floor on odd sizes, like PyTorch).

    Written as a reshape ``(N, H/2, 2, W/2, 2, C)`` and a max/mean over the two window axes
    rather than ``lax.reduce_window``: the same values, and its backward is a broadcast compare
    instead of XLA's select-and-scatter, which is slower on CPU (an earlier timing of the narrow
    VGG step; no ``bench/`` script measures it yet). Gradients equal ``nnx.max_pool``'s except at
    ties inside a window (measure zero for continuous inputs; after a ReLU a tie at 0 gets
    gradient 0 either way), where the reduction splits the gradient evenly instead of giving it
    all to one element.
    """
    n, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    windows = x[:, :2 * h2, :2 * w2, :].reshape(n, h2, 2, w2, 2, c)
    if kind == "max":
        return windows.max(axis=(2, 4))
    if kind == "avg":
        return windows.mean(axis=(2, 4))
    raise NormlabError(f"unknown pooling {kind!r}; valid: {', '.join(POOLS)}")


class HiddenLayer(nnx.Module):
    """Weight layer, norm, activation (in the chosen order), then dropout and pooling.

    ``__call__(x, *, train) -> (output, pre_activation)``; ``pre_activation`` is the input to the
    nonlinearity, the value a model sows as its ``activations`` entry for this layer.
    """

    def __init__(self, linear: Dense | Conv, norm: nnx.Module, *, norm_name: str, activation: str,
                 norm_position: str = "before_activation", dropout: nnx.Dropout | None = None,
                 pool: str | None = None):
        check_name("activation", activation, ACTIVATIONS)
        check_name("norm position", norm_position, NORM_POSITIONS)
        if pool is not None:
            check_name("pooling", pool, POOLS)
        self.linear = linear
        self.norm = norm
        self.norm_name = norm_name  # registry name, for describe_model and reprs
        self.activation = activation
        self.norm_position = norm_position
        self.dropout = dropout
        self.pool = pool

    def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
        act = ACTIVATIONS[self.activation]
        z = self.linear(x)
        if self.norm_position == "before_activation":
            pre = self.norm(z, train=train)
            a = act(pre)
        else:
            pre = z
            a = self.norm(act(z), train=train)
        if self.dropout is not None:
            # Dropout only in train mode; the mask comes from the `dropout` rng stream.
            a = self.dropout(a, deterministic=not train)
        if self.pool is not None:
            a = pool_2x2(a, self.pool)
        return a, pre


class Network(nnx.Module):
    """A feed-forward model: hidden layers, then the output :class:`Dense` ("head").

    Contract (docs/INTERFACES.md, ``models``):

    - ``__call__(x, *, train) -> (N, outputs)``; ``x`` is ``(N, *input_shape)``. Image inputs are
      flattened (row-major, H then W then C) just before the first dense layer.
    - ``weight_layers``: the kernel-holding modules in forward order (hidden layers, then head).
    - ``kind`` (registry name), ``task`` ("classification" | "regression"), ``input_shape``.
    - Inside ``nnx.capture(model, nnx.Intermediate)`` it sows ``activations``: a tuple with one
      array per hidden layer (the input to its nonlinearity), aligned with ``activation_names``.
    """

    def __init__(self, kind: str, hidden: list[HiddenLayer], head: Dense, *,
                 input_shape: tuple[int, ...], activation_names: tuple[str, ...],
                 task: str = "classification"):
        if len(activation_names) != len(hidden):
            raise ValueError("one activation name per hidden layer")
        self.kind = kind  # the registry name, e.g. "vgg"
        self.task = task  # "classification" (logits) or "regression" (dln)
        self.hidden = nnx.List(hidden)
        self.head = head
        self.input_shape = tuple(input_shape)
        self.activation_names = tuple(activation_names)

    @property
    def weight_layers(self) -> list[Dense | Conv]:
        """The modules holding a ``kernel`` Param, in forward order."""
        return [layer.linear for layer in self.hidden] + [self.head]

    @property
    def weight_layer_names(self) -> tuple[str, ...]:
        """One name per ``weight_layers`` entry: each hidden layer's (as in ``activation_names``),
        then "output" (the head), so every probe and figure names a layer the same way."""
        return (*self.activation_names, OUTPUT_LAYER)

    @property
    def norms(self) -> list[nnx.Module]:
        """The norm module of each hidden layer (the ``none`` norm where there is none)."""
        return [layer.norm for layer in self.hidden]

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        return self.forward(x, train=train)

    def forward(self, x: jax.Array, *, train: bool,
                record: Callable[[str, jax.Array], None] | None = None) -> jax.Array:
        """The forward pass; ``record(name, output)`` sees each layer's output (describe_model)."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise NormlabError(
                f"{self.kind} was built for inputs of shape (N, {', '.join(map(str, self.input_shape))}); "
                f"got {tuple(x.shape)}"
            )
        for name, layer in zip(self.activation_names, self.hidden):
            if isinstance(layer.linear, Dense) and x.ndim > 2:
                x = x.reshape(x.shape[0], -1)
            x, pre = layer(x, train=train)
            self._sow_activation(pre)
            if record is not None:
                record(name, x)
        if x.ndim > 2:
            x = x.reshape(x.shape[0], -1)
        x = self.head(x)
        if record is not None:
            record(OUTPUT_LAYER, x)
        return x

    def _sow_activation(self, value: jax.Array) -> None:
        # Sow only inside nnx.capture (which gives every module a `__captures__` slot): outside it
        # `sow` is deprecated and would store the values on the module as new state.
        if hasattr(self, "__captures__"):
            self.sow(nnx.Intermediate, "activations", value)
