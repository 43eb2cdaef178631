"""Pure training and evaluation steps over split NNX state.

A network is split once into a static ``NetworkSpec`` (graph definition, optimizer, task) and a
dynamic ``NetworkState`` pytree (parameters, the rest of the model state such as BN running
statistics and rng counters, optimizer state, an ``alive`` flag). Every function here is pure and
jittable; the caller jits them once per run: ``nnx.split`` once + ``jax.jit`` avoids the graph
traversal ``nnx.jit`` does on every call, which dominates a small MLP's step.

Divergence is data, not an exception: a network whose loss is NaN or infinite is marked dead
(``alive = False``) at that step, its state stops changing, and its reported loss is NaN from
then on; its twin in the same compiled group step is unaffected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

Array = jax.Array


@jax.tree_util.register_static
@dataclass(frozen=True, eq=False)
class NetworkSpec:
    """The static half of a network: closed over by jitted functions, never traced.

    ``task`` is "classification" (softmax cross-entropy, accuracy) or "regression" (squared error
    summed over output dimensions, averaged over samples).
    ``learning_rate`` maps the optimizer step count to the learning rate (probes need eta).
    Registered as a static pytree (no leaves, compared by identity) so that structures holding
    it, such as a probe context, pass through ``jax.jit`` unchanged.
    """

    name: str
    graphdef: nnx.GraphDef
    tx: optax.GradientTransformation
    task: str
    learning_rate: Callable[[Array], Array]
    kernel_paths: tuple[tuple, ...]  # path of each weight layer's kernel in ``params``, in order
    # each weight layer's name in every probe, figure and start view: the model's own
    # ``weight_layer_names`` (normlab's: its hidden layers' names, then "output"), else the module path
    weight_layer_names: tuple[str, ...]
    activation_names: tuple[str, ...]
    # The norms' own affine factors (gamma = "scale", beta = "bias"), see ``norm_parameters``.
    norm_parameters: tuple[NormParameter, ...] = ()


class NormParameter(NamedTuple):
    """One affine factor of a norm layer: ``layer`` (the hidden layer's name), ``kind`` ("scale"
    = gamma or "bias" = beta), ``group`` ("params": trained; "rest": held fixed, a
    ``FrozenParam``) and ``path`` into that group of the state."""

    layer: str
    kind: str
    group: str
    path: tuple


def norm_parameters(kernel_paths: tuple[tuple, ...], params, rest, activation_names=()) -> tuple[NormParameter, ...]:
    """Every ``scale``/``bias`` leaf of ``params`` or ``rest`` that is not a weight layer's own
    (its module holds no kernel): the norms' gamma and beta, trained or frozen, in state order.

    A leaf under ``hidden[i]`` is named after ``activation_names[i]`` (normlab's models: the
    hidden layer it normalizes), anything else after its module's dotted path.
    """
    weight_modules = {tuple(path[:-1]) for path in kernel_paths}
    found = []
    for group, tree in (("params", params), ("rest", rest)):
        for key_path, _leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            path = tuple(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))) for k in key_path)
            path = tuple(p for p in path if p != "value")
            if not path or path[-1] not in ("scale", "bias") or tuple(path[:-1]) in weight_modules:
                continue
            if len(path) > 2 and path[0] == "hidden" and isinstance(path[1], int) and path[1] < len(activation_names):
                layer = activation_names[path[1]]
            else:
                layer = ".".join(str(p) for p in path[:-1])
            found.append(NormParameter(layer, path[-1], group, path))
    return tuple(found)


class NetworkState(NamedTuple):
    """The dynamic half of a network (a pytree)."""

    params: nnx.State
    rest: nnx.State
    opt_state: Any
    alive: Array  # bool scalar: False once the loss has been non-finite


class StepOutputs(NamedTuple):
    """What one training step computed besides the new state (for metrics and probes)."""

    loss: Array
    accuracy: Array
    grads: nnx.State
    intermediates: tuple  # captured activations, one per hidden layer (empty if not sown)


def layer_names(model: nnx.Module, paths: tuple[tuple, ...]) -> tuple[str, ...]:
    """The weight layers' names: ``model.weight_layer_names`` when the model names them (one per
    kernel; normlab's models use the names of their hidden layers, ``dense0``, ``conv3``, ..., and
    ``output``, as their activations do), else each kernel's module path (``block.linear``)."""
    named = tuple(getattr(model, "weight_layer_names", ()) or ())
    if len(named) == len(paths) and len(set(named)) == len(named):
        return tuple(str(name) for name in named)
    return tuple(".".join(str(p) for p in path[:-1]) for path in paths)


