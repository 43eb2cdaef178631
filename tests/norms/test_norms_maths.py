"""The shared pure maths: moments, lp divisors, noise, whitening, normal scores."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from normlab.norms import _maths


def test_moments_are_per_feature_over_all_other_axes():
    x = np.random.default_rng(0).normal(3.0, 2.0, (4, 3, 2, 5)).astype(np.float32)
    mean, var = _maths.batch_moments(jnp.asarray(x))
    cols = x.reshape(-1, 5).astype(np.float64)
    np.testing.assert_allclose(np.asarray(mean), cols.mean(0), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(var), cols.var(0), rtol=1e-5)  # ddof=0: biased
    assert _maths.values_per_feature(jnp.asarray(x)) == 24


def test_unbiased_variance_and_running_average():
    np.testing.assert_allclose(float(_maths.unbiased_variance(jnp.float32(3.0), 4)), 4.0)
    running = _maths.running_average(jnp.float32(1.0), jnp.float32(3.0), 0.75)
    np.testing.assert_allclose(float(running), 0.75 * 1.0 + 0.25 * 3.0)


@pytest.mark.parametrize("p", ["1", "2", "inf"])
def test_lp_divisor(p):
    x = np.array([[1.0, -2.0], [-3.0, 0.5], [2.0, 0.5]], np.float32)
    want = {"1": np.abs(x).mean(0), "2": np.sqrt((x ** 2).mean(0)), "inf": np.abs(x).max(0)}[p]
    np.testing.assert_allclose(np.asarray(_maths.lp_divisor(jnp.asarray(x), p)), want, rtol=1e-6)


def test_largest_divisor_at_most():
    assert [_maths.largest_divisor_at_most(12, g) for g in (1, 5, 6, 32)] == [1, 4, 6, 12]


def test_noise_sampler_statistics_match_s18_constants():
    n_units, n_samples, n_draws = 16, 2000, 20
    m_means, s_means = [], []
    for k in range(n_draws):
        m, s = _maths.sample_noise(jax.random.key(k), (n_samples, n_units),
                                   n_mu=0.5, n_sigma=1.25, r_mu=0.1, r_sigma=0.1)
        m, s = np.asarray(m, np.float64), np.asarray(s, np.float64)
        # within a unit: m ~ U(mu_j -+ 0.1) has std 0.1/sqrt(3); s ~ N(sigma_j, 0.1)
        np.testing.assert_allclose(m.std(0), 0.1 / np.sqrt(3), rtol=0.1)
        np.testing.assert_allclose(s.std(0), 0.1, rtol=0.1)
        assert np.all(np.abs(m - m.mean(0)) <= 0.1 + 0.01)  # bounded support around mu_j
        m_means.append(m.mean(0))
        s_means.append(s.mean(0))
    mu, sigma = np.concatenate(m_means), np.concatenate(s_means)  # 320 per-unit draws
    # mu_j ~ U(-0.5, 0.5): mean 0, std 1/sqrt(12); sigma_j ~ U(1, 1.25): mean 1.125
    assert mu.min() > -0.5 - 0.01 and mu.max() < 0.5 + 0.01
    assert abs(mu.mean()) < 0.05 and abs(mu.std() - 1 / np.sqrt(12)) < 0.03
    assert sigma.min() > 1 - 0.01 and sigma.max() < 1.25 + 0.01
    assert abs(sigma.mean() - 1.125) < 0.01 and abs(sigma.std() - 0.25 / np.sqrt(12)) < 0.01


def _naive_inverse_sqrt(a):
    lam, u = jnp.linalg.eigh(a)
    return (u * lam ** -0.5) @ u.T


def test_inverse_sqrt_psd_value_and_gradient():
    rng = np.random.default_rng(0)
    b = rng.normal(size=(40, 4))
    a = jnp.asarray(b.T @ b / 40 + 0.1 * np.eye(4), jnp.float32)  # distinct eigenvalues
    w = np.asarray(_maths.inverse_sqrt_psd(a), np.float64)
    np.testing.assert_allclose(w @ np.asarray(a, np.float64) @ w, np.eye(4), atol=1e-5)

    probe = jnp.asarray(rng.normal(size=(4, 4)), jnp.float32)

    def loss(f):
        return lambda m: jnp.sum(f((m + m.T) / 2) * probe)  # symmetric input, like a covariance

    got = jax.grad(loss(_maths.inverse_sqrt_psd))(a)
    want = jax.grad(loss(_naive_inverse_sqrt))(a)  # jax's own eigh derivative, fine here
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-3, atol=1e-4)


def test_inverse_sqrt_psd_gradient_is_finite_on_repeated_eigenvalues():
    a = jnp.eye(3) * 2.0  # triple eigenvalue: the generic eigh derivative divides by zero
    g = jax.grad(lambda m: jnp.sum(_maths.inverse_sqrt_psd(m) ** 2))(a)
    assert np.all(np.isfinite(np.asarray(g)))
    # d/dA tr(A^-1) = -A^-2 = -I/4 at A = 2I
    np.testing.assert_allclose(np.asarray(g), -np.eye(3) / 4, atol=1e-6)


def test_empirical_normal_scores():
    x = np.random.default_rng(0).standard_exponential((3, 2, 2, 2)).astype(np.float32)
    cols = x.reshape(-1, 2)
    want = np.stack([stats.norm.ppf(stats.rankdata(cols[:, j]) / 13) for j in range(2)], 1)
    got = np.asarray(_maths.empirical_normal_scores(jnp.asarray(x))).reshape(-1, 2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
