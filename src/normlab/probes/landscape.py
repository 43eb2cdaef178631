"""Loss landscape, gradient predictiveness, effective beta-smoothness (S18 Fig. 4) and the
divergence probe (B18): what happens along the gradient direction.

At step ``t`` with parameters ``theta`` (all ``nnx.Param`` leaves: kernels, biases, norm
scales and biases) and ``d`` the training gradient of the step (train mode, the full gradient of
the loss w.r.t. every parameter -- the direction the network is actually pushed in), for each step
size ``eta_j`` (j = 1..K)::

    landscape       L(theta - eta_j d)                                    S18 Fig. 4a
    predictiveness  ||g(theta) - g(theta - eta_j d)||_2                    S18 Fig. 4b
    beta_smoothness max_j ||g(theta) - g(theta - eta_j d)||_2 / ||eta_j d||_2   S18 Fig. 4c
    divergence      L(theta - eta_j d) / L(theta),  eta on a log grid     B18 Sec. 2 (relative loss)

``L`` and ``g = grad L`` (global L2 norm over all parameters) are evaluated in the probe's BN mode:
"train" (default) = batch statistics of the step's batch, so ``g(theta) = d`` and ``L(theta)``
is the step's loss; "eval" = running averages (one extra forward+backward at ``theta``). The
direction is the training gradient in both modes. Running statistics are never advanced.

Step sizes: landscape, predictiveness and beta_smoothness use ``eta = m * lr`` with ``lr`` the
learning rate of the step and ``m`` K multipliers spread over ``[low, high]`` (default 8 over
[0.5, 4], S18's VGG range; the DLN uses [0.01, 30]), ``spacing`` "linear" or "log".
Divergence uses absolute step sizes on a log grid (default 9 over 1e-5..1e-1, two per decade).

Sharing: landscape, predictiveness and beta_smoothness with the same grid read one shared piece
``"gradient_walk"`` (``ctx.piece``, :mod:`normlab.probes.shared`): K forward+backward passes for the
three together, what predictiveness alone costs; landscape or divergence alone cost K forward passes
(XLA drops the unused backward).
``batching`` lays the K points out as "unrolled" (a Python loop in the jit: the default for conv
nets, where vmapped weight variants become slow grouped convolutions on CPU and ``lax.map``
bodies run slowly), "map" (``lax.map``: the default when every parameter is at most 2-D) or
"vmap" (measured slowest on every model here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from normlab.probes.base import (
    Headline,
    Output,
    ProbeContext,
    Schedule,
    at_steps,
    check_bn_mode,
    check_positive,
    every,
    require,
)
from normlab.probes.shared import global_norm, mode_loss
from normlab.train import NetworkSpec

SPACINGS = ("linear", "log")
BATCHINGS = ("auto", "unrolled", "vmap", "map")


# ------------------------------------------------------------------------------- step sizes


def step_size_grid(low: float, high: float, points: int, spacing: str) -> np.ndarray:
    """K numbers from ``low`` to ``high`` (inclusive), evenly spaced or evenly log-spaced."""
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {SPACINGS}; got {spacing!r}")
    if not (points >= 1 and 0 < low <= high):
        raise ValueError(f"step sizes need points >= 1 and 0 < low <= high; got {points}, [{low}, {high}]")
    if spacing == "log":
        return np.geomspace(low, high, points)
    return np.linspace(low, high, points)


def _check_batching(batching: str) -> str:
    require(batching in BATCHINGS, "batching", f"one of {', '.join(BATCHINGS)}", batching)
    return batching


def resolve_batching(batching: str, params) -> str:
    """"auto" -> "map" for dense-only networks, "unrolled" when a kernel has more than 2 axes (convs).

    Why (measured by bench/probes.py): ``lax.map`` wins where many tiny dense layers make
    per-operation overhead dominate, is close on a small MLP and compiles several times faster;
    on CPU, ``lax.map`` over conv bodies and vmapped weight variants (grouped convolutions) are
    many times slower than the unrolled loop.
    """
    if batching != "auto":
        return batching
    dense_only = all(jnp.ndim(leaf) <= 2 for leaf in jax.tree.leaves(params))
    return "map" if dense_only else "unrolled"


# ------------------------------------------------------------------------------- pure maths


def _walk_point(spec, params, rest, x, y, direction, reference, eta, train):
    """``(L(theta - eta d), ||g_ref - g(theta - eta d)||)`` at one step size."""
    moved = jax.tree.map(lambda p, d: p - eta * d, params, direction)
    loss, grads = jax.value_and_grad(mode_loss, argnums=1)(spec, moved, rest, x, y, train)
    distance = global_norm(jax.tree.map(jnp.subtract, reference, grads))
    return loss, distance


def start_point(spec: NetworkSpec, params, rest, x, y, *, loss, grads, bn_mode: str):
    """``(L(theta), g(theta))`` in ``bn_mode``: the training step's own values in train mode."""
    if bn_mode == "train":
        return loss, grads
    return jax.value_and_grad(mode_loss, argnums=1)(spec, params, rest, x, y, False)


