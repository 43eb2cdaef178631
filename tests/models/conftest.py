"""Fixtures for the models tests: tiny configurations and rng streams.

The models build their norms through the real ``normlab.norms`` registry.
"""

from __future__ import annotations

import pytest
from flax import nnx

# Model -> build options small enough for eager forward passes in tests.
TINY = {
    "mlp": dict(input_shape=(6, 6, 1), num_classes=10, width=0.125),
    "ioffe_mlp": dict(input_shape=(16,), num_classes=10, width=0.1),
    "vgg": dict(input_shape=(32, 32, 3), num_classes=10, width=1 / 16),
    "lenet": dict(input_shape=(28, 28, 1), num_classes=10, width=0.5),
    "dln": dict(input_shape=(10,), num_classes=0, depth=5),
}


def all_streams(seed: int = 0) -> nnx.Rngs:
    """A fresh ``nnx.Rngs`` with every stream the models and norms use."""
    return nnx.Rngs(params=seed, dropout=seed + 1, noise=seed + 2)


@pytest.fixture
def rngs():
    return all_streams


@pytest.fixture
def tiny():
    """``tiny(name, rngs=None, norm="none", **overrides)``: a TINY-sized model."""
    from normlab.models import build_model

    def build(name, rngs=None, norm="none", **overrides):
        return build_model(name, norm=norm, rngs=rngs or all_streams(),
                           **{**TINY[name], **overrides})

    return build
