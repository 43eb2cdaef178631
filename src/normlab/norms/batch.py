"""Batch normalization (BN15) and its variants that normalize with batch statistics.

Every class here normalizes each feature (each channel, for convolutions) with statistics taken
over all axes but the last: over N for dense inputs (N, C), over N, H, W for conv inputs
(N, H, W, C). In train mode they use the current batch's statistics and update running averages;
in eval mode they use the running averages and change no state.

Running-average convention (Flax's): ``ra <- momentum * ra + (1 - momentum) * batch_value`` with
``momentum = 0.99`` by default. PyTorch's ``ra <- (1 - m) * ra + m * batch_value`` with m = 0.1 is
``momentum = 0.9`` here; add ``running_var="unbiased"`` to also store PyTorch's (and BN15
Alg. 2's) unbiased variance ``m/(m-1) * var_B``.

None of these norms draws from the ``params`` rng stream: their parameters have fixed inits
(gamma = 1, beta = 0), so a network and its BN twin built from the same seed get identical
weights.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from normlab.errors import NormlabError
from normlab.norms import _maths
from normlab.norms._checks import check_call, check_choice, check_num_features, check_number

RUNNING_VAR_CHOICES = ("biased", "unbiased")
NOISE_POSITIONS = ("after_affine", "before_affine")


class FrozenParam(nnx.Variable):
    """An affine factor held at its initial value: deliberately *not* an ``nnx.Param``.

    ``nnx.Optimizer(model, tx, wrt=nnx.Param)`` and ``nnx.grad`` (which differentiates
    ``nnx.Param`` by default) never see it, so it stays at its init for the whole run, yet it is
    still in ``nnx.state(model)`` under the usual name (``scale`` or ``bias``), where probes of
    the BN parameters can read it. Select it with ``nnx.state(model, FrozenParam)``.
    """


def _ones(c: int) -> jax.Array:
    return jnp.ones((c,), jnp.float32)


def _zeros(c: int) -> jax.Array:
    return jnp.zeros((c,), jnp.float32)


class BatchNorm(nnx.Module):
    """Batch normalization, BN15 Alg. 1 (train) and Alg. 2 (inference).

    Train: ``y = gamma * (x - mean_B) / sqrt(var_B + eps) + beta`` with the per-feature batch
    mean and *biased* batch variance over m = N (dense) or N*H*W (conv) values; then
    ``mean <- momentum * mean + (1 - momentum) * mean_B`` and
    ``var <- momentum * var + (1 - momentum) * v`` where v = var_B (``running_var="biased"``,
    Flax) or ``m/(m-1) * var_B`` (``"unbiased"``, PyTorch and BN15).
    Eval: ``y = gamma * (x - mean) / sqrt(var + eps) + beta`` with the running averages.

    Variables: ``scale`` (gamma, ``nnx.Param``, init 1), ``bias`` (beta, ``nnx.Param``, init 0),
    ``mean`` / ``var`` (``nnx.BatchStat``, init 0 / 1), all of shape (C,).

    Options: ``momentum`` (0.99), ``eps`` (1e-5), ``running_var`` ("biased"). PyTorch's defaults
    are ``momentum=0.9, running_var="unbiased"``.
    """

    def __init__(self, num_features: int, *, rngs: nnx.Rngs | None = None, momentum: float = 0.99,
                 eps: float = 1e-5, running_var: str = "biased"):
        del rngs  # fixed inits: drawing from `params` would unpair a network and its twin
        self.num_features = check_num_features(num_features)
        self.momentum = check_number("momentum", momentum, low=0.0, high=1.0)
        self.eps = check_number("eps", eps, low=0.0, low_inclusive=False)
        self.running_var = check_choice("running_var", running_var, RUNNING_VAR_CHOICES)
        self._init_statistics(self.num_features)
        self._init_affine(self.num_features)

    # -- what the variants override ------------------------------------------------------------
    def _init_statistics(self, c: int) -> None:
        self.mean = nnx.BatchStat(_zeros(c))
        self.var = nnx.BatchStat(_ones(c))

    def _init_affine(self, c: int) -> None:
        # Variables, not Params: subclasses hold one of them fixed as a FrozenParam.
        self.scale: nnx.Variable[jax.Array] = nnx.Param(_ones(c))
        self.bias: nnx.Variable[jax.Array] = nnx.Param(_zeros(c))

    def _gamma_beta(self) -> tuple[jax.Array | None, jax.Array | None]:
        return self.scale[...], self.bias[...]

    # -- shared ---------------------------------------------------------------------------------
    def _statistics(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        """(mean, var) to normalize with; in train mode also updates the running averages."""
        if not train:
            return self.mean[...], self.var[...]
        mean, var = _maths.batch_moments(x)
        self.mean[...] = _maths.running_average(self.mean[...], mean, self.momentum)
        self.var[...] = _maths.running_average(self.var[...], self._stored_variance(x, var),
                                               self.momentum)
        return mean, var

    def _stored_variance(self, x: jax.Array, var: jax.Array) -> jax.Array:
        if self.running_var == "biased":
            return var
        m = _maths.values_per_feature(x)
        if m < 2:
            raise NormlabError(
                f"{type(self).__name__}: running_var='unbiased' needs at least 2 values per "
                f"feature in a training batch, got input shape {tuple(x.shape)}"
            )
        return _maths.unbiased_variance(var, m)

    def _standardized(self, x: jax.Array, train: bool) -> jax.Array:
        mean, var = self._statistics(x, train)
        return _maths.standardize(x, mean, var, self.eps)

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Normalize ``x`` (N, C) or (N, H, W, C); same shape out."""
        check_call(self, x, train)
        return _maths.affine(self._standardized(x, train), *self._gamma_beta())


