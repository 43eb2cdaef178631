"""Curvature probes: the Hessian of the training loss through Hessian-vector products.

``H = d^2 L / d theta^2`` over every trainable parameter (all ``nnx.Param`` leaves, flattened in
``jax.tree.leaves`` order, ``n`` numbers), on the step's batch and at the state *before* the
update. ``H v`` is forward-over-reverse, ``jax.jvp`` of ``jax.grad`` (one HVP costs about one
forward+backward pass and a half, i.e. roughly two training steps), evaluated in the probe's BN
mode: "train" = batch statistics (the Hessian of the loss BN training actually descends; the
batch mean and variance depend on theta and are differentiated through), "eval" = running
averages (the Hessian of the population-statistics network, PyHessian's only mode). Running
statistics are never advanced.

Probes (the linear algebra is in :mod:`normlab.probes.lanczos`):

- ``hessian_top`` -- the ``k`` largest eigenvalues (sharpness, C21) by ``m`` Lanczos steps with
  full reorthogonalization, with each Ritz pair's residual ``||H y - theta y||``; or by deflated
  power iteration (``method="power"``). Per-layer option: the top eigenvalue of each diagonal
  block ``H_bb`` (the parameters of weight layer b, as :func:`normlab.probes.ics.parameter_owners`
  assigns them).
- ``hessian_trace`` -- Hutchinson's estimate with Rademacher vectors and its standard error;
  per-layer option: ``tr(H_bb)`` from the same vectors.
- ``hessian_density`` -- stochastic Lanczos quadrature (G19 Sec. 2): Ritz values and weights of
  ``starts`` runs of ``m`` steps, so the density can be redrawn at any smoothing.
- ``gradient_concentration`` -- G19 Sec. 4: ``||P_k g||^2 / ||g||^2`` for the projection onto
  the top-1..k Ritz vectors, ``g`` the gradient in the probe's BN mode.

Sharing: ``hessian_top`` (Lanczos), the first SLQ start of ``hessian_density`` and
``gradient_concentration`` read one Lanczos run per network and step, computed by the first of
them as the shared piece ``"lanczos_run"`` (keyed by BN mode, seed and steps; the HVP closure is the
piece ``"hessian_vector_product"``): ``m`` HVPs for all three.

Random vectors come from ``fold_in(fold_in(key(seed), step), purpose)``: a resumed run or a
rerun draws the same vectors at the same step, and the networks of a group share them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from normlab.probes import lanczos as la
from normlab.probes.base import Headline, Output, ProbeContext, Schedule, check_bn_mode, check_positive, every, require
from normlab.probes.ics import flat_parameters, parameter_owners
from normlab.probes.shared import mode_loss
from normlab.train import NetworkSpec

METHODS = ("lanczos", "power")
# fold_in tags: one independent stream of random vectors per purpose
_LANCZOS_START, _LANCZOS_RESTART, _HUTCHINSON, _SLQ, _LAYER = range(5)


# ----------------------------------------------------------------------------- HVP closures


def flat_hvp(spec: NetworkSpec, params, rest, x, y, *, train: bool) -> tuple[Callable, jax.Array]:
    """``(hvp, theta)``: ``hvp(v) = H v`` on flat (n,) vectors and the flat parameters ``theta``.

    Forward-over-reverse: ``H v = d/de grad L(theta + e v) |_{e=0}`` (``jax.jvp`` of ``jax.grad``).
    """
    theta, unravel = ravel_pytree(params)

    def grad_at(p):
        return jax.grad(mode_loss, argnums=1)(spec, p, rest, x, y, train=train)

    def hvp(v):
        _grads, tangent = jax.jvp(grad_at, (params,), (unravel(v.astype(theta.dtype)),))
        return ravel_pytree(tangent)[0]

    return hvp, theta


def flat_gradient(spec: NetworkSpec, params, rest, x, y, *, train: bool) -> jax.Array:
    """``grad L`` flattened like :func:`flat_hvp`'s vectors."""
    return ravel_pytree(jax.grad(mode_loss, argnums=1)(spec, params, rest, x, y, train=train))[0]


