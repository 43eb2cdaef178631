"""Gradient-based internal covariate shift (S18 Def. 2.1, Fig. 3).

For weight layer ``i`` (``spec.weight_layer_names`` order, conv and dense alike), at step ``t``
and on the step's own batch ``(x, y)``::

    G_i  = grad_{W_i} L(W_1^t, ..., W_{i-1}^t,     W_i^t, ..., W_k^t)
    G'_i = grad_{W_i} L(W_1^{t+1}, ..., W_{i-1}^{t+1}, W_i^t, ..., W_k^t)
    l2_i     = ||G_i - G'_i||_2                       (kernel flattened; ideal 0)
    cosine_i = <G_i, G'_i> / (||G_i|| ||G'_i||)       (ideal 1)

``W^{t+1}`` is what the optimizer's *real* update makes of the earlier layers:
``spec.tx.update(grads, opt_state, params)`` then ``optax.apply_updates`` (plain SGD gives
``W - lr G``; momentum and Adam take their actual step from the current optimizer state), where
``grads`` is the training gradient of the step (train mode, batch statistics), as in training.

"Layer j's parameters" are its kernel plus every other ``nnx.Param`` that belongs to it: a
parameter belongs to the weight layer whose module path shares the longest prefix with the
parameter's path (``hidden.3.linear.bias`` and ``hidden.3.norm.scale`` belong to
``hidden.3.linear``). A parameter with no unique such layer (e.g. a top-level ``bn0``) is held at
its current value in ``G'``; :func:`layer_parameters` lists which parameters move with which
layer, to check a user's own model.

Shapes: ``l2``, ``cosine``, ``grad_norm`` (||G_i||) and ``shifted_grad_norm`` (||G'_i||) are
``(k,)`` for k weight layers; ``cosine_mean`` is the mean cosine over layers 2..k (layer 1 has no
earlier layer, so ``G'_1 = G_1`` exactly: l2 0, cosine 1, and it is not recomputed).

BN mode: "train" (default) evaluates both gradients with batch statistics (``G`` is then the
training gradient itself, no extra pass); "eval" evaluates both with running averages (one extra
forward+backward for ``G``). The update ``W^{t+1}`` is the real one either way. The BN running
statistics (``state.rest``) are read, never advanced.

Cost (``strategy="unrolled"``, the default): the per-layer gradients are traced in one jit as a
Python loop; each differentiates w.r.t. its own kernel only, so JAX drops the backward below
layer i, and XLA's CSE merges the identical forward prefixes (earlier layers updated) of all
layers. What remains is one forward through the updated network plus, for each layer i > 1, the
forward of the suffix from layer i and its backward down to W_i: about half a forward+backward
per layer where the naive way takes a full one. ``strategy="map"`` (``lax.map`` over the k-1
mixed parameter sets, a full gradient each) is slower but compiles in constant time in the depth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import optax

from normlab.probes.base import Headline, Output, ProbeContext, Schedule, check_bn_mode, every, require
from normlab.probes.shared import mode_loss
from normlab.train import NetworkSpec, NetworkState

# ------------------------------------------------------------------------------ parameter paths


def _plain_key(entry) -> object:
    for attribute in ("key", "idx", "name"):
        if hasattr(entry, attribute):
            return getattr(entry, attribute)
    return entry


def flat_parameters(params) -> tuple[tuple[tuple, ...], list, object]:
    """``(paths, leaves, treedef)`` of a parameter tree; paths as plain key tuples.

    ``nnx.State`` key paths end in the Variable's ``value`` attribute; that entry is dropped so
    a path reads like ``spec.kernel_paths`` (``("hidden", 0, "linear", "kernel")``).
    """
    with_paths, treedef = jax.tree_util.tree_flatten_with_path(params)
    paths = []
    for key_path, _leaf in with_paths:
        keys = tuple(_plain_key(entry) for entry in key_path)
        if keys and keys[-1] == "value" and isinstance(key_path[-1], jax.tree_util.GetAttrKey):
            keys = keys[:-1]
        paths.append(keys)
    return tuple(paths), [leaf for _path, leaf in with_paths], treedef


def common_prefix_length(a: tuple, b: tuple) -> int:
    """How many leading entries the paths ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def parameter_owners(paths: tuple[tuple, ...], kernel_paths: tuple[tuple, ...]) -> tuple[int | None, ...]:
    """For each parameter path, the index of the weight layer it belongs to (or None).

    A parameter belongs to layer j when its path shares a strictly longer prefix with layer j's
    module path (kernel path minus ``"kernel"``) than with any other layer's; ties -> None.
    """
    modules = [path[:-1] for path in kernel_paths]
    owners = []
    for path in paths:
        scores = [common_prefix_length(path, module) for module in modules]
        best = max(scores)
        winners = [j for j, score in enumerate(scores) if score == best]
        owners.append(winners[0] if best > 0 and len(winners) == 1 else None)
    return tuple(owners)