class NoAffineBatchNorm(BatchNorm):
    """BN with gamma = 1 and beta = 0 fixed (d2l BN exercise 5): ``y = x_hat``.

    No ``scale``/``bias`` variables at all; running statistics and options as :class:`BatchNorm`.
    """

    def _init_affine(self, c: int) -> None:
        pass

    def _gamma_beta(self):
        return None, None


class FrozenGammaBatchNorm(BatchNorm):
    """BN with gamma held at 1: ``y = x_hat + beta``; ``beta`` learned.

    ``scale`` is a :class:`FrozenParam` (not an ``nnx.Param``), so no optimizer moves it.
    """

    def _init_affine(self, c: int) -> None:
        self.scale = FrozenParam(_ones(c))
        self.bias = nnx.Param(_zeros(c))


class FrozenBetaBatchNorm(BatchNorm):
    """BN with beta held at 0: ``y = gamma * x_hat``; ``gamma`` learned.

    ``bias`` is a :class:`FrozenParam` (not an ``nnx.Param``), so no optimizer moves it.
    """

    def _init_affine(self, c: int) -> None:
        self.scale = nnx.Param(_ones(c))
        self.bias = FrozenParam(_zeros(c))


class NoisyBatchNorm(BatchNorm):
    """BN followed by S18's distribution-shifting noise (S18 Sec. 2.1, Alg. 1), train mode only.

    At every training call, per unit j: ``mu_j ~ U(-n_mu, n_mu)``, ``sigma_j ~ U(1, n_sigma)``;
    per sample i (and spatial position, for conv):
    ``m_ij ~ U(mu_j - r_mu, mu_j + r_mu)``, ``s_ij ~ N(sigma_j, r_sigma^2)``; then
    ``a_ij <- s_ij * a_ij + m_ij``. With ``noise_position="after_affine"`` (default) ``a`` is
    the BN output ``gamma * x_hat + beta``; with ``"before_affine"`` the noise acts on ``x_hat``
    and gamma/beta follow. Eval mode is plain BN eval (no noise, running statistics).

    Randomness: the constructor forks ``rngs.noise`` (an ``nnx.Rngs`` must have a stream named
    ``noise``, e.g. ``nnx.Rngs(params=0, noise=1)``) into ``self.noise_rng``, an
    ``nnx.RngStream`` whose key and counter (``nnx.RngKey``/``nnx.RngCount``, both
    ``nnx.RngState``) live in ``nnx.state(module)``. Each training call advances the counter, so
    a functional ``split -> jit -> merge`` step that returns the new state draws fresh noise
    every step, reproducibly from the seed. Eval calls draw nothing.

    Options: BN's (``momentum``, ``eps``, ``running_var``) and ``n_mu`` (0.5), ``n_sigma``
    (1.25), ``r_mu`` (0.1), ``r_sigma`` (0.1), ``noise_position`` ("after_affine").
    """

    def __init__(self, num_features: int, *, rngs: nnx.Rngs, momentum: float = 0.99,
                 eps: float = 1e-5, running_var: str = "biased", n_mu: float = 0.5,
                 n_sigma: float = 1.25, r_mu: float = 0.1, r_sigma: float = 0.1,
                 noise_position: str = "after_affine"):
        super().__init__(num_features, momentum=momentum, eps=eps, running_var=running_var)
        self.n_mu = check_number("n_mu", n_mu, low=0.0)
        self.n_sigma = check_number("n_sigma", n_sigma, low=1.0)
        self.r_mu = check_number("r_mu", r_mu, low=0.0)
        self.r_sigma = check_number("r_sigma", r_sigma, low=0.0)
        self.noise_position = check_choice("noise_position", noise_position, NOISE_POSITIONS)
        # A dedicated stream, never `default`: with nnx.Rngs(seed) the default stream also feeds
        # `params`, and forking it here would shift every weight drawn after this layer.
        if not isinstance(rngs, nnx.Rngs) or "noise" not in rngs:
            raise NormlabError(
                "norm 'noisy' needs an rng stream named 'noise': build the model with "
                "rngs=nnx.Rngs(params=<seed>, noise=<seed>)"
            )
        self.noise_rng = rngs["noise"].fork()

    def _noise(self, shape: tuple[int, ...]):
        return _maths.sample_noise(self.noise_rng(), shape, n_mu=self.n_mu, n_sigma=self.n_sigma,
                                   r_mu=self.r_mu, r_sigma=self.r_sigma)

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Normalize ``x`` (N, C) or (N, H, W, C), adding S18 noise in train mode."""
        check_call(self, x, train)
        x_hat = self._standardized(x, train)
        gamma, beta = self._gamma_beta()
        if not train:
            return _maths.affine(x_hat, gamma, beta)
        m, s = self._noise(x.shape)
        if self.noise_position == "after_affine":
            return s * _maths.affine(x_hat, gamma, beta) + m
        return _maths.affine(s * x_hat + m, gamma, beta)


class MeanOnlyBatchNorm(nnx.Module):
    """Remove only the batch mean (d2l BN exercise 4): ``y = gamma * (x - mean_B) + beta``.

    No division by the standard deviation. Eval: ``y = gamma * (x - mean) + beta`` with the
    running mean (``nnx.BatchStat`` ``mean``, init 0, BN's momentum convention). gamma/beta are
    kept as in BN so that the only change from BN is the missing variance step.

    Options: ``momentum`` (0.99).
    """

    def __init__(self, num_features: int, *, rngs: nnx.Rngs | None = None,
                 momentum: float = 0.99):
        del rngs
        self.num_features = check_num_features(num_features)
        self.momentum = check_number("momentum", momentum, low=0.0, high=1.0)
        self.mean = nnx.BatchStat(_zeros(self.num_features))
        self.scale = nnx.Param(_ones(self.num_features))
        self.bias = nnx.Param(_zeros(self.num_features))

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        check_call(self, x, train)
        if train:
            mean = jnp.mean(x, axis=_maths.batch_axes(x))
            self.mean[...] = _maths.running_average(self.mean[...], mean, self.momentum)
        else:
            mean = self.mean[...]
        return _maths.affine(x - mean, self.scale[...], self.bias[...])


class VarOnlyBatchNorm(BatchNorm):
    """Only divide by the batch standard deviation (d2l BN exercise 4): no mean removal.

    Train: ``y = gamma * x / sqrt(var_B + eps) + beta`` with the biased batch variance (taken
    around the batch mean, i.e. the usual std; only the subtraction from ``x`` is dropped).
    Eval: the running ``var`` instead. Only ``var`` is kept as a running statistic (no ``mean``).

    Options: ``momentum`` (0.99), ``eps`` (1e-5), ``running_var`` ("biased"), as :class:`BatchNorm`.
    """

    def _init_statistics(self, c: int) -> None:
        self.var = nnx.BatchStat(_ones(c))  # no running mean: it would never be used

    def _standardized(self, x: jax.Array, train: bool) -> jax.Array:
        if train:
            _, var = _maths.batch_moments(x)
            self.var[...] = _maths.running_average(self.var[...], self._stored_variance(x, var),
                                                   self.momentum)
        else:
            var = self.var[...]
        return x * jax.lax.rsqrt(var + self.eps)


class LpBatchNorm(nnx.Module):
    """Lp batch normalization (S18 Sec. 3.3); ``p`` is set by the subclasses l1, l2, linf.

    Train: ``y = gamma * (x - mean_B) / (d_B + eps) + beta`` with the per-feature batch mean and
    the divisor ``d_B`` = the average lp norm of the feature's values *before* the mean shift:
    p=1 ``mean |x|``, p=2 ``sqrt(mean x^2)``, p=inf ``max |x|`` (over N, or N*H*W for conv).
    ``eps`` is added to the divisor (not inside a root) so the three p are treated alike.
    Eval: the running averages ``mean`` and ``divisor`` (both ``nnx.BatchStat``, init 0 and 1,
    BN's momentum convention) replace ``mean_B`` and ``d_B``.

    Options: ``momentum`` (0.99), ``eps`` (1e-5).
    """

    p: str = "2"

    def __init__(self, num_features: int, *, rngs: nnx.Rngs | None = None,
                 momentum: float = 0.99, eps: float = 1e-5):
        del rngs
        self.num_features = check_num_features(num_features)
        self.momentum = check_number("momentum", momentum, low=0.0, high=1.0)
        self.eps = check_number("eps", eps, low=0.0, low_inclusive=False)
        self.mean = nnx.BatchStat(_zeros(self.num_features))
        self.divisor = nnx.BatchStat(_ones(self.num_features))
        self.scale = nnx.Param(_ones(self.num_features))
        self.bias = nnx.Param(_zeros(self.num_features))

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        check_call(self, x, train)
        if train:
            mean = jnp.mean(x, axis=_maths.batch_axes(x))
            divisor = _maths.lp_divisor(x, self.p)
            self.mean[...] = _maths.running_average(self.mean[...], mean, self.momentum)
            self.divisor[...] = _maths.running_average(self.divisor[...], divisor, self.momentum)
        else:
            mean, divisor = self.mean[...], self.divisor[...]
        y = (x - mean) / (divisor + self.eps)
        return _maths.affine(y, self.scale[...], self.bias[...])


class L1BatchNorm(LpBatchNorm):
    """:class:`LpBatchNorm` with p = 1: divide by ``mean |x|``."""

    p = "1"


class L2BatchNorm(LpBatchNorm):
    """:class:`LpBatchNorm` with p = 2: divide by ``sqrt(mean x^2)``."""

    p = "2"


class LinfBatchNorm(LpBatchNorm):
    """:class:`LpBatchNorm` with p = inf: divide by ``max |x|``."""

    p = "inf"
