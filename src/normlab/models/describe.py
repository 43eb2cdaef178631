"""Per-layer summaries of a model, computed from shapes only.

``describe_model`` traces the forward pass with ``jax.eval_shape`` (no FLOPs), and
``abstract_model`` builds a model under ``nnx.eval_shape`` (no weights are materialized), so
describing full-width VGG costs nothing::

    rows = describe_model(abstract_model("vgg", input_shape=(32, 32, 3), num_classes=10,
                                         norm="batch"))
    print(format_description(rows))

Counts: ``params`` are ``nnx.Param`` scalars (what an optimizer trains); ``stats`` are
``nnx.BatchStat`` scalars (the norms' running means and variances; rng state is not counted).
The Part 2 seed notebook's count sums both (every array of ``nnx.split``), which is how its
VGG + BN reaches 9,476,298 = 9,470,410 params + 5,888 running statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from normlab.models.build import build_model
from normlab.models.conv import Conv
from normlab.models.layers import OUTPUT_LAYER, HiddenLayer, Network


@dataclass(frozen=True)
class LayerRow:
    """One row: layer name, what it is, per-example output shape, parameter and state counts."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    stats: int


def _size(leaf: Any) -> int:
    return math.prod(getattr(leaf, "shape", ()))


def count_params(module: nnx.Module) -> int:
    """Number of scalars in the module's ``nnx.Param`` variables (works on abstract models)."""
    return sum(_size(leaf) for leaf in jax.tree.leaves(nnx.state(module, nnx.Param)))


def count_stats(module: nnx.Module) -> int:
    """Number of scalars in the module's ``nnx.BatchStat`` variables (norms' running statistics)."""
    return sum(_size(leaf) for leaf in jax.tree.leaves(nnx.state(module, nnx.BatchStat)))


def abstract_model(name: str, **build_kwargs: Any) -> Network:
    """``build_model(name, **build_kwargs)`` under ``nnx.eval_shape``: shapes only, no weights.

    The rngs are made inside the traced function (an ``nnx.Rngs`` from outside could not be
    advanced there); ``seed`` only names their streams' seeds, since no value is ever computed.
    """
    if "rngs" in build_kwargs:
        raise TypeError("abstract_model makes its own rngs; pass seed=... instead of rngs=...")
    seed = build_kwargs.pop("seed", 0)

    def build():
        return build_model(name, rngs=nnx.Rngs(params=seed, dropout=seed + 1, noise=seed + 2), **build_kwargs)

    return nnx.eval_shape(build)


def layer_output_shapes(model: Network, input_shape: tuple[int, ...] | None = None
                        ) -> dict[str, tuple[int, ...]]:
    """Per-example output shape of each hidden layer and of ``"output"`` (eval mode)."""
    input_shape = tuple(input_shape or model.input_shape)
    graphdef, state = nnx.split(model)

    def run(state, x):
        outputs = {}
        nnx.merge(graphdef, state).forward(x, train=False,
                                           record=lambda n, v: outputs.__setitem__(n, v))
        return outputs

    shapes = jax.eval_shape(run, state, jax.ShapeDtypeStruct((1, *input_shape), jnp.float32))
    return {n: tuple(s.shape[1:]) for n, s in shapes.items()}


def layer_kind(layer: HiddenLayer) -> str:
    """E.g. ``"conv3x3 > batch > relu > maxpool"`` (the order the layer applies them)."""
    if isinstance(layer.linear, Conv):
        kh, kw = layer.linear.kernel_size
        linear = f"conv{kh}x{kw}"
    else:
        linear = "dense"
    if layer.linear.bias is None:
        linear += " (no bias)"
    parts = [linear]
    steps = [layer.norm_name, layer.activation]
    if layer.norm_position == "after_activation":
        steps.reverse()
    parts += [s for s in steps if s != "none"]
    if layer.dropout is not None:
        parts.append(f"dropout {layer.dropout.rate:g}")
    if layer.pool is not None:
        parts.append(f"{layer.pool}pool")
    return " > ".join(parts)


def describe_model(model: Network, input_shape: tuple[int, ...] | None = None
                   ) -> list[LayerRow]:
    """Rows ``input``, one per hidden layer, ``output``, and a final ``total`` row.

    Works on concrete models and on ``abstract_model(...)`` alike; nothing is computed but shapes.
    """
    input_shape = tuple(input_shape or model.input_shape)
    shapes = layer_output_shapes(model, input_shape)
    rows = [LayerRow("input", "", input_shape, 0, 0)]
    for name, layer in zip(model.activation_names, model.hidden):
        rows.append(LayerRow(name, layer_kind(layer), shapes[name], count_params(layer),
                             count_stats(layer)))
    head_kind = "dense" if model.head.bias is not None else "dense (no bias)"
    rows.append(LayerRow(OUTPUT_LAYER, head_kind, shapes[OUTPUT_LAYER], count_params(model.head),
                         count_stats(model.head)))
    rows.append(LayerRow("total", model.kind, shapes[OUTPUT_LAYER], count_params(model),
                         count_stats(model)))
    return rows


def format_description(rows: list[LayerRow]) -> str:
    """A plain-text table of ``describe_model`` rows, total last, thousands separated."""
    header = ("layer", "kind", "output shape", "params", "stats")
    table = [
        (r.name, r.kind, "x".join(map(str, r.output_shape)), f"{r.params:,}", f"{r.stats:,}")
        for r in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *table)]

    def line(cells):
        left = [str(c).ljust(w) for c, w in zip(cells[:3], widths[:3])]
        right = [str(c).rjust(w) for c, w in zip(cells[3:], widths[3:])]
        return "  ".join(left + right).rstrip()

    rule = "  ".join("-" * w for w in widths)
    body = [line(t) for t in table]
    footer = []
    if rows and rows[-1].name == "total":
        body.insert(len(body) - 1, rule)
        total = rows[-1]
        footer.append(f"params: trainable weights (nnx.Param); stats: running statistics (nnx.BatchStat). "
                      f"params + stats = {total.params + total.stats:,}")
    return "\n".join([line(header), rule, *body, *footer])
