"""The dataset registry: names, descriptions and one loader per name."""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Callable

from normlab.data.cifar import load_cifar10
from normlab.data.dataset import Dataset
from normlab.data.digits import load_digits
from normlab.data.mnist import load_fashion_mnist, load_mnist
from normlab.data.synthetic import load_dln_gaussian, load_synthetic
from normlab.errors import UnknownNameError, check_name

def load_synthetic_cifar(*, data_dir=None, normalize: str | None = None, num_train: int = 2048,
                         num_test: int = 512, noise: float = 0.5, seed: int = 0) -> Dataset:
    """``synthetic`` at CIFAR-10's shape (32x32x3, 10 classes), for download-free VGG runs."""
    data = load_synthetic(data_dir=data_dir, normalize=normalize, num_train=num_train, num_test=num_test,
                          image_size=32, channels=3, noise=noise, seed=seed)
    return dataclasses.replace(data, name="synthetic_cifar")


DATASETS: dict[str, str] = {
    "digits": "scikit-learn's bundled 8x8 digits, 1437 train / 360 test, no download",
    "mnist": "MNIST handwritten digits, 28x28x1, 60000 train / 10000 test (downloaded)",
    "fashion_mnist": "Fashion-MNIST clothing, 28x28x1, 60000 train / 10000 test (downloaded)",
    "cifar10": "CIFAR-10 colour images, 32x32x3, 50000 train / 10000 test (downloaded)",
    "synthetic": "tiny generated classification images (noisy class prototypes), for tests",
    "synthetic_cifar": "generated 32x32x3 class-prototype images shaped like CIFAR-10, for smoke runs of "
    "the VGG presets without a download",
    "dln_gaussian": "deep-linear-network regression: x ~ N(0, I), y = A x, A Gaussian 10x10",
}

_LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": load_digits,
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "synthetic": load_synthetic,
    "synthetic_cifar": load_synthetic_cifar,
    "dln_gaussian": load_dln_gaussian,
}

# Every loader takes these; the rest of its keyword arguments are the dataset's own options.
_COMMON_ARGUMENTS = ("data_dir", "normalize")


def dataset_names() -> tuple[str, ...]:
    """The registered dataset names, in registry order."""
    return tuple(DATASETS)


def dataset_options(name: str) -> dict[str, object]:
    """A dataset's own options and their defaults, e.g. ``{"seed": 0, "test_size": 360}``."""
    check_name("dataset", name, DATASETS)
    parameters = inspect.signature(_LOADERS[name]).parameters.values()
    return {p.name: p.default for p in parameters if p.name not in _COMMON_ARGUMENTS}


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    normalize: str | None = None,
    **options,
) -> Dataset:
    """Load a registered dataset.

    Args:
        name: one of ``dataset_names()``.
        data_dir: cache root for downloaded files (default ``$NORMLAB_DATA_DIR``, else the
            per-user cache); files live at ``<data_dir>/<name>/<file>``.
        normalize: input normalization (``"standard"``, ``"unit"``, ``"standardize_max1"``,
            ``"none"``); ``None`` picks the dataset's default and ``Dataset.normalization`` says
            which was used.
        **options: the dataset's own options (see ``dataset_options(name)``), e.g. ``seed``,
            ``num_train``, or ``checksums`` for downloaded datasets.

    Raises:
        UnknownNameError: unknown dataset, option or normalization.
        DataUnavailableError: a file can be neither found in the cache nor downloaded.
        NormlabError: a malformed file or an invalid option value.
    """
    check_name("dataset", name, DATASETS)
    valid_options = dataset_options(name)
    for option in options:
        if option not in valid_options:
            raise UnknownNameError(f"{name} option", option, sorted(valid_options))
    return _LOADERS[name](data_dir=data_dir, normalize=normalize, **options)