def gradient_walk(spec: NetworkSpec, params, rest, x, y, direction, reference, etas, *,
                  bn_mode: str = "train", batching: str = "auto"):
    """Losses ``(K,)`` and gradient distances ``(K,)`` at ``theta - eta_j d`` for each step size.

    ``losses[j] = L(theta - etas[j] * direction)``,
    ``distances[j] = ||reference - grad L(theta - etas[j] * direction)||_2`` (all parameters),
    both in ``bn_mode``. ``etas``: (K,) array. Pure; the probes reach it as the shared piece
    ``"gradient_walk"``, computed once per network, step and grid.
    """
    train = bn_mode == "train"
    batching = resolve_batching(batching, params)

    def point(eta):
        return _walk_point(spec, params, rest, x, y, direction, reference, eta, train)

    if batching == "vmap":
        return jax.vmap(point)(etas)
    if batching == "map":
        return jax.lax.map(point, etas)
    results = [point(etas[j]) for j in range(etas.shape[0])]
    return jnp.stack([r[0] for r in results]), jnp.stack([r[1] for r in results])


class Walk(NamedTuple):
    """What the four probes read: step sizes (K,), L(theta), g(theta), losses (K,), distances (K,)."""

    etas: jax.Array
    loss0: jax.Array
    reference: object
    losses: jax.Array
    distances: jax.Array


def compute_walk(ctx: ProbeContext, etas, *, bn_mode: str, batching: str) -> Walk:
    """:func:`start_point` and :func:`gradient_walk` along the training gradient of ``ctx``."""
    spec, state = ctx.spec, ctx.state
    loss0, reference = start_point(spec, state.params, state.rest, ctx.x, ctx.y,
                                   loss=ctx.loss, grads=ctx.grads, bn_mode=bn_mode)
    losses, distances = gradient_walk(spec, state.params, state.rest, ctx.x, ctx.y, ctx.grads, reference,
                                      etas, bn_mode=bn_mode, batching=batching)
    return Walk(etas, loss0, reference, losses, distances)


# ------------------------------------------------------------------------------------ probes


