"""CIFAR-style data augmentation: random crop after padding, and random horizontal flip.

Applied only when a caller asks for it; nothing in ``normlab.data`` augments by default.
"""

from __future__ import annotations

import numpy as np

from normlab.errors import NormlabError

# Keeps the augmentation's random numbers apart from BatchIterator's default_rng((seed, epoch)),
# so the same seed used for both does not correlate batch order and crops.
_AUGMENT_STREAM = 0xA6


def augment_cifar(
    images: np.ndarray, *, seed: int, step: int, pad: int = 4, flip: bool = True
) -> np.ndarray:
    """Randomly crop and flip a batch, deterministically in (seed, step).

    For each image n (shape (H, W, C)): zero-pad ``pad`` pixels on every side, cut out the
    (H, W) window at offsets ``dy_n, dx_n ~ U{0, ..., 2*pad}``, and with probability 1/2 mirror
    it left-right. Images are expected normalized, so the zero padding is the channel mean.

    Args:
        images: (N, H, W, C) array.
        seed, step: non-negative integers; the random draws come from
            ``default_rng((seed, step, _AUGMENT_STREAM))``.
        pad: padding width (4 for CIFAR's 32x32 images); 0 means no crop.
        flip: whether to flip at random.

    Returns:
        A new array of the same shape and dtype.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise NormlabError(f"augment_cifar expects (N, H, W, C) images, got shape {images.shape}")
    if pad < 0:
        raise NormlabError(f"pad must be >= 0, got {pad}")
    count, height, width, _ = images.shape
    rng = np.random.default_rng((seed, step, _AUGMENT_STREAM))
    row_offsets = rng.integers(0, 2 * pad + 1, size=(count,))
    col_offsets = rng.integers(0, 2 * pad + 1, size=(count,))
    flipped = rng.random((count,)) < 0.5 if flip else np.zeros(count, dtype=bool)

    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    rows = row_offsets[:, None] + np.arange(height)  # (N, H) rows of the padded image to keep
    cols = col_offsets[:, None] + np.arange(width)  # (N, W)
    # A flip is the same gather with the columns read right to left.
    cols = np.where(flipped[:, None], cols[:, ::-1], cols)
    batch = np.arange(count)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]]
