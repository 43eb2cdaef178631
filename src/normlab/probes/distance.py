"""Distance from initialization (S18 Lemma 4.5): per weight layer ``||W_t - W_0||_2``.

``W`` is the flattened kernel, ``W_0`` its value at step 0 (identical for the two networks of a
pair). ``total`` is the distance of all kernels together. Parameters only: no BN mode involved
(recorded as "none").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import jax
import jax.numpy as jnp

from normlab.probes.base import Headline, Output, ProbeContext, Schedule, every
from normlab.train import NetworkSpec, state_at


@dataclass(frozen=True)
class DistanceProbe:
    schedule: Schedule = field(default_factory=lambda: every(50))
    name: str = "distance"
    bn_mode: ClassVar[str] = "none"  # parameters only: no BN mode (a constant, not an option)
    needs = ()
    outputs = (
        Output("{layer}", (), "||W_t - W_0||_2 of the layer's kernel"),
        Output("total", (), "||W_t - W_0||_2 of all kernels together"),
    )
    headline = Headline("total", "last", "distance of all weights from init at the end")

    def setup(self, spec: NetworkSpec, state) -> dict:
        """The initial parameters ``W_0`` (the distances are measured from them)."""
        return state.params

    def meta(self, spec: NetworkSpec) -> dict:
        return {
            "available": True,
            "bn_mode": self.bn_mode,
            "layers": list(spec.weight_layer_names),
            "what": "||W_t - W_0||_2 of each weight layer's kernel",
            "paper": "S18 Lemma 4.5",
        }

    def measure(self, ctx: ProbeContext) -> dict:
        result: dict[str, jax.Array] = {}
        total: jax.Array | float = 0.0
        for name, path in zip(ctx.spec.weight_layer_names, ctx.spec.kernel_paths):
            delta = state_at(ctx.state.params, path) - state_at(ctx.setup[self.name], path)
            squared = jnp.sum(jnp.square(delta))
            result[name] = jnp.sqrt(squared)
            total = total + squared
        result["total"] = jnp.sqrt(total)
        return result
