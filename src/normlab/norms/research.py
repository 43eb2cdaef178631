"""Research norms from d2l's BN exercise 7: full whitening (ZCA) and the probability integral
transform (PIT). Both are experimental; their docstrings say where they depart from BN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from normlab.norms import _maths
from normlab.norms._checks import check_call, check_choice, check_num_features, check_number

PIT_GRADIENTS = ("straight_through", "none")


class ZCABatchNorm(nnx.Module):
    """Decorrelated batch normalization (ZCA whitening; Huang et al. 2018, "Decorrelated BN").

    Train: flatten ``x`` to (m, C) (m = N or N*H*W), centre with the batch mean ``mu``, take the
    biased covariance ``S = Xc^T Xc / m``, and whiten:
    ``y = gamma * (x - mu) @ (S + eps I)^{-1/2} + beta``, where the inverse square root comes
    from ``eigh`` (``U L^{-1/2} U^T``: ZCA, the whitening closest to the identity, so feature j
    stays feature j). Its derivative is the spectral divided-difference formula, finite even on
    repeated eigenvalues (dead units). The batch must hold more values than features (m > C) for
    ``S`` to be full rank; otherwise ``eps`` alone keeps it invertible and the output is only
    whitened within the batch's span.
    Eval: the running ``mean`` (C,) and running covariance ``cov`` (C, C) (both ``nnx.BatchStat``,
    init 0 and I, BN's momentum convention, biased) replace ``mu`` and ``S``.

    Cost: one C x C eigendecomposition per call, O(C^3); fine for C up to a few hundred on CPU.

    Options: ``momentum`` (0.99), ``eps`` (1e-5).
    """

    def __init__(self, num_features: int, *, rngs: nnx.Rngs | None = None,
                 momentum: float = 0.99, eps: float = 1e-5):
        del rngs
        c = self.num_features = check_num_features(num_features)
        self.momentum = check_number("momentum", momentum, low=0.0, high=1.0)
        self.eps = check_number("eps", eps, low=0.0, low_inclusive=False)
        self.mean = nnx.BatchStat(jnp.zeros((c,), jnp.float32))
        self.cov = nnx.BatchStat(jnp.eye(c, dtype=jnp.float32))
        self.scale = nnx.Param(jnp.ones((c,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((c,), jnp.float32))

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        check_call(self, x, train)
        flat = x.reshape(-1, self.num_features)
        if train:
            mean = jnp.mean(flat, axis=0)
            cov = _maths.feature_covariance(flat, mean)
            self.mean[...] = _maths.running_average(self.mean[...], mean, self.momentum)
            self.cov[...] = _maths.running_average(self.cov[...], cov, self.momentum)
        else:
            mean, cov = self.mean[...], self.cov[...]
        ridge = self.eps * jnp.eye(self.num_features, dtype=cov.dtype)
        whitening = _maths.inverse_sqrt_psd(cov + ridge)
        y = ((flat - mean) @ whitening).reshape(x.shape)
        return _maths.affine(y, self.scale[...], self.bias[...])


class PITBatchNorm(nnx.Module):
    """Probability-integral-transform normalization (d2l BN exercise 7's idea).

    Train forward: each feature through its batch empirical CDF, ``u = rank / (m + 1)``, then the
    standard-normal inverse CDF, ``z = ndtri(u)``; ``y = gamma * z + beta``. Whatever the
    feature's batch distribution, z is exactly normal-shaped (van der Waerden scores).

    Gradient: z is piecewise constant in x, so its true derivative is zero and the layers below
    would never learn. With ``gradient="straight_through"`` (default) the backward pass is BN's:
    ``z = x_hat + stop_gradient(z_pit - x_hat)`` with ``x_hat = (x - mean_B)/sqrt(var_B + eps)``,
    i.e. the forward value is PIT's and the derivative is that of BN's standardization.
    ``gradient="none"`` gives the true (zero) derivative to ``x``; gamma and beta still learn.

    Eval: a Gaussian fallback, ``z = (x - mean) / sqrt(var + eps)`` with the running mean and
    (biased) variance (``nnx.BatchStat``, BN's momentum convention). That is exactly the PIT of a
    Gaussian feature with those moments, and only an approximation otherwise: a non-Gaussian
    feature is *not* Gaussianized at eval time, so train and eval outputs differ more than BN's.

    Options: ``momentum`` (0.99), ``eps`` (1e-5), ``gradient`` ("straight_through").
    """

    def __init__(self, num_features: int, *, rngs: nnx.Rngs | None = None,
                 momentum: float = 0.99, eps: float = 1e-5, gradient: str = "straight_through"):
        del rngs
        c = self.num_features = check_num_features(num_features)
        self.momentum = check_number("momentum", momentum, low=0.0, high=1.0)
        self.eps = check_number("eps", eps, low=0.0, low_inclusive=False)
        self.gradient = check_choice("gradient", gradient, PIT_GRADIENTS)
        self.mean = nnx.BatchStat(jnp.zeros((c,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((c,), jnp.float32))
        self.scale = nnx.Param(jnp.ones((c,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((c,), jnp.float32))

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        check_call(self, x, train)
        if train:
            mean, var = _maths.batch_moments(x)
            self.mean[...] = _maths.running_average(self.mean[...], mean, self.momentum)
            self.var[...] = _maths.running_average(self.var[...], var, self.momentum)
            z = jax.lax.stop_gradient(_maths.empirical_normal_scores(x))
            if self.gradient == "straight_through":
                x_hat = _maths.standardize(x, mean, var, self.eps)
                z = x_hat + jax.lax.stop_gradient(z - x_hat)
        else:
            z = _maths.standardize(x, self.mean[...], self.var[...], self.eps)
        return _maths.affine(z, self.scale[...], self.bias[...])
