"""BatchNorm's running statistics against NumPy simulations of the Flax and PyTorch conventions."""

from __future__ import annotations

import jax.numpy as jnp
import norms_numpy_reference as ref
import numpy as np
import pytest
from flax import nnx

from normlab.errors import NormlabError
from normlab.norms import make_norm


def drifting_batches(shape, count=6, seed=3):
    """Batches whose mean and spread change from step to step, as activations do in training."""
    rng = np.random.default_rng(seed)
    return [rng.normal(k - 2.0, 0.5 + 0.4 * k, shape).astype(np.float32) for k in range(count)]


@pytest.mark.parametrize("shape", [(8, 3), (4, 2, 3, 3)], ids=["dense", "conv"])
def test_flax_convention_by_default(shape):
    batches = drifting_batches(shape)
    bn = make_norm("batch", 3, rngs=nnx.Rngs(params=0))
    assert bn.momentum == 0.99 and bn.running_var == "biased"
    for b in batches:
        bn(jnp.asarray(b), train=True)
    want_mean = ref.flax_running(batches, momentum=0.99, stat=ref.mean_of, init=0.0)
    want_var = ref.flax_running(batches, momentum=0.99, stat=ref.var_biased, init=1.0)
    np.testing.assert_allclose(np.asarray(bn.mean[...]), want_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(bn.var[...]), want_var, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(8, 3), (4, 2, 3, 3)], ids=["dense", "conv"])
def test_pytorch_convention_with_momentum_0_9_and_unbiased_var(shape):
    batches = drifting_batches(shape)
    bn = make_norm("batch", 3, rngs=nnx.Rngs(params=0), momentum=0.9, running_var="unbiased")
    for b in batches:
        bn(jnp.asarray(b), train=True)
    want_mean, want_var = ref.torch_running(batches, torch_momentum=0.1)
    np.testing.assert_allclose(np.asarray(bn.mean[...]), want_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(bn.var[...]), want_var, rtol=1e-5, atol=1e-6)

    # eval uses exactly those running numbers (PyTorch eval with eps 1e-5)
    x = drifting_batches(shape, count=1, seed=9)[0]
    want = (x - want_mean) / np.sqrt(want_var + 1e-5)
    np.testing.assert_allclose(np.asarray(bn(jnp.asarray(x), train=False)), want,
                               rtol=1e-5, atol=1e-5)


def test_training_output_uses_the_biased_batch_variance_in_both_conventions():
    x = drifting_batches((8, 3), count=1)[0]
    mean, var = ref.batch_mean_var(x)
    for options in ({}, {"momentum": 0.9, "running_var": "unbiased"}):
        bn = make_norm("batch", 3, rngs=nnx.Rngs(params=0), **options)
        np.testing.assert_allclose(np.asarray(bn(jnp.asarray(x), train=True)),
                                   (x - mean) / np.sqrt(var + 1e-5), rtol=1e-5, atol=1e-5)


def test_unbiased_running_var_needs_two_values_per_feature():
    bn = make_norm("batch", 3, rngs=nnx.Rngs(params=0), running_var="unbiased")
    with pytest.raises(NormlabError, match="at least 2 values"):
        bn(jnp.ones((1, 3)), train=True)


def test_bad_option_values_are_one_line_errors():
    with pytest.raises(NormlabError, match="running_var must be one of biased, unbiased"):
        make_norm("batch", 3, rngs=nnx.Rngs(params=0), running_var="torch")
    with pytest.raises(NormlabError, match="momentum"):
        make_norm("batch", 3, rngs=nnx.Rngs(params=0), momentum=1.5)
    with pytest.raises(NormlabError, match="eps"):
        make_norm("batch", 3, rngs=nnx.Rngs(params=0), eps=0.0)
