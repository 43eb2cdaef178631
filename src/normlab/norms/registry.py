"""The norm registry: a name for every norm and one factory, ``make_norm``.

A norm is built by ``make_norm(name, num_features, *, rngs, **options)`` and called as
``norm(x, train=...)``. The baseline is the ``none`` norm, so a network and its BN twin differ
only in one string.
"""

from __future__ import annotations

import inspect

from flax import nnx

from normlab.errors import NormlabError, check_name
from normlab.norms import batch, research, sample

_CLASSES: dict[str, type[nnx.Module]] = {
    "none": sample.Identity,
    "batch": batch.BatchNorm,
    "noisy": batch.NoisyBatchNorm,
    "l1": batch.L1BatchNorm,
    "l2": batch.L2BatchNorm,
    "linf": batch.LinfBatchNorm,
    "mean_only": batch.MeanOnlyBatchNorm,
    "var_only": batch.VarOnlyBatchNorm,
    "no_affine": batch.NoAffineBatchNorm,
    "frozen_gamma": batch.FrozenGammaBatchNorm,
    "frozen_beta": batch.FrozenBetaBatchNorm,
    "layer": sample.LayerNorm,
    "group": sample.GroupNorm,
    "rms": sample.RMSNorm,
    "zca": research.ZCABatchNorm,
    "pit": research.PITBatchNorm,
}

NORMS: dict[str, str] = {
    "none": "identity; the baseline",
    "batch": "batch normalization (BN15): batch statistics in train, running averages in eval",
    "noisy": "BN plus S18 Alg. 1 random per-unit shift and scale noise in train mode",
    "l1": "BN with the divisor mean|x| (S18 Sec. 3.3 l1 normalization)",
    "l2": "BN with the divisor sqrt(mean x^2) (S18 Sec. 3.3 l2 normalization)",
    "linf": "BN with the divisor max|x| (S18 Sec. 3.3 linf normalization)",
    "mean_only": "subtract the batch mean only (d2l ex. 4)",
    "var_only": "divide by the batch standard deviation only, no mean removal (d2l ex. 4)",
    "no_affine": "BN with gamma = 1 and beta = 0 fixed (d2l ex. 5)",
    "frozen_gamma": "BN with gamma held at 1 (not trainable), beta learned",
    "frozen_beta": "BN with beta held at 0 (not trainable), gamma learned",
    "layer": "layer normalization per sample over all non-batch axes (H, W, C for conv)",
    "group": "group normalization per sample (num_groups 32, clipped to a divisor of C)",
    "rms": "RMS normalization over the feature axis, scale only",
    "zca": "decorrelated BN: ZCA whitening with the batch covariance (experimental)",
    "pit": "batch empirical CDF then normal inverse CDF; BN gradient; Gaussian eval (experimental)",
}

assert NORMS.keys() == _CLASSES.keys()


def norm_names() -> list[str]:
    """The registered norm names, in registry order (``none`` and ``batch`` first)."""
    return list(NORMS)


def norm_class(name: str) -> type[nnx.Module]:
    """The module class behind a norm name (raises ``UnknownNameError`` listing valid names)."""
    check_name("norm", name, NORMS)
    return _CLASSES[name]


def norm_options(name: str) -> dict[str, object]:
    """The options a norm accepts, with their defaults: ``{"momentum": 0.99, ...}``."""
    signature = inspect.signature(norm_class(name).__init__)
    return {
        p.name: p.default
        for p in signature.parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "rngs"
    }


def make_norm(name: str, num_features: int, *, rngs: nnx.Rngs, **options) -> nnx.Module:
    """Build the norm ``name`` for ``num_features`` features (the last axis of its input).

    ``rngs`` is required for a uniform signature; no norm draws from its ``params`` stream, and
    only ``noisy`` uses it (it forks the ``noise`` stream). Unknown names raise
    ``UnknownNameError``; unknown options raise ``NormlabError`` naming the allowed ones.

    >>> from flax import nnx
    >>> import jax.numpy as jnp
    >>> bn = make_norm("batch", 3, rngs=nnx.Rngs(params=0), momentum=0.9)
    >>> bn(jnp.ones((4, 3)), train=False).shape
    (4, 3)
    """
    allowed = norm_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        listed = ", ".join(allowed) if allowed else "none"
        raise NormlabError(
            f"norm {name!r} does not take option(s) {', '.join(unknown)}; allowed: {listed}"
        )
    return _CLASSES[name](num_features, rngs=rngs, **options)
