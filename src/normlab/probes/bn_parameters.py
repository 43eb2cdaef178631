"""The norms' learned affine factors (d2l exercise 5): gamma ("scale") and beta ("bias") of every
norm layer, against their defaults 1 and 0.

Per norm layer, at a step (parameters only, so no BN mode: recorded as "none"):

- ``<layer>.gamma``, ``<layer>.beta``: the values themselves, one per unit (channel), shape (units,);
- ``<layer>.gamma_hist``, ``<layer>.beta_hist``: counts of ``gamma - 1`` and ``beta - 0`` in the
  bins ``edges = linspace(-r, r, bins + 1)`` (the same edges for both and at every step: the
  deviation from the default); ``<layer>.gamma_outside`` / ``beta_outside`` count the values
  beyond them;
- ``<layer>.gamma_mean``, ``gamma_std``, ``beta_mean``, ``beta_std`` (population std over the units);
- ``<layer>.gamma_dev = mean |gamma - 1|``, ``<layer>.beta_dev = mean |beta|``: how far the
  layer moved from the identity affine map.

A factor the norm holds fixed (``frozen_gamma``, ``frozen_beta``: a ``FrozenParam`` in the
state) is read where it is and marked untrained in the meta; one the norm does not have at all
(RMSNorm's shift) acts as its default and is reported as that constant (meta: "absent"). A
network whose norms have neither (``none``, ``no_affine``) has nothing to measure: the probe is
unavailable for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from normlab.probes.base import Headline, Output, ProbeContext, Schedule, check_finite_positive, check_positive, every
from normlab.train import NetworkSpec, state_at

FACTORS = {"gamma": ("scale", 1.0), "beta": ("bias", 0.0)}  # name -> (state key, default)


def deviation_edges(value_range: float, bins: int) -> np.ndarray:
    """Bin edges of ``gamma - 1`` and ``beta - 0``: ``linspace(-r, r, bins + 1)``."""
    return np.linspace(-value_range, value_range, bins + 1)


def norm_layers(spec: NetworkSpec) -> dict[str, dict[str, tuple[str, tuple] | None]]:
    """``{layer: {"gamma": (group, path) | None, "beta": ...}}`` of the norm layers that have a
    gamma or a beta, in order."""
    layers: dict[str, dict[str, tuple[str, tuple] | None]] = {}
    kinds = {state_key: name for name, (state_key, _default) in FACTORS.items()}
    for parameter in spec.norm_parameters:
        entry = layers.setdefault(parameter.layer, {"gamma": None, "beta": None})
        entry[kinds[parameter.kind]] = (parameter.group, parameter.path)
    return layers


@dataclass(frozen=True)
class BNParametersProbe:
    """Per norm layer: gamma and beta, their histograms (deviation from 1 and 0) and moments."""

    schedule: Schedule = field(default_factory=lambda: every(50))
    bins: int = 40  # histogram bins of gamma - 1 and beta
    value_range: float = 1.0  # histogram edges: linspace(-r, r, bins + 1)
    name: str = "bn_parameters"
    bn_mode: ClassVar[str] = "none"  # parameters only: no BN mode (a constant, not an option)
    needs = ()
    outputs = tuple(
        output
        for factor, default in (("gamma", 1), ("beta", 0))
        for output in (
            Output(f"{{layer}}.{factor}", ("units",), f"{factor} of every unit (channel) of the layer"),
            Output(f"{{layer}}.{factor}_hist", ("bins",), f"counts of {factor} - {default} in the bins of meta edges"),
            Output(f"{{layer}}.{factor}_outside", (), f"count of {factor} - {default} outside [edges[0], edges[-1]]"),
            Output(f"{{layer}}.{factor}_mean", (), f"mean of {factor} over the units"),
            Output(f"{{layer}}.{factor}_std", (), f"standard deviation of {factor} over the units"),
            Output(f"{{layer}}.{factor}_dev", (), f"mean |{factor} - {default}| over the units"),
        )
    )
    headline = Headline("{layer}.gamma_dev", "last", "mean |gamma - 1| of the last norm layer at the end")

    def __post_init__(self):
        check_positive(self, "bins")
        check_finite_positive(self, "value_range")

    def meta(self, spec: NetworkSpec) -> dict:
        layers = norm_layers(spec)
        if not layers:
            return {"available": False, "reason": "the network's norms have no gamma or beta (none, no_affine)"}
        return {
            "available": True,
            "bn_mode": self.bn_mode,
            "layers": list(layers),
            "edges": deviation_edges(self.value_range, self.bins).tolist(),
            "defaults": {"gamma": 1.0, "beta": 0.0},
            "factors": {
                layer: {factor: ("absent" if where is None else "trained" if where[0] == "params" else "frozen")
                        for factor, where in entry.items()}
                for layer, entry in layers.items()
            },
            "what": "gamma and beta of each norm layer; histograms of gamma - 1 and beta - 0",
            "paper": "d2l ex. 5",
        }

    def measure(self, ctx: ProbeContext) -> dict:
        layers = norm_layers(ctx.spec)
        if not layers:
            return {}
        edges = jnp.asarray(deviation_edges(self.value_range, self.bins))
        groups = {"params": ctx.state.params, "rest": ctx.state.rest}
        result = {}
        for layer, entry in layers.items():
            present = [where for where in entry.values() if where is not None]
            units = state_at(groups[present[0][0]], present[0][1]).shape[-1]
            for factor, (_key, default) in FACTORS.items():
                where = entry[factor]
                values = (jnp.full((units,), default, jnp.float32) if where is None
                          else jnp.asarray(state_at(groups[where[0]], where[1])).reshape(-1))
                deviation = values - default
                counts, _ = jnp.histogram(deviation, bins=edges)
                result[f"{layer}.{factor}"] = values
                result[f"{layer}.{factor}_hist"] = counts.astype(jnp.int32)
                result[f"{layer}.{factor}_outside"] = jnp.sum((deviation < edges[0]) | (deviation > edges[-1])).astype(
                    jnp.int32)
                result[f"{layer}.{factor}_mean"] = jnp.mean(values)
                result[f"{layer}.{factor}_std"] = jnp.std(values)
                result[f"{layer}.{factor}_dev"] = jnp.mean(jnp.abs(deviation))
        return result
