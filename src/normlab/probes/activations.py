"""Activation distributions (BN15 Fig. 1, S18 Fig. 1/2/8, Part 1 of the seed notebooks).

For every hidden layer the model sows (the input to its nonlinearity: the norm's output when the
norm comes before the activation, the linear/conv output for the baseline), at a step:

- ``<layer>.hist``: counts of all values in fixed bins ``edges = linspace(-r, r, bins + 1)`` (the
  same edges at every step, so histograms over time are comparable); ``<layer>.outside`` counts
  values beyond ``[-r, r]``;
- ``<layer>.mean``, ``<layer>.std``, ``<layer>.var``: over all values of the layer;
- ``<layer>.sq_mean``: ``mean(a^2)``, the activation magnitude of d2l exercise 3;
- ``<layer>.unit_mean``, ``<layer>.unit_std``: per unit (channel for convs), over batch and
  positions; shape (units,). Their changes over time give the noisy-BN moment drift of S18 Fig. 8;
- ``tracked.percentiles``: the 15th/50th/85th percentiles of one unit of one layer over the batch
  and positions (BN15 Fig. 1 tracks a sigmoid input of the last hidden layer).

BN mode: "train" reads the activations the training step itself computed with batch statistics
(no extra pass); "eval" runs one forward pass with running averages on the same batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np

from normlab.probes.base import (
    Headline,
    Output,
    ProbeContext,
    Schedule,
    check_bn_mode,
    check_finite_positive,
    check_positive,
    every,
)
from normlab.train import NetworkSpec, apply_model

PERCENTILES = (15.0, 50.0, 85.0)


def histogram_edges(value_range: float, bins: int) -> np.ndarray:
    return np.linspace(-value_range, value_range, bins + 1)


def layer_statistics(values, edges) -> dict:
    """Histogram and moments of one layer's activations ``values`` (N, ..., units)."""
    flat = values.reshape(-1)
    counts, _ = jnp.histogram(flat, bins=jnp.asarray(edges))
    per_unit = values.reshape(-1, values.shape[-1])
    return {
        "hist": counts.astype(jnp.int32),
        "outside": jnp.sum((flat < edges[0]) | (flat > edges[-1])).astype(jnp.int32),
        "mean": jnp.mean(flat),
        "std": jnp.std(flat),
        "var": jnp.var(flat),
        "sq_mean": jnp.mean(jnp.square(flat)),
        "unit_mean": jnp.mean(per_unit, axis=0),
        "unit_std": jnp.std(per_unit, axis=0),
    }


@dataclass(frozen=True)
class ActivationsProbe:
    """Per-layer activation histograms and moments, and the percentiles of a tracked unit."""

    schedule: Schedule = field(default_factory=lambda: every(50))
    bins: int = 60  # histogram bins
    value_range: float = 5.0  # histogram edges: linspace(-r, r, bins + 1)
    tracked_layer: int = -1  # hidden layer whose unit is tracked (BN15 Fig. 1: the last)
    tracked_unit: int = 0  # unit (feature or channel) of tracked_layer whose percentiles are tracked (BN15 Fig. 1)
    bn_mode: str = "train"
    name: str = "activations"
    outputs = (
        Output("{layer}.hist", ("bins",), "counts of the layer's values in the bins of meta edges"),
        Output("{layer}.outside", (), "count of values outside [edges[0], edges[-1]]"),
        Output("{layer}.mean", (), "mean over all values of the layer"),
        Output("{layer}.std", (), "standard deviation over all values of the layer"),
        Output("{layer}.var", (), "variance over all values of the layer"),
        Output("{layer}.sq_mean", (), "mean(a^2), the activation magnitude (d2l ex. 3)"),
        Output("{layer}.unit_mean", ("units",), "per-unit (channel) mean over batch and positions"),
        Output("{layer}.unit_std", ("units",), "per-unit (channel) standard deviation over batch and positions"),
        Output("tracked.percentiles", ("percentiles",), "percentiles (meta percentiles) of the tracked unit"),
    )
    headline = Headline("{layer}.std", "last", "std of the last hidden layer's activations at the end")

    def __post_init__(self):
        check_bn_mode(self.bn_mode)
        check_positive(self, "bins")
        check_finite_positive(self, "value_range")

    def _tracked(self, spec: NetworkSpec) -> tuple[int, str]:
        names = spec.activation_names
        index = self.tracked_layer % len(names)
        return index, names[index]

    def meta(self, spec: NetworkSpec) -> dict:
        if not spec.activation_names:
            return {"available": False, "reason": "the model sows no activations"}
        _, tracked_name = self._tracked(spec)
        return {
            "available": True,
            "bn_mode": self.bn_mode,
            "layers": list(spec.activation_names),
            "edges": histogram_edges(self.value_range, self.bins).tolist(),
            "tracked_layer": tracked_name,
            "tracked_unit": self.tracked_unit,
            "percentiles": list(PERCENTILES),
            "what": "inputs to each hidden nonlinearity (after the norm, if any)",
            "paper": "BN15 Fig. 1; S18 Fig. 1, 2, 8; seed notebook Part 1",
        }

    def measure(self, ctx: ProbeContext) -> dict:
        spec = ctx.spec
        if not spec.activation_names:
            return {}
        activations = ctx.activations
        if self.bn_mode == "eval":
            _out, _rest, activations = apply_model(spec, ctx.state.params, ctx.state.rest, ctx.x, train=False)
        edges = histogram_edges(self.value_range, self.bins)
        result = {}
        for name, values in zip(spec.activation_names, activations):
            for key, value in layer_statistics(values, edges).items():
                result[f"{name}.{key}"] = value
        index, _ = self._tracked(spec)
        tracked = activations[index].reshape(-1, activations[index].shape[-1])
        unit = min(self.tracked_unit, tracked.shape[-1] - 1)
        result["tracked.percentiles"] = jnp.percentile(tracked[:, unit], jnp.asarray(PERCENTILES))
        return result