def layer_blocks(spec: NetworkSpec, params) -> tuple[tuple[str, np.ndarray], ...]:
    """``(layer name, flat indices)`` of each weight layer's parameters (kernel, bias, its norm's
    scale and bias), in ``spec.weight_layer_names`` order; parameters owned by no layer are left out."""
    paths, leaves, _treedef = flat_parameters(params)
    owners = parameter_owners(paths, spec.kernel_paths)
    offsets = np.cumsum([0] + [int(np.size(leaf)) for leaf in leaves])
    blocks = []
    for j, name in enumerate(spec.weight_layer_names):
        pieces = [np.arange(offsets[i], offsets[i + 1]) for i, owner in enumerate(owners) if owner == j]
        blocks.append((name, np.concatenate(pieces) if pieces else np.zeros(0, np.int64)))
    return tuple(blocks)


def block_hvp(hvp: Callable, indices: np.ndarray, n: int) -> Callable:
    """``u -> (H v)[indices]`` with ``v`` = ``u`` placed at ``indices``, zero elsewhere: ``H_bb u``."""
    index = jnp.asarray(indices)

    def restricted(u):
        return hvp(jnp.zeros((n,), u.dtype).at[index].set(u))[index]

    return restricted


def probe_key(seed: int, step, purpose: int) -> jax.Array:
    """The key of one purpose's random vectors at one step: a pure function of (seed, step)."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), step), purpose)


# ------------------------------------------------------------------------- the shared pass


class Curvature(NamedTuple):
    """What a step's curvature probes read: the HVP closure, theta (n,), the shared run, the gradient."""

    hvp: Callable
    theta: jax.Array
    run: la.LanczosRun | None
    gradient: jax.Array | None

    def lanczos_run(self) -> la.LanczosRun:
        """The shared run; a probe that reads it asked for it (``need_run=True``, the default)."""
        if self.run is None:
            raise ValueError("this Curvature has no Lanczos run: build it with need_run=True")
        return self.run

    def loss_gradient(self) -> jax.Array:
        """The flattened gradient; a probe that reads it asked for it (``need_gradient=True``)."""
        if self.gradient is None:
            raise ValueError("this Curvature has no gradient: build it with need_gradient=True")
        return self.gradient


def _steps(m: int, n: int) -> int:
    return max(1, min(m, n))


def shared_curvature(ctx: ProbeContext, *, bn_mode: str, steps: int, seed: int, need_run: bool = True,
                     need_gradient: bool = False) -> Curvature:
    """The HVP closure of ``ctx`` in ``bn_mode`` and one Lanczos run of ``steps`` steps from a
    Gaussian start, each a shared piece of the step (``ctx.piece``), so that every curvature probe
    of the step reads the same run."""
    state, train = ctx.state, bn_mode == "train"
    hvp, theta = ctx.piece("hessian_vector_product", (bn_mode,),
                           lambda: flat_hvp(ctx.spec, state.params, state.rest, ctx.x, ctx.y, train=train))
    n = theta.shape[0]

    def run_lanczos():
        v0 = jax.random.normal(probe_key(seed, ctx.step, _LANCZOS_START), (n,), theta.dtype)
        return la.lanczos(hvp, v0, _steps(steps, n), key=probe_key(seed, ctx.step, _LANCZOS_RESTART))

    run = ctx.piece("lanczos_run", (bn_mode, seed, steps), run_lanczos) if need_run else None
    gradient = None
    if need_gradient:
        gradient = (ravel_pytree(ctx.grads)[0] if train else
                    flat_gradient(ctx.spec, state.params, state.rest, ctx.x, ctx.y, train=False))
    return Curvature(hvp, theta, run, gradient)


# ------------------------------------------------------------------------------------ probes


@dataclass(frozen=True)
class _CurvatureProbe:
    """Options every curvature probe shares (the shared run is keyed by them)."""

    schedule: Schedule = field(default_factory=lambda: every(100))
    bn_mode: str = "train"
    lanczos_steps: int = 20  # Lanczos steps m (one run shared by the curvature probes)
    seed: int = 0  # of the random start vectors

    def __post_init__(self):
        check_bn_mode(self.bn_mode)
        check_positive(self, "lanczos_steps")

    def curvature(self, ctx: ProbeContext, **needs) -> Curvature:
        return shared_curvature(ctx, bn_mode=self.bn_mode, steps=self.lanczos_steps, seed=self.seed, **needs)

    def _meta(self, spec: NetworkSpec, **extra) -> dict:
        return {"available": True, "bn_mode": self.bn_mode, "lanczos_steps": self.lanczos_steps,
                "parameters": "every nnx.Param, flattened", "layers": list(spec.weight_layer_names), **extra}