@dataclass(frozen=True)
class _WalkProbe:
    """Shared options and the shared pass of the four step-size probes."""

    schedule: Schedule = field(default_factory=lambda: every(100))
    points: int = 8  # step sizes K
    low: float = 0.5  # smallest step size, a multiple of lr
    high: float = 4.0  # largest step size, a multiple of lr
    spacing: str = "linear"  # of the step sizes: "linear" or "log"
    bn_mode: str = "train"
    batching: str = "auto"  # step sizes: "auto", "unrolled", "map" or "vmap" (never vmap conv nets on CPU)
    relative_to_lr = True  # class constant: step sizes are multiples of the learning rate
    needs = ("gradient_walk",)

    def __post_init__(self):
        check_bn_mode(self.bn_mode)
        _check_batching(self.batching)
        check_positive(self, "points")
        require(self.spacing in SPACINGS, "spacing", f"one of {', '.join(SPACINGS)}", self.spacing)
        require(math.isfinite(self.low) and self.low > 0, "low", "a finite number > 0", self.low)
        require(math.isfinite(self.high) and self.high > self.low, "high", f"a finite number > low = {self.low:g}",
                self.high)

    def multipliers(self) -> np.ndarray:
        return step_size_grid(self.low, self.high, self.points, self.spacing)

    def step_sizes(self, ctx: ProbeContext):
        grid = jnp.asarray(self.multipliers(), dtype=jnp.result_type(float))
        return grid * ctx.learning_rate if self.relative_to_lr else grid

    def walk(self, ctx: ProbeContext) -> Walk:
        """The gradient walk of this probe's grid, computed once per network and step (``ctx.piece``)."""
        key = (tuple(self.multipliers().tolist()), self.relative_to_lr, self.bn_mode, self.batching)
        return ctx.piece("gradient_walk", key, lambda: compute_walk(ctx, self.step_sizes(ctx), bn_mode=self.bn_mode,
                                                                    batching=self.batching))

    def _meta(self, spec: NetworkSpec, **extra) -> dict:
        unit = "x learning rate" if self.relative_to_lr else "absolute"
        return {
            "available": True,
            "bn_mode": self.bn_mode,
            "layers": list(spec.weight_layer_names),
            "step_sizes": self.multipliers().tolist(),
            "step_size_unit": unit,
            "spacing": self.spacing,
            "direction": "the training gradient d of the step (train mode, all parameters)",
            "batching": self.batching,
            **extra,
        }


@dataclass(frozen=True)
class LandscapeProbe(_WalkProbe):
    """Loss along the gradient direction at K step sizes, with its min-max band (S18 Fig. 4a).

    Keys: ``loss`` (K,) = L(theta - eta_j d); ``min``, ``max``, ``spread`` = max - min;
    ``loss0`` = L(theta); ``etas`` (K,) the absolute step sizes used.
    """

    name: str = "landscape"
    outputs = (
        Output("loss", ("points",), "L(theta - eta_j d)"),
        Output("min", (), "min_j of loss"),
        Output("max", (), "max_j of loss"),
        Output("spread", (), "max - min of loss"),
        Output("loss0", (), "L(theta)"),
        Output("etas", ("points",), "the absolute step sizes eta_j"),
    )
    headline = Headline("spread", "median", "median over the run of spread (mean over layers/points)")

    def meta(self, spec: NetworkSpec) -> dict:
        return self._meta(spec, formula="loss_j = L(theta - eta_j d), eta_j = m_j * lr",
                          paper="S18 Fig. 4a")

    def measure(self, ctx: ProbeContext) -> dict:
        walk = self.walk(ctx)
        losses = walk.losses
        return {"loss": losses, "min": jnp.min(losses), "max": jnp.max(losses),
                "spread": jnp.max(losses) - jnp.min(losses), "loss0": walk.loss0, "etas": walk.etas}


@dataclass(frozen=True)
class PredictivenessProbe(_WalkProbe):
    """Gradient change along the gradient direction at K step sizes (S18 Fig. 4b).

    Keys: ``distance`` (K,) = ||g(theta) - g(theta - eta_j d)||_2; ``min``, ``max``;
    ``grad_norm`` = ||g(theta)||_2; ``etas`` (K,).
    """

    name: str = "predictiveness"
    outputs = (
        Output("distance", ("points",), "||g(theta) - g(theta - eta_j d)||_2"),
        Output("min", (), "min_j of distance"),
        Output("max", (), "max_j of distance"),
        Output("grad_norm", (), "||g(theta)||_2"),
        Output("etas", ("points",), "the absolute step sizes eta_j"),
    )
    headline = Headline("max", "median", "median over the run of max (mean over layers/points)")

    def meta(self, spec: NetworkSpec) -> dict:
        return self._meta(spec, formula="distance_j = ||g(theta) - g(theta - eta_j d)||_2 (all parameters)",
                          paper="S18 Fig. 4b")

    def measure(self, ctx: ProbeContext) -> dict:
        walk = self.walk(ctx)
        distances = walk.distances
        return {"distance": distances, "min": jnp.min(distances), "max": jnp.max(distances),
                "grad_norm": global_norm(walk.reference), "etas": walk.etas}