def kernel_paths(model: nnx.Module) -> tuple[tuple, ...]:
    """Paths (into the ``nnx.Param`` state) of the kernels of ``model.weight_layers``, in order.

    This is the whole contract a model must meet to be probed layer by layer: a ``weight_layers``
    attribute listing the submodules that hold a ``kernel`` Param, in forward order.
    """
    layers = list(getattr(model, "weight_layers", ()))
    if not layers:
        raise TypeError(
            f"{type(model).__name__} has no `weight_layers`: list the submodules holding a `kernel` "
            "Param, in forward order, to make the model probe-able"
        )
    path_of = {id(node): path for path, node in nnx.iter_graph(model) if isinstance(node, nnx.Module)}
    missing = [layer for layer in layers if id(layer) not in path_of or not hasattr(layer, "kernel")]
    if missing:
        raise TypeError("every entry of `weight_layers` must be a submodule of the model with a `kernel` Param")
    return tuple(tuple(path_of[id(layer)]) + ("kernel",) for layer in layers)


def make_network(
    name: str,
    model: nnx.Module,
    tx: optax.GradientTransformation,
    learning_rate: Callable[[Array], Array],
    *,
    task: str = "classification",
) -> tuple[NetworkSpec, NetworkState]:
    """Split ``model`` once into its static ``NetworkSpec`` and a fresh ``NetworkState``."""
    paths = kernel_paths(model)
    # flax types a split by filters as a variadic tuple; two filters give exactly three parts.
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)  # type: ignore[misc]
    activation_names = tuple(getattr(model, "activation_names", ()))
    spec = NetworkSpec(
        name=name,
        graphdef=graphdef,
        tx=tx,
        task=task,
        learning_rate=learning_rate,
        kernel_paths=paths,
        weight_layer_names=layer_names(model, paths),
        activation_names=activation_names,
        norm_parameters=norm_parameters(paths, params, rest, activation_names),
    )
    return spec, NetworkState(params, rest, tx.init(params), jnp.asarray(True))


def state_at(tree, path: tuple):
    """The leaf array of a nested ``nnx.State`` (or dict) at ``path``."""
    node = tree
    for key in path:
        node = node[key]
    return node.get_value() if hasattr(node, "get_value") else node


def apply_model(spec: NetworkSpec, params, rest, x, *, train: bool):
    """Forward pass; returns ``(outputs, new_rest, activations)``.

    ``activations`` are the values the model sowed as ``nnx.Intermediate('activations')``,
    captured in the same forward pass (no second pass), as a tuple in layer order.
    """
    model = nnx.merge(spec.graphdef, params, rest, copy=True)
    outputs, intermediates = nnx.capture(model, nnx.Intermediate)(x, train=train)
    new_rest = nnx.state(model, nnx.Not(nnx.Param))
    activations = intermediates["activations"] if "activations" in intermediates else ()
    if hasattr(activations, "get_value"):
        activations = activations.get_value()
    return outputs, new_rest, tuple(activations)


def loss_and_accuracy(spec: NetworkSpec, outputs: Array, targets: Array) -> tuple[Array, Array]:
    """Mean softmax cross-entropy and accuracy, or the regression loss and NaN accuracy.

    Regression (the S18 deep linear network): ``L = (1/n) sum_i ||f(x_i) - y_i||^2``, S18's
    ``||W_k...W_1 x - A x||^2`` as a mean over the n samples of the batch -- the reduction the
    evaluation uses too, so training and test losses are on one scale. (S18 writes the sum over
    the full batch; the sum with learning rate lr follows the same trajectory as the mean with
    lr * n under plain gradient descent.)
    """
    if spec.task == "regression":
        per_sample = jnp.sum(jnp.square(outputs - targets), axis=tuple(range(1, outputs.ndim)))
        loss = jnp.mean(per_sample)
        return loss, jnp.asarray(jnp.nan, dtype=loss.dtype)
    loss = optax.softmax_cross_entropy_with_integer_labels(outputs, targets).mean()
    accuracy = jnp.mean(jnp.argmax(outputs, axis=-1) == targets)
    return loss, accuracy


def training_loss_reduction(spec: NetworkSpec) -> str:
    """How ``loss_and_accuracy`` reduces the training loss over a batch's examples: "mean", for
    classification and regression alike (the report labels what run.json records, and reads "sum"
    for regression runs written before the DLN's loss became a mean). Evaluations are means too
    (``evaluate_batch`` sums, the caller divides by the number of examples)."""
    del spec  # one reduction today; the spec is where a second one would be read
    return "mean"


def loss_fn(spec: NetworkSpec, params, rest, x, y, *, train: bool = True):
    """``(loss, (accuracy, new_rest, activations))``, differentiable in ``params``."""
    outputs, new_rest, activations = apply_model(spec, params, rest, x, train=train)
    loss, accuracy = loss_and_accuracy(spec, outputs, y)
    return loss, (accuracy, new_rest, activations)


