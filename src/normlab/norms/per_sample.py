"""Norms whose statistics are per sample (no batch statistics, no running averages).

Train and eval mode compute the same thing; ``train`` is still required, so every norm has the
same call signature. gamma/beta are per feature (shape (C,)) in all three, because the spatial
size of a conv input is not known when the norm is built.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from normlab.norms import _maths
from normlab.norms._checks import (
    check_call,
    check_num_features,
    check_number,
    check_positive_int,
)


class Identity(nnx.Module):
    """The ``none`` norm: ``y = x``. The baseline; no variables, draws no randomness."""

    def __init__(self, num_features: int, *, rngs: nnx.Rngs | None = None):
        del rngs
        self.num_features = check_num_features(num_features)

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        check_call(self, x, train)
        return x


class LayerNorm(nnx.Module):
    """Layer normalization (Ba, Kiros & Hinton 2016), per sample over all non-batch axes.

    ``y = gamma * (x - mean_i) / sqrt(var_i + eps) + beta`` where ``mean_i``/``var_i`` (biased)
    are taken over C for dense input (N, C) and over H, W *and* C for conv input (N, H, W, C)
    (the original paper's choice for convolutions, and PyTorch's ``LayerNorm([C, H, W])``).
    gamma/beta (``scale``/``bias``, ``nnx.Param``) are per channel, shape (C,).

    Options: ``eps`` (1e-5).
    """

    def __init__(self, num_features: int, *, rngs: nnx.Rngs | None = None, eps: float = 1e-5):
        del rngs
        self.num_features = check_num_features(num_features)
        self.eps = check_number("eps", eps, low=0.0, low_inclusive=False)
        self.scale = nnx.Param(jnp.ones((self.num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((self.num_features,), jnp.float32))

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        check_call(self, x, train)
        mean, var = _maths.moments(x, tuple(range(1, x.ndim)), keepdims=True)
        return _maths.affine(_maths.standardize(x, mean, var, self.eps),
                             self.scale[...], self.bias[...])


class GroupNorm(nnx.Module):
    """Group normalization (Wu & He 2018): per sample, per group of C/G channels.

    Channels are split into G contiguous groups; each group is standardized with its own mean
    and biased variance over (H, W, C/G) for conv input, or (C/G,) for dense input.
    ``num_groups`` (default 32, Wu & He's) is clipped to the largest divisor of C that is at most
    the request, so every C works: e.g. C = 6 with 32 requested gives G = 6 (instance-norm-like),
    C = 48 gives G = 24. The group count actually used is ``self.num_groups``.
    gamma/beta per channel, shape (C,).

    Options: ``num_groups`` (32), ``eps`` (1e-5).
    """

    def __init__(self, num_features: int, *, rngs: nnx.Rngs | None = None,
                 num_groups: int = 32, eps: float = 1e-5):
        del rngs
        self.num_features = check_num_features(num_features)
        self.requested_groups = check_positive_int("option num_groups", num_groups)
        self.num_groups = _maths.largest_divisor_at_most(self.num_features, self.requested_groups)
        self.eps = check_number("eps", eps, low=0.0, low_inclusive=False)
        self.scale = nnx.Param(jnp.ones((self.num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((self.num_features,), jnp.float32))

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        check_call(self, x, train)
        y = _maths.group_standardize(x, self.num_groups, self.eps)
        return _maths.affine(y, self.scale[...], self.bias[...])


class RMSNorm(nnx.Module):
    """RMS normalization (Zhang & Sennrich 2019) over the feature axis.

    ``y = gamma * x / sqrt(mean_c(x^2) + eps)``, the mean over the last axis only (per sample,
    and per position for conv input). No mean removal and, as in the paper, no bias: the only
    variable is ``scale`` (``nnx.Param``, init 1, shape (C,)).

    Options: ``eps`` (1e-5).
    """

    def __init__(self, num_features: int, *, rngs: nnx.Rngs | None = None, eps: float = 1e-5):
        del rngs
        self.num_features = check_num_features(num_features)
        self.eps = check_number("eps", eps, low=0.0, low_inclusive=False)
        self.scale = nnx.Param(jnp.ones((self.num_features,), jnp.float32))

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        check_call(self, x, train)
        mean_square = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
        return x * jax.lax.rsqrt(mean_square + self.eps) * self.scale[...]