def _per_layer_top(hvp, n: int, blocks, steps: int, key, dtype) -> tuple[jax.Array, jax.Array]:
    """Top eigenvalue and its residual of every diagonal block ``H_bb`` (NaN for an empty block)."""
    tops, residuals = [], []
    for j, (_name, indices) in enumerate(blocks):
        if len(indices) == 0:
            tops.append(jnp.asarray(jnp.nan, dtype))
            residuals.append(jnp.asarray(jnp.nan, dtype))
            continue
        restricted = block_hvp(hvp, indices, n)
        block_key = jax.random.fold_in(key, j)
        v0 = jax.random.normal(block_key, (len(indices),), dtype)
        run = la.lanczos(restricted, v0, _steps(steps, len(indices)), key=jax.random.fold_in(block_key, 1))
        value, residual, _vectors = la.top_ritz(run, 1)
        tops.append(value[0])
        residuals.append(residual[0])
    return jnp.stack(tops), jnp.stack(residuals)


@dataclass(frozen=True)
class HessianTopProbe(_CurvatureProbe):
    """The ``k`` largest Hessian eigenvalues and their Ritz residuals (C21 sharpness; G19 outliers).

    Keys: ``eigenvalues`` (k,) descending; ``residuals`` (k,) = ``||H y_i - lambda_i y_i||`` for unit
    Ritz vectors ``y_i`` (small = converged; compare with the eigenvalue's size); ``top`` =
    ``eigenvalues[0]``; ``smallest`` (Lanczos only: the most negative Ritz value, NaN for power);
    ``two_over_lr`` = 2 / lr (C21: GD on a quadratic diverges when ``top > 2/lr``).
    ``per_layer``: also ``layer_top`` (layers,) and ``layer_residual`` (layers,), the top
    eigenvalue of each layer's diagonal block (``lanczos_steps`` HVPs per layer).
    Cost: ``lanczos_steps`` HVPs (shared), or ``k * (power_iterations + 1)`` for power iteration.
    """

    k: int = 1  # number of largest eigenvalues
    method: str = "lanczos"  # "lanczos" or "power" (power iteration, largest magnitude)
    power_iterations: int = 20  # with method=power: iterations per eigenvalue
    per_layer: bool = False  # also the top eigenvalue of each layer's diagonal block
    name: str = "hessian_top"
    needs = ("hessian_vector_product", "lanczos_run")
    headline = Headline("top", "last", "top Hessian eigenvalue at the last measurement")

    @property
    def outputs(self) -> tuple[Output, ...]:
        common = (
            Output("eigenvalues", ("k",), "the k largest eigenvalues, descending"),
            Output("residuals", ("k",), "||H y_i - lambda_i y_i|| of each unit Ritz vector"),
            Output("top", (), "the largest eigenvalue (sharpness)"),
            Output("smallest", (), "the most negative Ritz value (NaN for power iteration)"),
            Output("two_over_lr", (), "2 / learning rate (C21)"),
        )
        blocks = (Output("layer_top", ("layers",), "top eigenvalue of each layer's diagonal block H_bb"),
                  Output("layer_residual", ("layers",), "its Ritz residual"))
        return common + (blocks if self.per_layer else ())

    def __post_init__(self):
        super().__post_init__()
        require(self.method in METHODS, "method", f"one of {', '.join(METHODS)}", self.method)
        check_positive(self, "k", "power_iterations")

    def meta(self, spec: NetworkSpec) -> dict:
        return self._meta(
            spec,
            k=self.k,
            method=self.method,
            power_iterations=self.power_iterations,
            per_layer=self.per_layer,
            formula="top-k eigenvalues of H = d^2 L / d theta^2 (Lanczos, full reorthogonalization)",
            paper="C21 Fig. 1 (sharpness vs 2/lr); G19 Fig. 2 (outliers)",
        )

    def measure(self, ctx: ProbeContext) -> dict:
        curvature = self.curvature(ctx, need_run=self.method == "lanczos")
        n = curvature.theta.shape[0]
        if self.method == "lanczos":
            run = curvature.lanczos_run()
            k = min(self.k, run.alphas.shape[0])
            values, residuals, _vectors = la.top_ritz(run, k)
            smallest = la.ritz_pairs(run).values[0]
        else:
            v0 = jax.random.normal(probe_key(self.seed, ctx.step, _LANCZOS_START), (n,), curvature.theta.dtype)
            values, residuals, _vectors = la.power_iteration(curvature.hvp, v0, min(self.k, n), self.power_iterations)
            order = jnp.argsort(-values)
            values, residuals = values[order], residuals[order]
            smallest = jnp.asarray(jnp.nan, values.dtype)
        outputs = {"eigenvalues": values, "residuals": residuals, "top": values[0], "smallest": smallest,
                   "two_over_lr": 2.0 / ctx.learning_rate}
        if self.per_layer:
            blocks = layer_blocks(ctx.spec, ctx.state.params)
            tops, block_residuals = _per_layer_top(curvature.hvp, n, blocks, self.lanczos_steps,
                                                   probe_key(self.seed, ctx.step, _LAYER), curvature.theta.dtype)
            outputs |= {"layer_top": tops, "layer_residual": block_residuals}
        return outputs


