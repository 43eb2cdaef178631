"""Matrix-free spectral estimates of a symmetric operator given only ``hvp(v) = H v``.

Everything here works on flat vectors of length ``n`` and an ``hvp`` closure; nothing knows about
networks, so the same functions serve the Hessian probes, their tests against dense matrices and
the benchmarks. All functions are pure and jittable (``m``, ``k`` and the sample counts are static).

- :func:`lanczos` -- ``m`` steps of Lanczos with full reorthogonalization (classical Gram-Schmidt,
  twice: every new vector is orthogonal to all earlier ones to working precision, which keeps
  spurious copies of converged eigenvalues out of the Ritz values). Cost: ``m`` HVPs plus
  ``O(m^2 n)`` flops.
- :func:`ritz_pairs` -- eigenpairs of the tridiagonal ``T``; the residual of Ritz pair ``i`` is
  ``||H y_i - theta_i y_i|| = beta_m |s_{m,i}|`` (Paige), read from the run at no extra HVP.
- :func:`power_iteration` -- the ``k`` eigenvalues largest in magnitude by deflated power
  iteration (PyHessian's method), with explicit residuals.
- :func:`hutchinson` -- ``tr(H) ~ mean_j z_j^T H z_j`` over Rademacher ``z_j`` (Hutchinson 1989),
  with the standard error ``std_j / sqrt(n_v)``.
- :func:`slq` -- stochastic Lanczos quadrature (G19 Sec. 2, Lin, Saad & Yang 2016): for ``n_v``
  random unit starts ``v_l``, ``m`` Lanczos steps give Ritz values ``theta_{l,i}`` and weights
  ``tau_{l,i} = s_{1,i}^2`` (first components of T's eigenvectors, summing to 1); the spectral
  density is ``phi(t) ~ (1/n_v) sum_l sum_i tau_{l,i} g_sigma(t - theta_{l,i})``.
  :func:`smoothed_density` draws it at any ``sigma`` afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Hvp = Callable[[Array], Array]


class LanczosRun(NamedTuple):
    """``alphas`` (m,) diagonal, ``betas`` (m,) off-diagonal (``betas[m-1]`` is the residual norm
    of the last step), ``basis`` (m, n) orthonormal rows ``v_1..v_m`` with ``v_1`` the start."""

    alphas: Array
    betas: Array
    basis: Array


class RitzPairs(NamedTuple):
    """``values`` (m,) ascending, ``vectors`` (m, m) eigenvectors of T in columns, ``residuals`` (m,)."""

    values: Array
    vectors: Array
    residuals: Array


def _orthogonalize(w: Array, basis: Array) -> Array:
    """``w`` minus its projection onto the rows of ``basis`` (rows not yet filled are zero), twice."""
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    return w


def lanczos(hvp: Hvp, v0: Array, m: int, *, key: Array | None = None) -> LanczosRun:
    """``m`` Lanczos steps from ``v0`` (normalized here) with full reorthogonalization.

    ``H V^T = V^T T + betas[m-1] v_{m+1} e_m^T`` with ``T = tridiag(betas[:-1], alphas, betas[:-1])``.
    On breakdown (the Krylov space is invariant: ``beta_j`` below ``sqrt(eps) ||H v_j||``) the next
    vector is a fresh random one orthogonal to the basis (from ``key``) and ``beta_j`` is set to 0,
    so ``T`` becomes block diagonal and its eigenvalues stay eigenvalues of ``H``; the SLQ weights
    of such later blocks are 0, as they should be. ``m`` must not exceed ``n``.
    """
    n = v0.shape[0]
    if not 1 <= m <= n:
        raise ValueError(f"lanczos needs 1 <= m <= n; got m={m}, n={n}")
    dtype = v0.dtype
    key = jax.random.key(0) if key is None else key
    tolerance = jnp.sqrt(jnp.finfo(dtype).eps)
    # m + 1 rows: row j + 1 is written in place at step j (the last one, v_{m+1}, is dropped).
    basis = jnp.zeros((m + 1, n), dtype).at[0].set(v0 / jnp.linalg.norm(v0))

    def restart(j, basis):
        fresh = _orthogonalize(jax.random.normal(jax.random.fold_in(key, j), (n,), dtype), basis)
        return fresh / jnp.linalg.norm(fresh)

    def body(j, carry):
        basis, alphas, betas = carry
        v = basis[j]
        w = hvp(v)
        alpha = jnp.vdot(v, w)
        scale = jnp.linalg.norm(w)
        w = _orthogonalize(w, basis)
        beta = jnp.linalg.norm(w)
        broke = beta <= tolerance * jnp.maximum(scale, jnp.finfo(dtype).tiny)
        # only the taken branch runs: no random draw unless the Krylov space is exhausted
        following = jax.lax.cond(broke, restart, lambda j, basis: w / beta, j, basis)
        beta = jnp.where(broke, jnp.zeros_like(beta), beta)
        return basis.at[j + 1].set(following), alphas.at[j].set(alpha), betas.at[j].set(beta)

    zeros = jnp.zeros((m,), dtype)
    basis, alphas, betas = jax.lax.fori_loop(0, m, body, (basis, zeros, zeros))
    basis = basis[:m]
    return LanczosRun(alphas, betas, basis)


def tridiagonal(run: LanczosRun) -> Array:
    """The (m, m) tridiagonal matrix T of a Lanczos run."""
    off = run.betas[:-1]
    return jnp.diag(run.alphas) + jnp.diag(off, 1) + jnp.diag(off, -1)


def ritz_pairs(run: LanczosRun) -> RitzPairs:
    """Eigenpairs of T (ascending) and each pair's residual ``|betas[m-1] * s_{m,i}|``."""
    values, vectors = jnp.linalg.eigh(tridiagonal(run))
    residuals = jnp.abs(run.betas[-1] * vectors[-1, :])
    return RitzPairs(values, vectors, residuals)