def layer_parameters(spec: NetworkSpec, params) -> dict[str, list[str]]:
    """Which parameters move with which weight layer in ``G'`` (``"(held)"``: none, kept at W^t).

    A check for a user's own model: ``layer_parameters(spec, state.params)``.
    """
    paths, _leaves, _treedef = flat_parameters(params)
    groups: dict[str, list[str]] = {name: [] for name in spec.weight_layer_names}
    groups["(held)"] = []
    for path, owner in zip(paths, parameter_owners(paths, spec.kernel_paths)):
        key = "(held)" if owner is None else spec.weight_layer_names[owner]
        groups[key].append(".".join(str(p) for p in path))
    return groups


# ---------------------------------------------------------------------------------- pure maths


def real_update(spec: NetworkSpec, state: NetworkState, grads):
    """``W^{t+1}``: the optimizer's actual step from ``state`` with the training ``grads``.

    Identical to what ``train_step`` computes, so inside the group step XLA computes it once.
    """
    updates, _new_opt_state = spec.tx.update(grads, state.opt_state, state.params)
    return optax.apply_updates(state.params, updates)


def kernel_gradient(spec: NetworkSpec, leaves: list, treedef, kernel_index: int, rest, x, y, train: bool):
    """``grad_{leaves[kernel_index]} L`` with every other parameter held fixed.

    Differentiating w.r.t. this one kernel only lets JAX drop the backward below the layer.
    """

    def loss_of_kernel(kernel):
        mixed = list(leaves)
        mixed[kernel_index] = kernel
        return mode_loss(spec, jax.tree_util.tree_unflatten(treedef, mixed), rest, x, y, train)

    return jax.grad(loss_of_kernel)(leaves[kernel_index])


def _cosine(a, b):
    denominator = jnp.linalg.norm(a) * jnp.linalg.norm(b)
    # A zero gradient has no direction: NaN, not a made-up 0 or 1.
    return jnp.where(denominator > 0, jnp.vdot(a, b) / jnp.where(denominator > 0, denominator, 1.0), jnp.nan)


STRATEGIES = ("unrolled", "map")


def check_strategy(strategy: str) -> str:
    """"unrolled" (default) or "map"; both give the same values.

    Measured by bench/probes.py: the unrolled loop's shared prefixes and kernel-only backward
    win even for tiny dense layers (``lax.map`` and ``vmap`` are slower), and for convs
    ``lax.map`` and vmapped weight variants are many times slower on CPU. "map" compiles in
    constant time in the depth: the choice for very deep nets probed rarely.
    """
    require(strategy in STRATEGIES, "strategy", f"one of {', '.join(STRATEGIES)}", strategy)
    return strategy


def _shifted_unrolled(spec, current, updated, owners, treedef, kernel_indices, rest, x, y, train):
    """G'_i for i >= 1, one kernel-only gradient per layer, unrolled: XLA shares the prefixes."""
    shifted = []
    for i, kernel_index in enumerate(kernel_indices[1:], start=1):
        # Earlier layers (owner < i) take their real step; layer i and later stay at W^t.
        mixed = [u if owner is not None and owner < i else c for u, c, owner in zip(updated, current, owners)]
        shifted.append(kernel_gradient(spec, mixed, treedef, kernel_index, rest, x, y, train))
    return shifted


def _shifted_mapped(spec, current, updated, owners, treedef, kernel_indices, rest, x, y, train):
    """G'_i for i >= 1: ``lax.map`` of one full gradient over the k-1 stacked mixed parameter sets."""
    layers = jnp.arange(1, len(kernel_indices))
    stacked = []
    for u, c, owner in zip(updated, current, owners):
        moves = layers > owner if owner is not None else jnp.zeros_like(layers, dtype=bool)
        moves = moves.reshape((-1,) + (1,) * jnp.ndim(c))
        stacked.append(jnp.where(moves, u[None], c[None]))

    def full_gradient(leaves):
        params = jax.tree_util.tree_unflatten(treedef, leaves)
        return flat_parameters(jax.grad(mode_loss, argnums=1)(spec, params, rest, x, y, train))[1]

    grads = jax.lax.map(full_gradient, stacked)
    return [grads[kernel_index][i - 1] for i, kernel_index in enumerate(kernel_indices[1:], start=1)]


