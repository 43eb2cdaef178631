"""scikit-learn's bundled 8x8 handwritten digits: 1797 images, 10 classes, no download.

Pixels are integers 0..16. sklearn has no train/test split, so we make one: a plain permutation
drawn from ``np.random.default_rng(seed)``; its last ``test_size`` indices (360 by default, about
20%) are the test split, the other 1437 the training split. Same seed, same split, on every
machine (numpy's default generator is stable across platforms and versions).
"""

from __future__ import annotations

import numpy as np

from normlab.data.dataset import Dataset
from normlab.data.normalization import normalize_splits
from normlab.errors import NormlabError

NUM_EXAMPLES = 1797
NUM_CLASSES = 10
PIXEL_MAX = 16.0


def split_indices(num_examples: int, test_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded train/test split: ``perm = default_rng(seed).permutation(n)``; train ``perm[:n-t]``,
    test ``perm[n-t:]``. Both sorted, so a split lists examples in their original order."""
    if not 0 < test_size < num_examples:
        raise NormlabError(f"test_size must be in 1..{num_examples - 1}, got {test_size}")
    order = np.random.default_rng(seed).permutation(num_examples)
    cut = num_examples - test_size
    return np.sort(order[:cut]), np.sort(order[cut:])


def load_digits(
    *, data_dir=None, normalize: str | None = None, seed: int = 0, test_size: int = 360
) -> Dataset:
    """The 8x8 digits; ``normalize`` defaults to ``"standard"`` (training-split mean and std).

    Shapes (defaults): x_train (1437, 8, 8, 1), x_test (360, 8, 8, 1) float32; labels int32 0..9.
    ``data_dir`` is accepted for a uniform signature and ignored (sklearn ships the data).
    """
    del data_dir
    # Imported here: scikit-learn takes about a second to import and only this loader needs it.
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    images = bunch.images[..., None]  # (1797, 8, 8) -> (1797, 8, 8, 1)
    labels = bunch.target.astype(np.int32)
    train, test = split_indices(len(labels), test_size, seed)
    method = normalize or "standard"
    x_train, x_test = normalize_splits(
        images[train], images[test], method, pixel_max=PIXEL_MAX
    )
    return Dataset(
        name="digits",
        x_train=x_train,
        y_train=labels[train],
        x_test=x_test,
        y_test=labels[test],
        num_classes=NUM_CLASSES,
        input_shape=tuple(x_train.shape[1:]),
        task="classification",
        normalization=method,
    )
