"""Gradient statistics (seed notebook Part 1 "smoother gradient updates"; B18 heavy tails).

For every weight layer ``W`` (in ``spec.weight_layer_names`` order), from the gradient ``G`` of the
training loss the step itself computed (train mode, batch statistics; no extra pass):

- ``<layer>.mean``, ``<layer>.std``, ``<layer>.norm`` (``||G||_2`` of the flattened kernel);
- ``<layer>.hist``: counts of the entries of ``G`` in fixed symmetric log-spaced bins
  (``±logspace(-8, 1)`` and 0) so heavy tails are visible at every scale;
- ``tracked``: one kernel entry ``G[layer][index]`` (flat index), the single parameter whose
  gradient the seed notebook follows over steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from normlab.probes.base import Headline, Output, ProbeContext, Schedule, every
from normlab.train import NetworkSpec, state_at

DECADES_LOW, DECADES_HIGH, PER_DECADE = -8, 1, 3


def positive_edges(low: int = DECADES_LOW, high: int = DECADES_HIGH, per_decade: int = PER_DECADE) -> np.ndarray:
    """``p_j = 10^(low + j / per_decade)``, j = 0..M with ``M = (high - low) * per_decade``."""
    return np.logspace(low, high, (high - low) * per_decade + 1)


def gradient_edges(low: int = DECADES_LOW, high: int = DECADES_HIGH, per_decade: int = PER_DECADE) -> np.ndarray:
    """``[-p_M, ..., -p_0, 0, p_0, ..., p_M]``: 2M + 3 edges, 2M + 2 bins."""
    positive = positive_edges(low, high, per_decade)
    return np.concatenate([-positive[::-1], [0.0], positive])


def symmetric_log_histogram(values, low: int = DECADES_LOW, high: int = DECADES_HIGH, per_decade: int = PER_DECADE):
    """``np.histogram(values, gradient_edges(...))`` computed without a search over the edges.

    The bin of ``|v|`` among ``p_0 < ... < p_M`` follows from ``log10|v|`` in closed form; one
    comparison with the (float32) neighbouring edges corrects the rare value that rounding puts
    on the wrong side. Counting is one scatter-add: no search over the edges, which made
    ``jnp.histogram`` cost this probe several training steps on CPU (bench/probes.py).
    Bins as in NumPy: half-open ``[e_i, e_{i+1})``, the last one closed; values beyond
    ``±p_M`` (and NaN) are not counted.
    """
    edges = jnp.asarray(positive_edges(low, high, per_decade), dtype=values.dtype)
    m = edges.shape[0] - 1  # M: bins between consecutive positive edges
    magnitude = jnp.abs(values)
    guess = jnp.floor((jnp.log10(jnp.maximum(magnitude, edges[0])) - low) * per_decade).astype(jnp.int32)
    guess = jnp.clip(guess, 0, m - 1)
    # exact: p_j <= |v| < p_{j+1}, with |v| = p_M in the last bin
    j = guess - (magnitude < edges[guess]).astype(jnp.int32) + (magnitude >= edges[guess + 1]).astype(jnp.int32)
    j = jnp.where(magnitude == edges[m], m - 1, jnp.clip(j, -1, m))
    below = magnitude < edges[0]  # the bins next to zero: [-p_0, 0) and [0, p_0)
    positive_bin = jnp.where(below, m + 1, m + 2 + j)
    # Negative values mirror the positive ones, but NumPy's half-open bins do not: -p_j belongs
    # to [-p_j, -p_{j-1}), the bin one further from zero than the one +p_j falls in.
    on_edge = (magnitude == edges[jnp.clip(j, 0, m)]) & ~below & (magnitude != edges[m])
    negative_j = jnp.where(on_edge, j - 1, j)
    negative_bin = jnp.where(below, m, m - 1 - negative_j)
    bins = jnp.where(values >= 0, positive_bin, negative_bin)
    counted = (magnitude <= edges[m]) & ~jnp.isnan(values) & (bins >= 0) & (bins < 2 * m + 2)
    bins = jnp.where(counted, bins, 2 * m + 2)  # a spare slot for the uncounted, dropped below
    return jnp.zeros(2 * m + 3, jnp.int32).at[bins].add(1)[: 2 * m + 2]


@dataclass(frozen=True)
class GradientsProbe:
    schedule: Schedule = field(default_factory=lambda: every(50))
    tracked_layer: int = -1  # weight layer whose kernel entry is tracked
    tracked_index: int = 0  # flat index into that kernel
    name: str = "gradients"
    # The training step's own gradient, so always batch statistics (a constant, not an option).
    bn_mode: ClassVar[str] = "train"
    outputs = (
        Output("{layer}.mean", (), "mean of the kernel's gradient entries"),
        Output("{layer}.std", (), "standard deviation of the kernel's gradient entries"),
        Output("{layer}.norm", (), "||G||_2 of the flattened kernel gradient"),
        Output("{layer}.hist", ("bins",), "counts of the gradient entries in the symmetric log bins of meta edges"),
        Output("tracked", (), "the gradient of one kernel entry (meta tracked_layer, tracked_index)"),
    )
    headline = Headline("tracked", "std", "spread (std over steps) of the tracked parameter's gradient")

    def meta(self, spec: NetworkSpec) -> dict:
        layer = spec.weight_layer_names[self.tracked_layer % len(spec.weight_layer_names)]
        return {
            "available": True,
            "bn_mode": self.bn_mode,
            "layers": list(spec.weight_layer_names),
            "edges": gradient_edges().tolist(),
            "tracked_layer": layer,
            "tracked_index": self.tracked_index,
            "what": "gradient of the training loss w.r.t. each weight layer's kernel",
            "paper": "seed notebook Part 1; B18 Sec. 3 (heavy tails)",
        }

    def measure(self, ctx: ProbeContext) -> dict:
        spec = ctx.spec
        result = {}
        for name, path in zip(spec.weight_layer_names, spec.kernel_paths):
            grad = state_at(ctx.grads, path).reshape(-1)
            counts = symmetric_log_histogram(grad)
            result[f"{name}.mean"] = jnp.mean(grad)
            result[f"{name}.std"] = jnp.std(grad)
            result[f"{name}.norm"] = jnp.linalg.norm(grad)
            result[f"{name}.hist"] = counts
        tracked_path = spec.kernel_paths[self.tracked_layer % len(spec.kernel_paths)]
        tracked = state_at(ctx.grads, tracked_path).reshape(-1)
        result["tracked"] = tracked[min(self.tracked_index, tracked.shape[0] - 1)]
        return result