@dataclass(frozen=True)
class HessianTraceProbe(_CurvatureProbe):
    """Hutchinson's trace estimate ``tr(H) ~ (1/V) sum_j z_j^T H z_j``, Rademacher ``z_j`` (Avron &
    Toledo 2011; PyHessian's ``trace``).

    Keys: ``trace``; ``stderr`` = std_j / sqrt(V) (the estimate is within about 2 stderr of the
    truth); ``samples`` (V,). ``per_layer``: also ``layer_trace`` (layers,) = ``tr(H_bb)`` and
    ``layer_stderr`` from the same vectors restricted to each layer (``V`` HVPs per layer).
    Cost: ``V = vectors`` HVPs.
    """

    vectors: int = 10  # Rademacher vectors V
    per_layer: bool = False  # also the trace of each layer's diagonal block
    name: str = "hessian_trace"
    needs = ("hessian_vector_product",)
    headline = Headline("trace", "last", "Hessian trace at the last measurement")

    @property
    def outputs(self) -> tuple[Output, ...]:
        common = (Output("trace", (), "mean_j z_j^T H z_j"), Output("stderr", (), "std_j / sqrt(V)"),
                  Output("samples", ("vectors",), "z_j^T H z_j"))
        blocks = (Output("layer_trace", ("layers",), "tr(H_bb) per layer"),
                  Output("layer_stderr", ("layers",), "its standard error"))
        return common + (blocks if self.per_layer else ())

    def __post_init__(self):
        super().__post_init__()
        check_positive(self, "vectors")

    def meta(self, spec: NetworkSpec) -> dict:
        return self._meta(
            spec,
            vectors=self.vectors,
            per_layer=self.per_layer,
            formula="tr(H) ~ mean_j z_j^T H z_j, z_j Rademacher; stderr = std / sqrt(V)",
            paper="G19 Sec. 2 / PyHessian trace (Yao et al. 2020)",
        )

    def measure(self, ctx: ProbeContext) -> dict:
        curvature = self.curvature(ctx, need_run=False)
        n, dtype = curvature.theta.shape[0], curvature.theta.dtype
        key = probe_key(self.seed, ctx.step, _HUTCHINSON)
        trace, stderr, samples = la.hutchinson(curvature.hvp, key, self.vectors, n, dtype)
        outputs = {"trace": trace, "stderr": stderr, "samples": samples}
        if self.per_layer:
            traces, errors = [], []
            for j, (_name, indices) in enumerate(layer_blocks(ctx.spec, ctx.state.params)):
                if len(indices) == 0:
                    traces.append(jnp.asarray(jnp.nan, dtype))
                    errors.append(jnp.asarray(jnp.nan, dtype))
                    continue
                block = block_hvp(curvature.hvp, indices, n)
                block_trace, block_error, _ = la.hutchinson(block, jax.random.fold_in(key, j + 1), self.vectors,
                                                            len(indices), dtype)
                traces.append(block_trace)
                errors.append(block_error)
            outputs |= {"layer_trace": jnp.stack(traces), "layer_stderr": jnp.stack(errors)}
        return outputs


