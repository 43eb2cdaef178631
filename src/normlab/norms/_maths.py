"""Pure maths shared by every norm: statistics, normalization, running averages, noise.

Conventions (all functions are pure and jittable; shapes are static):

- ``x`` has its features on the last axis: (N, C) for dense layers, (N, H, W, C) for
  convolutions. "Batch" statistics reduce over every axis but the last, so a convolution gets
  one statistic per channel over batch, height and width (BN15 Sec. 3.2); their shape is (C,).
- "Per-sample" statistics reduce over every axis but the first (LayerNorm) or over the last
  axis only (RMSNorm); they keep the reduced axes (size 1) so they broadcast back onto ``x``.
- Variances are biased (divide by the count ``m``); :func:`unbiased_variance` converts.

The norm classes in this package only own variables and pick axes; everything numeric is here so
that each formula is written once and tested once.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


# --------------------------------------------------------------------------- axes and counts
def batch_axes(x: jax.Array) -> tuple[int, ...]:
    """Axes reduced by batch-type norms: all but the last (features) axis."""
    return tuple(range(x.ndim - 1))


def values_per_feature(x: jax.Array) -> int:
    """``m``, the number of values each feature's batch statistics average over (N or N*H*W)."""
    return math.prod(x.shape[:-1])


# --------------------------------------------------------------------------- moments
def moments(x: jax.Array, axes: tuple[int, ...], *, keepdims: bool = False):
    """Mean and biased variance of ``x`` over ``axes``.

    ``mean = E[x]``, ``var = E[(x - mean)^2]`` (two passes: the one-pass ``E[x^2] - E[x]^2``
    loses precision in float32 when ``|mean| >> std``, which unnormalized activations often are).
    """
    mean = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
    if not keepdims:
        mean, var = jnp.squeeze(mean, axes), jnp.squeeze(var, axes)
    return mean, var


def batch_moments(x: jax.Array):
    """Per-feature batch mean and biased variance, each of shape (C,) (BN15 Alg. 1)."""
    return moments(x, batch_axes(x))


def unbiased_variance(var: jax.Array, count: int) -> jax.Array:
    """Bessel's correction ``m / (m - 1) * var`` (BN15 Alg. 2; PyTorch's running variance)."""
    return var * (count / (count - 1))


def standardize(x: jax.Array, mean: jax.Array, var: jax.Array, eps: float) -> jax.Array:
    """``x_hat = (x - mean) / sqrt(var + eps)``; ``mean``/``var`` broadcast against ``x``."""
    return (x - mean) * jax.lax.rsqrt(var + eps)


def affine(y: jax.Array, scale: jax.Array | None, bias: jax.Array | None) -> jax.Array:
    """``gamma * y + beta``; a ``None`` factor is left out (gamma = 1, beta = 0)."""
    if scale is not None:
        y = y * scale
    if bias is not None:
        y = y + bias
    return y


# --------------------------------------------------------------------------- running averages
def running_average(running: jax.Array, batch: jax.Array, momentum: float) -> jax.Array:
    """Exponential moving average, Flax convention: ``momentum * running + (1 - momentum) * batch``.

    PyTorch writes ``(1 - m') * running + m' * batch`` with m' = 0.1; that is ``momentum = 1 - m'``
    here. The batch value is cut from the gradient: running averages are bookkeeping for eval
    mode, not part of the training loss.
    """
    return momentum * running + (1.0 - momentum) * jax.lax.stop_gradient(batch)


# --------------------------------------------------------------------------- lp divisors
def _sqrt_zero_safe(v: jax.Array) -> jax.Array:
    """``sqrt(v)`` for ``v >= 0`` with derivative 0 (not inf, which becomes nan) at ``v = 0``.

    The inner ``where`` keeps the untaken branch's gradient finite: a plain
    ``where(v > 0, sqrt(v), 0)`` still multiplies a zero cotangent by sqrt's infinite slope.
    """
    positive = v > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, v, 1.0)), 0.0)


LP_ORDERS = ("1", "2", "inf")


def lp_divisor(x: jax.Array, p: str) -> jax.Array:
    """Per-feature average lp norm of the raw values (S18 Sec. 3.3), shape (C,).

    Taken over the batch axes *before* the mean shift, as S18 defines it:
    p = "1": ``mean |x|``; p = "2": ``sqrt(mean x^2)``; p = "inf": ``max |x|``.
    A feature that is all zeros (a dead ReLU unit) gets divisor 0 with a finite derivative (0 for
    p = 2, where sqrt's slope at 0 is infinite); the caller adds ``eps`` before dividing.
    """
    axes = batch_axes(x)
    if p == "1":
        return jnp.mean(jnp.abs(x), axis=axes)
    if p == "2":
        return _sqrt_zero_safe(jnp.mean(jnp.square(x), axis=axes))
    if p == "inf":
        return jnp.max(jnp.abs(x), axis=axes)
    raise ValueError(f"p must be one of {LP_ORDERS}, got {p!r}")


# --------------------------------------------------------------------------- groups
def largest_divisor_at_most(n: int, limit: int) -> int:
    """The largest divisor of ``n`` that is ``<= limit`` (at least 1); GroupNorm's group count."""
    for g in range(min(n, max(limit, 1)), 0, -1):
        if n % g == 0:
            return g
    return 1


