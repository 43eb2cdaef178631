"""Plain NumPy (float64) references for every norm, written from the papers' formulas
(BN15 Alg. 1/2 for batch norm; S18 Sec. 3.3 for the lp norms; the norms' docstrings for the rest).

Deliberately independent of ``normlab.norms._maths``: loops and textbook formulas, no shared
helpers beyond NumPy/SciPy, so a mistake in the library is unlikely to be repeated here.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def per_feature(x):
    """View x (N, ..., C) as (m, C): one column per feature, m = N * H * W."""
    x = np.asarray(x, np.float64)
    return x.reshape(-1, x.shape[-1])


def batch_mean_var(x):
    """Per-feature batch mean and biased variance, by the definition."""
    cols = per_feature(x)
    m = cols.shape[0]
    mean = cols.sum(axis=0) / m
    var = ((cols - mean) ** 2).sum(axis=0) / m
    return mean, var


def bn(x, mean, var, gamma, beta, eps):
    x = np.asarray(x, np.float64)
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def lp_divisor(x, p):
    cols = per_feature(x)
    if p == "1":
        return np.abs(cols).mean(axis=0)
    if p == "2":
        return np.sqrt((cols ** 2).mean(axis=0))
    return np.abs(cols).max(axis=0)


def flax_running(batches, *, momentum, stat, init):
    """Running average the Flax way: ra = momentum * ra + (1 - momentum) * stat(batch)."""
    ra = np.asarray(init, np.float64)
    for b in batches:
        ra = momentum * ra + (1 - momentum) * stat(b)
    return ra


def mean_of(x):
    return batch_mean_var(x)[0]


def var_biased(x):
    return batch_mean_var(x)[1]


def torch_running(batches, *, torch_momentum=0.1):
    """PyTorch's BatchNorm bookkeeping: ra = (1 - m) * ra + m * batch, unbiased running var."""
    c = np.asarray(batches[0]).shape[-1]
    running_mean, running_var = np.zeros(c), np.ones(c)
    for b in batches:
        cols = per_feature(b)
        n = cols.shape[0]
        mean = cols.mean(axis=0)
        unbiased = ((cols - mean) ** 2).sum(axis=0) / (n - 1)
        running_mean = (1 - torch_momentum) * running_mean + torch_momentum * mean
        running_var = (1 - torch_momentum) * running_var + torch_momentum * unbiased
    return running_mean, running_var


def layer_norm(x, gamma, beta, eps):
    x = np.asarray(x, np.float64)
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        s = x[i]
        out[i] = (s - s.mean()) / np.sqrt(s.var() + eps)
    return gamma * out + beta


def group_norm(x, groups, gamma, beta, eps):
    x = np.asarray(x, np.float64)
    c = x.shape[-1]
    size = c // groups
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        for g in range(groups):
            block = x[i, ..., g * size:(g + 1) * size]
            standardized = (block - block.mean()) / np.sqrt(block.var() + eps)
            out[i, ..., g * size:(g + 1) * size] = standardized
    return gamma * out + beta


def rms_norm(x, gamma, eps):
    x = np.asarray(x, np.float64)
    return gamma * x / np.sqrt((x ** 2).mean(axis=-1, keepdims=True) + eps)


def zca(x, mean, cov, gamma, beta, eps):
    cols = per_feature(x)
    lam, u = np.linalg.eigh(cov + eps * np.eye(cov.shape[0]))
    whitening = u @ np.diag(lam ** -0.5) @ u.T
    return (gamma * ((cols - mean) @ whitening) + beta).reshape(np.shape(x))


def covariance(x):
    cols = per_feature(x)
    centred = cols - cols.mean(axis=0)
    return centred.T @ centred / cols.shape[0]


def pit(x, gamma, beta):
    cols = per_feature(x)
    m = cols.shape[0]
    u = np.stack([stats.rankdata(cols[:, j], method="ordinal") for j in range(cols.shape[1])], 1)
    return (gamma * stats.norm.ppf(u / (m + 1)) + beta).reshape(np.shape(x))