def measure_ics(spec: NetworkSpec, state: NetworkState, x, y, grads, *, bn_mode: str = "train",
                strategy: str = "unrolled") -> dict:
    """The ICS arrays of one network at one step (see the module docstring for the formulas).

    ``grads``: the training gradient at ``state.params`` (train mode), used for the real update
    and, in train mode, as ``G``. ``strategy`` (see :func:`check_strategy`) only changes how
    the G'_i are laid out, not their values. Returns ``l2``, ``cosine``, ``grad_norm``,
    ``shifted_grad_norm`` (each ``(k,)``) and ``cosine_mean`` (scalar).
    """
    train = bn_mode == "train"
    paths, current, treedef = flat_parameters(state.params)
    index_of = {path: n for n, path in enumerate(paths)}
    kernel_indices = [index_of[tuple(path)] for path in spec.kernel_paths]
    owners = parameter_owners(paths, spec.kernel_paths)
    _, updated, _ = flat_parameters(real_update(spec, state, grads))

    if train:
        reference = grads
    else:
        reference = jax.grad(mode_loss, argnums=1)(spec, state.params, state.rest, x, y, False)
    _, reference_leaves, _ = flat_parameters(reference)

    arguments = (spec, current, updated, owners, treedef, kernel_indices, state.rest, x, y, train)
    if len(kernel_indices) == 1:
        shifted = []
    elif check_strategy(strategy) == "unrolled":
        shifted = _shifted_unrolled(*arguments)
    else:
        shifted = _shifted_mapped(*arguments)
    # Nothing precedes the first layer: G'_1 = G_1 exactly, not recomputed.
    shifted = [reference_leaves[kernel_indices[0]]] + shifted

    l2, cosine, norms, shifted_norms = [], [], [], []
    for kernel_index, g_shifted in zip(kernel_indices, shifted):
        g = reference_leaves[kernel_index]
        l2.append(jnp.linalg.norm((g - g_shifted).reshape(-1)))
        cosine.append(_cosine(g.reshape(-1), g_shifted.reshape(-1)))
        norms.append(jnp.linalg.norm(g))
        shifted_norms.append(jnp.linalg.norm(g_shifted))
    cosines = jnp.stack(cosine)
    return {
        "l2": jnp.stack(l2),
        "cosine": cosines,
        "grad_norm": jnp.stack(norms),
        "shifted_grad_norm": jnp.stack(shifted_norms),
        "cosine_mean": jnp.mean(cosines[1:]) if len(kernel_indices) > 1 else cosines[0],
    }


# ----------------------------------------------------------------------------------- the probe


@dataclass(frozen=True)
class ICSProbe:
    """S18's gradient-based internal covariate shift per weight layer (S18 Def. 2.1, Fig. 3)."""

    schedule: Schedule = field(default_factory=lambda: every(100))
    bn_mode: str = "train"
    strategy: str = "unrolled"  # "unrolled" (fastest) or "map" (compile time independent of depth)
    name: str = "ics"
    outputs = (
        Output("l2", ("layers",), "||G_i - G'_i||_2 per weight layer (ideal 0)"),
        Output("cosine", ("layers",), "cos(G_i, G'_i) per weight layer (ideal 1; NaN for a zero gradient)"),
        Output("grad_norm", ("layers",), "||G_i||_2"),
        Output("shifted_grad_norm", ("layers",), "||G'_i||_2"),
        Output("cosine_mean", (), "mean cosine over layers 2..k"),
    )
    headline = Headline("cosine_mean", "median", "median over the run of cosine_mean (mean over layers/points)")

    def __post_init__(self):
        check_bn_mode(self.bn_mode)
        check_strategy(self.strategy)

    def meta(self, spec: NetworkSpec) -> dict:
        return {
            "available": True,
            "bn_mode": self.bn_mode,
            "layers": list(spec.weight_layer_names),
            "formula": "G_i = dL/dW_i at W^t; G'_i = dL/dW_i at (W_<i^{t+1}, W_>=i^t) with W^{t+1} the "
                       "optimizer's real update; l2 = ||G_i - G'_i||_2, cosine = <G_i,G'_i>/(|G_i||G'_i|)",
            "update": "optax tx.update(training grads, opt_state, params), applied to the parameters of "
                      "the earlier layers",
            "layer_parameters": "a parameter moves with the weight layer whose module path shares the longest "
                                "prefix with its path (bias, following norm); ties are held at W^t",
            "strategy": self.strategy,
            "paper": "S18 Def. 2.1, Fig. 3",
        }

    def measure(self, ctx: ProbeContext) -> dict:
        return measure_ics(ctx.spec, ctx.state, ctx.x, ctx.y, ctx.grads, bn_mode=self.bn_mode,
                           strategy=self.strategy)