def group_standardize(x: jax.Array, num_groups: int, eps: float) -> jax.Array:
    """GroupNorm's standardization (Wu & He 2018): per sample, per group of C/G channels.

    ``x`` (N, ..., C) is viewed as (N, ..., G, C/G); mean and biased variance are taken over all
    spatial axes and the C/G channels of a group, separately for every sample.
    """
    c = x.shape[-1]
    grouped = x.reshape(x.shape[:-1] + (num_groups, c // num_groups))
    axes = tuple(range(1, grouped.ndim - 2)) + (grouped.ndim - 1,)
    mean, var = moments(grouped, axes, keepdims=True)
    return standardize(grouped, mean, var, eps).reshape(x.shape)


# --------------------------------------------------------------------------- noise (S18 Alg. 1)
def sample_noise(
    key: jax.Array,
    shape: tuple[int, ...],
    *,
    n_mu: float,
    n_sigma: float,
    r_mu: float,
    r_sigma: float,
    dtype=jnp.float32,
):
    """Draw S18's (Alg. 1) additive and multiplicative noise for one training step.

    Per unit j (the last axis, C):   ``mu_j ~ U(-n_mu, n_mu)``, ``sigma_j ~ U(1, n_sigma)``.
    Per value (sample i and, for convolutions, position):
    ``m_ij ~ U(mu_j - r_mu, mu_j + r_mu)``, ``s_ij ~ N(sigma_j, r_sigma^2)``.

    Returns ``(m, s)``, both of ``shape``; the caller applies ``a <- s * a + m``. S18's
    constants: n_mu = 0.5, n_sigma = 1.25, r_mu = r_sigma = 0.1.
    """
    k_mu, k_sigma, k_m, k_s = jax.random.split(key, 4)
    units = shape[-1:]
    mu = jax.random.uniform(k_mu, units, dtype, -n_mu, n_mu)
    sigma = jax.random.uniform(k_sigma, units, dtype, 1.0, n_sigma)
    m = mu + jax.random.uniform(k_m, shape, dtype, -r_mu, r_mu)
    s = sigma + r_sigma * jax.random.normal(k_s, shape, dtype)
    return m, s


# --------------------------------------------------------------------------- whitening (ZCA)
def _spectral_divided_differences(lam: jax.Array, f, df) -> jax.Array:
    """Matrix K with ``K_ij = (f(l_i) - f(l_j)) / (l_i - l_j)``, and ``f'(l_i)`` where l_i ~ l_j.

    The Daleckii-Krein kernel of the matrix function ``f``: the derivative of ``U f(L) U^T``
    along a symmetric direction ``dA`` is ``U (K o (U^T dA U)) U^T``. Using ``f'`` on (near-)ties
    is what keeps the derivative finite when eigenvalues repeat (dead units, rank-deficient
    batches), where the generic eigh derivative divides by zero.
    """
    li, lj = lam[:, None], lam[None, :]
    diff = li - lj
    scale = jnp.maximum(jnp.abs(li), jnp.abs(lj))
    tie = jnp.abs(diff) <= 1e-6 * scale + jnp.finfo(lam.dtype).tiny
    safe = jnp.where(tie, 1.0, diff)
    return jnp.where(tie, df(0.5 * (li + lj)), (f(li) - f(lj)) / safe)


@jax.custom_vjp
def inverse_sqrt_psd(a: jax.Array) -> jax.Array:
    """``A^{-1/2}`` of a symmetric positive definite (C, C) matrix via ``eigh``: ``U L^{-1/2} U^T``.

    Has a custom derivative (spectral divided differences, see
    :func:`_spectral_divided_differences`) that stays finite on repeated eigenvalues.
    """
    lam, u = jnp.linalg.eigh(a)
    return (u * jax.lax.rsqrt(lam)) @ u.T


def _inverse_sqrt_fwd(a):
    lam, u = jnp.linalg.eigh(a)
    return (u * jax.lax.rsqrt(lam)) @ u.T, (lam, u)


def _inverse_sqrt_bwd(residuals, g):
    lam, u = residuals
    kernel = _spectral_divided_differences(
        lam, lambda v: jax.lax.rsqrt(v), lambda v: -0.5 * v ** -1.5
    )
    g_sym = 0.5 * (g + g.T)  # A only moves along symmetric directions
    return (u @ (kernel * (u.T @ g_sym @ u)) @ u.T,)


inverse_sqrt_psd.defvjp(_inverse_sqrt_fwd, _inverse_sqrt_bwd)


def feature_covariance(flat: jax.Array, mean: jax.Array) -> jax.Array:
    """Biased (C, C) covariance ``(X - mean)^T (X - mean) / m`` of ``flat`` (m, C)."""
    centred = flat - mean
    return centred.T @ centred / flat.shape[0]


# --------------------------------------------------------------------------- integral transform
def empirical_normal_scores(x: jax.Array) -> jax.Array:
    """Each feature through its batch empirical CDF, then the standard-normal inverse CDF.

    ``u = rank / (m + 1)`` with ranks 1..m over the batch axes (ties get distinct, arbitrary
    consecutive ranks), then ``z = ndtri(u)`` (van der Waerden normal scores). u is never 0 or 1,
    so z is finite: ``|z| <= ndtri(m / (m + 1))``. Same shape as ``x``. The map is piecewise
    constant in ``x``: its derivative is zero almost everywhere (see the ``pit`` norm for how
    training still gets a gradient).
    """
    flat = x.reshape(-1, x.shape[-1])
    m = flat.shape[0]
    ranks = jnp.argsort(jnp.argsort(flat, axis=0), axis=0) + 1
    u = ranks.astype(x.dtype) / (m + 1)
    return jax.scipy.special.ndtri(u).reshape(x.shape)
