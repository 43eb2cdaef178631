"""Input normalizations for image datasets.

Every method starts from ``u = raw / pixel_max`` (pixels in [0, 1]) and uses constants taken from
the *training* split only, so the test split never leaks into preprocessing:

- ``"none"``: ``raw`` as float32 (e.g. 0..255), no scaling at all.
- ``"unit"``: ``u``, pixels in [0, 1].
- ``"standard"``: per channel ``(u - mean_c) / std_c`` with the dataset's conventional constants
  (MNIST 0.1307/0.3081, Fashion-MNIST 0.2860/0.3530, CIFAR-10 (0.4914, 0.4822, 0.4465) /
  (0.2470, 0.2435, 0.2616)); datasets without conventional constants (digits, synthetic) use the
  per-channel mean and standard deviation of their training split.
- ``"standardize_max1"``: the seed notebook's Part 1 preprocessing: ``z = (u - mean_c) / std_c``
  with the training split's own per-channel mean/std, then ``z / max(z_train)`` so the largest
  training value is exactly 1. The test split is divided by the same training maximum (its own
  maximum may differ slightly from 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from normlab.errors import NormlabError, check_name

NORMALIZATIONS: dict[str, str] = {
    "none": "raw pixel values as float32 (e.g. 0..255)",
    "unit": "pixels scaled to [0, 1]",
    "standard": "per-channel (x - mean) / std with the dataset's conventional constants",
    "standardize_max1": "standardize with the training mean/std, then divide by the training max",
}

# Enough images per chunk to vectorize, few enough that float64 temporaries stay small (CIFAR-10's
# training split as float64 would be 1.2 GB).
_STATS_CHUNK = 4096


def channel_mean_std(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) standard deviation of (N, H, W, C) images.

    ``mean_c = sum x / M``, ``std_c = sqrt(sum x^2 / M - mean_c^2)`` with M = N*H*W, accumulated in
    float64 chunk by chunk. Returns two float64 arrays of shape (C,).
    """
    channels = images.shape[-1]
    total = np.zeros(channels)
    total_sq = np.zeros(channels)
    for start in range(0, images.shape[0], _STATS_CHUNK):
        chunk = images[start : start + _STATS_CHUNK].reshape(-1, channels).astype(np.float64)
        total += chunk.sum(axis=0)
        total_sq += np.square(chunk).sum(axis=0)
    count = images.size // channels
    mean = total / count
    # max(0, .): rounding can make a constant channel's variance a tiny negative number.
    std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
    return mean, std


def normalize_splits(
    raw_train: np.ndarray,
    raw_test: np.ndarray,
    method: str,
    *,
    pixel_max: float,
    standard_mean: Sequence[float] | None = None,
    standard_std: Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalize both splits of an image dataset with constants from the training split.

    Args:
        raw_train, raw_test: (N, H, W, C) raw pixels (any numeric dtype, not modified).
        method: one of ``NORMALIZATIONS``.
        pixel_max: the raw value of a white pixel (255 for 8-bit images, 16 for sklearn digits).
        standard_mean, standard_std: conventional per-channel constants on the [0, 1] scale for
            ``"standard"``; ``None`` means "use the training split's own statistics".

    Returns:
        ``(x_train, x_test)``, new float32 arrays of the input shapes.
    """
    check_name("normalization", method, NORMALIZATIONS)
    # The float32 copies are ours: every step below may work on them in place, which keeps the
    # peak memory at one extra copy of the data.
    x_train = np.asarray(raw_train, dtype=np.float32).copy()
    x_test = np.asarray(raw_test, dtype=np.float32).copy()
    if method == "none":
        return x_train, x_test
    for x in (x_train, x_test):
        x /= np.float32(pixel_max)
    if method == "unit":
        return x_train, x_test

    if method == "standard" and standard_mean is not None:
        mean, std = np.asarray(standard_mean), np.asarray(standard_std)
    else:
        mean, std = channel_mean_std(x_train)
    if np.any(std <= 0):
        raise NormlabError("cannot standardize: a channel of the training images is constant")
    for x in (x_train, x_test):
        x -= mean.astype(np.float32)
        x /= std.astype(np.float32)
    if method == "standardize_max1":
        train_max = np.float32(x_train.max())
        for x in (x_train, x_test):
            x /= train_max
    return x_train, x_test