@dataclass(frozen=True)
class HessianDensityProbe(_CurvatureProbe):
    """The Hessian's spectral density by stochastic Lanczos quadrature (G19 Sec. 2, Fig. 1-5).

    Keys: ``nodes`` (starts, m) Ritz values (ascending) and ``weights`` (starts, m) the squared
    first components of T's eigenvectors (each row sums to 1); the density at smoothing sigma is
    ``(1/starts) sum w g_sigma(t - node)`` (:func:`normlab.probes.lanczos.smoothed_density`).
    ``trace_estimate`` = ``n * mean_l sum_i w_{l,i} node_{l,i}`` (the SLQ trace, a cross-check of
    ``hessian_trace``). Start 0 is the shared Lanczos run. Cost: ``starts * m`` HVPs, minus ``m``
    when ``hessian_top`` or ``gradient_concentration`` run too.
    """

    starts: int = 2  # random starts n_v (start 0 is the shared Lanczos run)
    name: str = "hessian_density"
    needs = ("hessian_vector_product", "lanczos_run")
    outputs = (
        Output("nodes", ("starts", "steps"), "Ritz values of each start, ascending"),
        Output("weights", ("starts", "steps"), "squared first components of T's eigenvectors (rows sum to 1)"),
        Output("trace_estimate", (), "n * mean_l sum_i w_li theta_li"),
    )
    headline = Headline("trace_estimate", "last", "SLQ trace estimate at the last measurement")

    def __post_init__(self):
        super().__post_init__()
        check_positive(self, "starts")

    def meta(self, spec: NetworkSpec) -> dict:
        return self._meta(
            spec,
            starts=self.starts,
            formula="phi(t) = (1/n_v) sum_l sum_i w_li g_sigma(t - theta_li), w_li = s_1i^2",
            paper="G19 Sec. 2 Eq. 5, Fig. 1-5 (density over training, log scale)",
        )

    def measure(self, ctx: ProbeContext) -> dict:
        curvature = self.curvature(ctx)
        n, dtype = curvature.theta.shape[0], curvature.theta.dtype
        m = curvature.lanczos_run().alphas.shape[0]
        nodes, weights = la.slq(curvature.hvp, probe_key(self.seed, ctx.step, _SLQ), self.starts, m, n, dtype,
                                first=curvature.run)
        trace = n * jnp.mean(jnp.sum(nodes * weights, axis=1))
        return {"nodes": nodes, "weights": weights, "trace_estimate": trace}


@dataclass(frozen=True)
class GradientConcentrationProbe(_CurvatureProbe):
    """How much of the gradient lies in the top Hessian eigenspace (G19 Sec. 4, Fig. 6).

    Keys: ``fraction`` (k,) = ``||P_j g||^2 / ||g||^2`` for the span of the top-1..j Ritz vectors
    (cumulative, j = 1..k); ``headline`` = ``fraction[k-1]``; ``grad_norm`` = ``||g||``;
    ``eigenvalues`` (k,) the Ritz values spanning it. ``g`` is the gradient in the probe's BN mode.
    G19: without BN almost all of ||g||^2 sits in the top outlier eigenspace (k ~ number of
    classes); with BN far less. Cost: no HVP beyond the shared run.
    """

    k: int = 10  # top Ritz vectors spanning the subspace
    name: str = "gradient_concentration"
    needs = ("hessian_vector_product", "lanczos_run")
    outputs = (
        Output("fraction", ("k",), "||P_j g||^2 / ||g||^2 for the top-1..k Ritz vectors"),
        Output("headline", (), "fraction[k-1]"),
        Output("grad_norm", (), "||g||_2"),
        Output("eigenvalues", ("k",), "the Ritz values spanning the subspace"),
    )
    headline = Headline("headline", "median", "median over the run of ||P_k g||^2 / ||g||^2")

    def __post_init__(self):
        super().__post_init__()
        check_positive(self, "k")

    def meta(self, spec: NetworkSpec) -> dict:
        return self._meta(spec, k=self.k, formula="fraction_j = ||P_j g||^2 / ||g||^2, P_j onto the top-j Ritz vectors",
                          paper="G19 Sec. 4 Fig. 6")

    def measure(self, ctx: ProbeContext) -> dict:
        curvature = self.curvature(ctx, need_gradient=True)
        run = curvature.lanczos_run()
        k = min(self.k, run.alphas.shape[0])
        values, _residuals, vectors = la.top_ritz(run, k)
        g = curvature.loss_gradient()
        squared = jnp.vdot(g, g)
        fraction = jnp.cumsum(jnp.square(vectors @ g)) / squared
        return {"fraction": fraction, "headline": fraction[-1], "grad_norm": jnp.sqrt(squared),
                "eigenvalues": values}
