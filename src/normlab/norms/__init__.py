"""Normalization layers, one small ``nnx.Module`` per variant, built by name.

>>> import jax.numpy as jnp
>>> from flax import nnx
>>> from normlab.norms import make_norm
>>> norm = make_norm("batch", 3, rngs=nnx.Rngs(params=0))
>>> norm(jnp.ones((2, 3)), train=True).shape
(2, 3)

Contract (docs/INTERFACES.md): ``x`` is (N, C) or (N, H, W, C), features last; ``train`` is a
required keyword; affine parameters are ``nnx.Param`` ``scale``/``bias``; running statistics are
``nnx.BatchStat`` (``mean``/``var``, plus ``divisor`` for lp norms and ``cov`` for zca); no norm
draws from the ``params`` rng stream; ``noisy`` needs an rng stream named ``noise``.
"""

from normlab.norms.batch import (
    BatchNorm,
    FrozenBetaBatchNorm,
    FrozenGammaBatchNorm,
    FrozenParam,
    L1BatchNorm,
    L2BatchNorm,
    LinfBatchNorm,
    LpBatchNorm,
    MeanOnlyBatchNorm,
    NoAffineBatchNorm,
    NoisyBatchNorm,
    VarOnlyBatchNorm,
)
from normlab.norms.per_sample import GroupNorm, Identity, LayerNorm, RMSNorm
from normlab.norms.registry import NORMS, make_norm, norm_class, norm_names, norm_options
from normlab.norms.research import PITBatchNorm, ZCABatchNorm

__all__ = [
    "NORMS",
    "BatchNorm",
    "FrozenBetaBatchNorm",
    "FrozenGammaBatchNorm",
    "FrozenParam",
    "GroupNorm",
    "Identity",
    "L1BatchNorm",
    "L2BatchNorm",
    "LayerNorm",
    "LinfBatchNorm",
    "LpBatchNorm",
    "MeanOnlyBatchNorm",
    "NoAffineBatchNorm",
    "NoisyBatchNorm",
    "PITBatchNorm",
    "RMSNorm",
    "VarOnlyBatchNorm",
    "ZCABatchNorm",
    "make_norm",
    "norm_class",
    "norm_names",
    "norm_options",
]
