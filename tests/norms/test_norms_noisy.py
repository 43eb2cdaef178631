"""Noisy BN (S18 Alg. 1): off in eval, right noise in train, fresh per step, seeded, in state."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import norms_numpy_reference as ref
import numpy as np
import pytest
from flax import nnx

from normlab.errors import NormlabError
from normlab.norms import make_norm


def noisy(c, *, noise=1, **options):
    return make_norm("noisy", c, rngs=nnx.Rngs(params=0, noise=noise), **options)


def batch(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(1.0, 2.0, shape).astype(np.float32))


@pytest.mark.parametrize("shape", [(8, 3), (2, 3, 3, 3)], ids=["dense", "conv"])
def test_eval_is_plain_batchnorm_eval(shape):
    nb, bn = noisy(3, momentum=0.5), make_norm("batch", 3, rngs=nnx.Rngs(params=0), momentum=0.5)
    for k in range(3):  # the noise comes after the statistics, so running stats agree
        nb(batch(shape, k), train=True)
        bn(batch(shape, k), train=True)
    count = int(nb.noise_rng.count[...])
    x = batch(shape, 9)
    np.testing.assert_array_equal(np.asarray(nb(x, train=False)), np.asarray(bn(x, train=False)))
    assert int(nb.noise_rng.count[...]) == count  # eval draws no noise


def test_train_noise_statistics_match_the_constants():
    # x = +-1 per feature gives x_hat = +-1/sqrt(1 + eps) exactly, so a = s * x_hat + m separates:
    # sigma_j ~ (mean a|+ - mean a|-) / (2 x_hat), mu_j ~ (mean a|+ + mean a|-) / 2.
    n, c = 400, 32
    signs = np.tile(np.r_[np.ones(n // 2), -np.ones(n // 2)][:, None], (1, c))
    x = jnp.asarray(signs, jnp.float32)
    x_hat = 1 / np.sqrt(1 + 1e-5)
    norm = noisy(c)
    mus, sigmas, residual = [], [], []
    for _ in range(5):
        a = np.asarray(norm(x, train=True), np.float64)
        up, down = a[: n // 2], a[n // 2:]
        sigmas.append((up.mean(0) - down.mean(0)) / (2 * x_hat))
        mus.append((up.mean(0) + down.mean(0)) / 2)
        residual.append(up.std(0))
    mu, sigma = np.concatenate(mus), np.concatenate(sigmas)
    assert mu.min() > -0.52 and mu.max() < 0.52 and abs(mu.mean()) < 0.06
    assert sigma.min() > 0.97 and sigma.max() < 1.28 and abs(sigma.mean() - 1.125) < 0.02
    # within a unit: var(s * x_hat + m) = r_sigma^2 x_hat^2 + r_mu^2 / 3
    np.testing.assert_allclose(np.mean(residual), np.sqrt(0.01 + 0.01 / 3), rtol=0.08)
    # the per-unit draws are fresh at every step
    assert np.abs(mus[0] - mus[1]).mean() > 0.1


def test_noise_formula_after_and_before_affine():
    """Recover s and m from same-seed twins and check both placements against the formula."""
    x = batch((6, 2, 2, 3))
    mean, var = ref.batch_mean_var(np.asarray(x))
    x_hat = (np.asarray(x, np.float64) - mean) / np.sqrt(var + 1e-5)

    def run(position, gamma, beta):
        norm = noisy(3, noise=4, noise_position=position)
        norm.scale[...] = jnp.full(3, gamma, jnp.float32)
        norm.bias[...] = jnp.full(3, beta, jnp.float32)
        return np.asarray(norm(x, train=True), np.float64)

    base = run("after_affine", 1.0, 0.0)        # s * x_hat + m
    s = run("after_affine", 1.0, 1.0) - base    # s * (x_hat + 1) + m - base
    m = base - s * x_hat
    assert np.all(np.abs(s - 1.125) < 0.125 + 0.5)  # sanity: s near U(1, 1.25) + N(0, 0.1)
    np.testing.assert_allclose(run("after_affine", 2.0, 3.0), s * (2 * x_hat + 3) + m, atol=2e-5)
    np.testing.assert_allclose(run("before_affine", 2.0, 3.0), 2 * (s * x_hat + m) + 3, atol=2e-5)


def test_noise_changes_between_calls_and_is_reproducible_from_the_seed():
    x = batch((8, 3))
    a, b = noisy(3, noise=1), noisy(3, noise=1)
    first_a, second_a = np.asarray(a(x, train=True)), np.asarray(a(x, train=True))
    assert not np.allclose(first_a, second_a)
    np.testing.assert_array_equal(first_a, np.asarray(b(x, train=True)))
    np.testing.assert_array_equal(second_a, np.asarray(b(x, train=True)))
    assert not np.allclose(first_a, np.asarray(noisy(3, noise=2)(x, train=True)))


def test_two_noisy_layers_from_one_rngs_get_different_noise():
    rngs = nnx.Rngs(params=0, noise=1)
    first, second = make_norm("noisy", 3, rngs=rngs), make_norm("noisy", 3, rngs=rngs)
    x = batch((8, 3))
    assert not np.allclose(np.asarray(first(x, train=True)), np.asarray(second(x, train=True)))


def test_rng_state_is_module_state_and_a_functional_step_advances_it():
    norm = noisy(3)
    rng_state = nnx.state(norm, nnx.RngState)
    assert len(jax.tree.leaves(rng_state)) == 2  # key and counter of the forked `noise` stream
    graphdef, state = nnx.split(norm)

    @jax.jit
    def step(state, x):
        module = nnx.merge(graphdef, state, copy=True)
        y = module(x, train=True)
        return y, nnx.state(module)

    x = batch((8, 3))
    y1, state1 = step(state, x)
    y2, _ = step(state1, x)
    y1_again, _ = step(state, x)
    assert not np.allclose(np.asarray(y1), np.asarray(y2))  # the returned state moved on
    np.testing.assert_array_equal(np.asarray(y1), np.asarray(y1_again))  # same state, same noise
    # the same noise as an eager call from the same seed (up to XLA's float rounding)
    np.testing.assert_allclose(np.asarray(y1), np.asarray(noisy(3)(x, train=True)), atol=1e-6)


def test_noisy_needs_a_named_noise_stream():
    with pytest.raises(NormlabError, match=r"nnx.Rngs\(params=<seed>, noise=<seed>\)"):
        make_norm("noisy", 3, rngs=nnx.Rngs(0))
    with pytest.raises(NormlabError, match="noise_position"):
        noisy(3, noise_position="middle")