def gradient(spec: NetworkSpec, params, rest, x, y, *, train: bool = True):
    """``(loss, grads)`` of the training loss at ``params``; ``rest`` is not updated."""
    (loss, _aux), grads = jax.value_and_grad(loss_fn, argnums=1, has_aux=True)(spec, params, rest, x, y, train=train)
    return loss, grads


def train_step(spec: NetworkSpec, state: NetworkState, x: Array, y: Array) -> tuple[NetworkState, StepOutputs]:
    """One optimizer step on batch ``(x, y)`` in train mode (batch statistics).

    The parameters change only while the network is alive and the loss is finite.
    """
    (loss, (accuracy, new_rest, activations)), grads = jax.value_and_grad(loss_fn, argnums=1, has_aux=True)(
        spec, state.params, state.rest, x, y
    )
    alive = jnp.logical_and(state.alive, jnp.isfinite(loss))
    updates, new_opt_state = spec.tx.update(grads, state.opt_state, state.params)
    # Only the parameter update is masked: the select fuses into the update's addition (masking
    # the whole state cost ~15% of a small MLP step). A dead network's optimizer state and running
    # statistics may fill with NaN; nothing reads them again, and its weights stay as they were.
    updates = jax.tree.map(lambda update: jnp.where(alive, update, jnp.zeros_like(update)), updates)
    new_state = NetworkState(
        params=optax.apply_updates(state.params, updates),
        rest=new_rest,
        opt_state=new_opt_state,
        alive=alive,
    )
    nan = jnp.asarray(jnp.nan, dtype=loss.dtype)
    outputs = StepOutputs(
        loss=jnp.where(alive, loss, nan),
        accuracy=jnp.where(alive, accuracy, nan),
        grads=grads,
        intermediates=activations,
    )
    return new_state, outputs


def evaluate_batch(spec: NetworkSpec, state: NetworkState, x: Array, y: Array, mask: Array) -> tuple[Array, Array]:
    """Summed loss and correct count over the rows where ``mask`` is 1, in eval mode.

    For regression the "correct count" is 0 and the summed loss is the per-sample squared error.
    """
    outputs, _rest, _acts = apply_model(spec, state.params, state.rest, x, train=False)
    if spec.task == "regression":
        per_sample = jnp.sum(jnp.square(outputs - y), axis=tuple(range(1, outputs.ndim)))
        return jnp.sum(per_sample * mask), jnp.asarray(0.0)
    per_sample = optax.softmax_cross_entropy_with_integer_labels(outputs, y)
    correct = (jnp.argmax(outputs, axis=-1) == y).astype(per_sample.dtype)
    return jnp.sum(per_sample * mask), jnp.sum(correct * mask)


def make_optimizer(
    name: str,
    learning_rate: float,
    *,
    total_steps: int,
    momentum: float = 0.9,
    schedule: str = "constant",
    weight_decay: float = 0.0,
) -> tuple[optax.GradientTransformation, Callable[[Array], Array]]:
    """An optax optimizer over ``nnx.Param`` state and its learning-rate schedule.

    ``schedule``: "constant"; "cosine" (cosine decay to 0 over ``total_steps``); "step" (x0.1 at
    50% and again at 75% of the steps); "warmup_cosine" (linear warm-up over 5% of the steps, then
    cosine decay).
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}")
    lr_schedule = SCHEDULES[schedule](learning_rate, max(total_steps, 1))
    tx = OPTIMIZERS[name](lr_schedule, momentum=momentum, weight_decay=weight_decay)
    if weight_decay and name != "adam":
        tx = optax.chain(optax.add_decayed_weights(weight_decay), tx)
    return tx, lr_schedule


def _adam(lr_schedule, *, momentum, weight_decay):
    return optax.adamw(lr_schedule, weight_decay=weight_decay) if weight_decay else optax.adam(lr_schedule)


def _warmup_cosine(base: float, total_steps: int):
    return optax.warmup_cosine_decay_schedule(0.0, base, max(1, total_steps // 20), total_steps)


# name -> optax optimizer of (schedule, *, momentum, weight_decay); the config's choices
OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": lambda lr_schedule, *, momentum, weight_decay: optax.sgd(lr_schedule),
    "momentum": lambda lr_schedule, *, momentum, weight_decay: optax.sgd(lr_schedule, momentum=momentum),
    "adam": _adam,
}

# name -> learning-rate schedule of (base, total_steps); the config's choices
SCHEDULES: dict[str, Callable[[float, int], Callable[[Array], Array]]] = {
    "constant": lambda base, total_steps: optax.constant_schedule(base),
    "cosine": lambda base, total_steps: optax.cosine_decay_schedule(base, total_steps),
    "step": lambda base, total_steps: optax.piecewise_constant_schedule(
        base, {total_steps // 2: 0.1, (3 * total_steps) // 4: 0.1}),
    "warmup_cosine": _warmup_cosine,
}