def top_ritz(run: LanczosRun, k: int) -> tuple[Array, Array, Array]:
    """The ``k`` largest Ritz values (descending), their residuals and Ritz vectors (k, n)."""
    pairs = ritz_pairs(run)
    order = jnp.arange(pairs.values.shape[0] - 1, pairs.values.shape[0] - 1 - k, -1)
    vectors = (run.basis.T @ pairs.vectors[:, order]).T  # (k, n): y_i = V^T s_i
    return pairs.values[order], pairs.residuals[order], vectors


def power_iteration(hvp: Hvp, v0: Array, k: int, iterations: int) -> tuple[Array, Array, Array]:
    """The ``k`` eigenvalues of largest magnitude by power iteration with deflation.

    Each eigenvector is iterated ``iterations`` times from ``v0`` kept orthogonal to the ones
    found before (PyHessian's ``eigenvalues``). Returns ``(values (k,), residuals (k,), vectors
    (k, n))``, ``values`` the Rayleigh quotients, residuals ``||H v - lambda v||`` (one more HVP each).
    Converges at rate ``|lambda_{i+1} / lambda_i|`` per HVP, slower than Lanczos.
    """
    n = v0.shape[0]
    found = jnp.zeros((k, n), v0.dtype)
    values, residuals = [], []
    for i in range(k):
        def step(_, v):
            w = _orthogonalize(hvp(v), found)
            return w / jnp.linalg.norm(w)

        start = _orthogonalize(v0, found)
        v = jax.lax.fori_loop(0, iterations, step, start / jnp.linalg.norm(start))
        hv = hvp(v)
        value = jnp.vdot(v, hv)
        values.append(value)
        residuals.append(jnp.linalg.norm(hv - value * v))
        found = found.at[i].set(v)
    return jnp.stack(values), jnp.stack(residuals), found


def rademacher(key: Array, count: int, n: int, dtype) -> Array:
    """(count, n) entries +1 or -1 with probability 1/2 each."""
    return jax.random.rademacher(key, (count, n), dtype=dtype)


def hutchinson(hvp: Hvp, key: Array, count: int, n: int, dtype) -> tuple[Array, Array, Array]:
    """``(trace, stderr, samples (count,))``: ``samples_j = z_j^T H z_j``, ``trace = mean``,
    ``stderr = std(samples, ddof=1) / sqrt(count)`` (0 when count is 1: no spread to estimate).

    The estimator is unbiased; its variance is ``2 sum_{i != j} H_ij^2`` per vector (Rademacher
    vectors minimize it among i.i.d. choices: the diagonal contributes nothing).
    """
    vectors = rademacher(key, count, n, dtype)
    samples = jax.lax.map(lambda z: jnp.vdot(z, hvp(z)), vectors)
    trace = jnp.mean(samples)
    stderr = jnp.std(samples, ddof=1) / jnp.sqrt(count) if count > 1 else jnp.zeros_like(trace)
    return trace, stderr, samples


def slq_nodes(run: LanczosRun) -> tuple[Array, Array]:
    """One start's quadrature: Ritz values (m,) ascending and weights ``s_{1,i}^2`` (m,), sum 1."""
    pairs = ritz_pairs(run)
    return pairs.values, jnp.square(pairs.vectors[0, :])


def slq(hvp: Hvp, key: Array, starts: int, m: int, n: int, dtype, *, first: LanczosRun | None = None):
    """``(nodes (starts, m), weights (starts, m))``: SLQ from ``starts`` random Gaussian unit starts.

    ``first``, if given, is a run already made from a Gaussian start (the shared run of the
    Hessian probes) and serves as start 0, saving ``m`` HVPs. The trace estimate
    ``n * mean_l sum_i tau_{l,i} theta_{l,i}`` and the density both follow from these arrays.
    """
    runs = [] if first is None else [first]
    for start in range(len(runs), starts):
        start_key = jax.random.fold_in(key, start)
        v0 = jax.random.normal(start_key, (n,), dtype)
        runs.append(lanczos(hvp, v0, m, key=jax.random.fold_in(start_key, 1)))
    pairs = [slq_nodes(run) for run in runs]
    return jnp.stack([p[0] for p in pairs]), jnp.stack([p[1] for p in pairs])


def smoothed_density(nodes, weights, grid, sigma: float) -> np.ndarray:
    """``phi(t)`` on ``grid`` (NumPy, for the report): the Gaussian-smoothed SLQ density.

    ``phi(t) = (1/n_v) sum_l sum_i w_{l,i} exp(-(t - theta_{l,i})^2 / (2 sigma^2)) / (sigma sqrt(2 pi))``;
    it integrates to 1 (G19 Eq. 5). ``nodes``/``weights``: (starts, m) or (m,).
    """
    nodes = np.atleast_2d(np.asarray(nodes, dtype=float))
    weights = np.atleast_2d(np.asarray(weights, dtype=float))
    grid = np.asarray(grid, dtype=float)
    kernel = np.exp(-0.5 * ((grid[:, None, None] - nodes[None]) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    return np.sum(kernel * weights[None], axis=(1, 2)) / nodes.shape[0]
