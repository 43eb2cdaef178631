"""The norm registry: a name for every norm and one factory, ``make_norm``.

A norm is built by ``make_norm(name, num_features, *, rngs, **options)`` and called as
``norm(x, train=...)``. The baseline is the ``none`` norm, so a network and its BN twin differ
only in one string.
"""

from __future__ import annotations

from collections.abc import Callable

from flax import nnx

from normlab.norms import batch, per_sample, research
from normlab.registry import Registry

NORMS_REGISTRY: Registry[nnx.Module] = Registry("norm", {
    "none": (per_sample.Identity, "identity; the baseline"),
    "batch": (batch.BatchNorm, "batch normalization (BN15): batch statistics in train, running averages in eval"),
    "noisy": (batch.NoisyBatchNorm, "BN plus S18 Alg. 1 random per-unit shift and scale noise in train mode"),
    "l1": (batch.L1BatchNorm, "BN with the divisor mean|x| (S18 Sec. 3.3 l1 normalization)"),
    "l2": (batch.L2BatchNorm, "BN with the divisor sqrt(mean x^2) (S18 Sec. 3.3 l2 normalization)"),
    "linf": (batch.LinfBatchNorm, "BN with the divisor max|x| (S18 Sec. 3.3 linf normalization)"),
    "mean_only": (batch.MeanOnlyBatchNorm, "subtract the batch mean only (d2l ex. 4)"),
    "var_only": (batch.VarOnlyBatchNorm, "divide by the batch standard deviation only, no mean removal (d2l ex. 4)"),
    "no_affine": (batch.NoAffineBatchNorm, "BN with gamma = 1 and beta = 0 fixed (d2l ex. 5)"),
    "frozen_gamma": (batch.FrozenGammaBatchNorm, "BN with gamma held at 1 (not trainable), beta learned"),
    "frozen_beta": (batch.FrozenBetaBatchNorm, "BN with beta held at 0 (not trainable), gamma learned"),
    "layer": (per_sample.LayerNorm, "layer normalization per sample over all non-batch axes (H, W, C for conv)"),
    "group": (per_sample.GroupNorm, "group normalization per sample (num_groups 32, clipped to a divisor of C)"),
    "rms": (per_sample.RMSNorm, "RMS normalization over the feature axis, scale only"),
    "zca": (research.ZCABatchNorm, "decorrelated BN: ZCA whitening with the batch covariance (experimental)"),
    "pit": (research.PITBatchNorm, "batch empirical CDF then normal inverse CDF; BN gradient; Gaussian eval "
            "(experimental)"),
}, common=("rngs",))  # every norm takes ``rngs``; its other keyword arguments with defaults are its options

NORMS: dict[str, str] = NORMS_REGISTRY.descriptions()


def norm_names() -> list[str]:
    """The registered norm names, in registry order (``none`` and ``batch`` first)."""
    return list(NORMS)


def norm_class(name: str) -> Callable[..., nnx.Module]:
    """The module class behind a norm name (raises ``UnknownNameError`` listing valid names)."""
    return NORMS_REGISTRY.factory(name)


def norm_options(name: str) -> dict[str, object]:
    """The options a norm accepts, with their defaults: ``{"momentum": 0.99, ...}``."""
    return NORMS_REGISTRY.options(name)


def make_norm(name: str, num_features: int, *, rngs: nnx.Rngs, **options) -> nnx.Module:
    """Build the norm ``name`` for ``num_features`` features (the last axis of its input).

    ``rngs`` is required for a uniform signature; no norm draws from its ``params`` stream, and
    only ``noisy`` uses it (it forks the ``noise`` stream). Unknown names raise
    ``UnknownNameError``; so do unknown options (naming the allowed ones).

    >>> from flax import nnx
    >>> import jax.numpy as jnp
    >>> bn = make_norm("batch", 3, rngs=nnx.Rngs(params=0), momentum=0.9)
    >>> bn(jnp.ones((4, 3)), train=False).shape
    (4, 3)
    """
    return NORMS_REGISTRY.build(name, num_features, rngs=rngs, **options)