@dataclass(frozen=True)
class BetaSmoothnessProbe(_WalkProbe):
    """Effective beta-smoothness: the largest gradient change per unit step (S18 Fig. 4c).

    Keys: ``beta`` = max_j ratio_j; ``ratio`` (K,) = ||g(theta) - g(theta - eta_j d)|| / ||eta_j d||;
    ``etas`` (K,).
    """

    name: str = "beta_smoothness"
    outputs = (
        Output("beta", (), "max_j of ratio"),
        Output("ratio", ("points",), "||g(theta) - g(theta - eta_j d)||_2 / ||eta_j d||_2"),
        Output("etas", ("points",), "the absolute step sizes eta_j"),
    )
    headline = Headline("beta", "median", "median over the run of beta (mean over layers/points)")

    def meta(self, spec: NetworkSpec) -> dict:
        return self._meta(spec, formula="beta = max_j ||g(theta) - g(theta - eta_j d)||_2 / ||eta_j d||_2",
                          paper="S18 Fig. 4c")

    def measure(self, ctx: ProbeContext) -> dict:
        walk = self.walk(ctx)
        # ||eta_j d||: the step actually taken is along the training gradient d.
        ratio = walk.distances / (walk.etas * global_norm(ctx.grads))
        return {"beta": jnp.max(ratio), "ratio": ratio, "etas": walk.etas}


@dataclass(frozen=True)
class DivergenceProbe(_WalkProbe):
    """Relative loss after one gradient step of absolute size eta (B18, at the first batches).

    Keys: ``ratio`` (K,) = L(theta - eta_j d) / L(theta); ``loss`` (K,); ``loss0`` = L(theta);
    ``max_ratio``; ``etas`` (K,). A ratio above 1 means a step of that size increases the loss
    (B18: without BN, large steps blow the loss up at initialization).
    """

    schedule: Schedule = field(default_factory=lambda: at_steps(0, 1, 2, 3, 4))
    points: int = 9  # step sizes K (B18)
    low: float = 1e-5  # smallest step size (absolute)
    high: float = 1e-1  # largest step size (absolute)
    spacing: str = "log"  # of the step sizes: "log" or "linear"
    name: str = "divergence"
    relative_to_lr = False
    outputs = (
        Output("ratio", ("points",), "L(theta - eta_j d) / L(theta)"),
        Output("loss", ("points",), "L(theta - eta_j d)"),
        Output("loss0", (), "L(theta)"),
        Output("max_ratio", (), "max_j of ratio"),
        Output("etas", ("points",), "the absolute step sizes eta_j"),
    )
    headline = Headline("max_ratio", "median", "median over the run of max_ratio (mean over layers/points)")

    def meta(self, spec: NetworkSpec) -> dict:
        return self._meta(spec, formula="ratio_j = L(theta - eta_j d) / L(theta), eta_j absolute",
                          paper="B18 (Bjorck et al. 2018), relative loss after one step")

    def measure(self, ctx: ProbeContext) -> dict:
        walk = self.walk(ctx)
        ratio = walk.losses / walk.loss0
        return {"ratio": ratio, "loss": walk.losses, "loss0": walk.loss0, "max_ratio": jnp.max(ratio),
                "etas": walk.etas}
