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

import jax.numpy as jnp
import numpy as np

from normlab.probes.base import ProbeContext, Schedule, check_bn_mode, every
from normlab.train import NetworkSpec, state_at


def gradient_edges(decades_low: int = -8, decades_high: int = 1, per_decade: int = 3) -> np.ndarray:
    positive = np.logspace(decades_low, decades_high, (decades_high - decades_low) * per_decade + 1)
    return np.concatenate([-positive[::-1], [0.0], positive])


@dataclass(frozen=True)
class GradientsProbe:
    schedule: Schedule = field(default_factory=lambda: every(50))
    tracked_layer: int = -1
    tracked_index: int = 0
    bn_mode: str = "train"
    name: str = "gradients"

    def __post_init__(self):
        if check_bn_mode(self.bn_mode) != "train":
            raise ValueError("the gradients probe reads the training gradient: bn_mode must be 'train'")

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
        edges = jnp.asarray(gradient_edges())
        result = {}
        for name, path in zip(spec.weight_layer_names, spec.kernel_paths):
            grad = state_at(ctx.grads, path).reshape(-1)
            counts, _ = jnp.histogram(grad, bins=edges)
            result[f"{name}.mean"] = jnp.mean(grad)
            result[f"{name}.std"] = jnp.std(grad)
            result[f"{name}.norm"] = jnp.linalg.norm(grad)
            result[f"{name}.hist"] = counts.astype(jnp.int32)
        tracked_path = spec.kernel_paths[self.tracked_layer % len(spec.kernel_paths)]
        tracked = state_at(ctx.grads, tracked_path).reshape(-1)
        result["tracked"] = tracked[min(self.tracked_index, tracked.shape[0] - 1)]
        return result
