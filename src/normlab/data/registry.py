"""The dataset registry: names, descriptions and one loader per name."""

from __future__ import annotations

import os

from normlab.data import cifar, mnist
from normlab.data.cifar import load_cifar10
from normlab.data.dataset import Dataset
from normlab.data.digits import load_digits
from normlab.data.mnist import load_fashion_mnist, load_mnist
from normlab.data.synthetic import (
    load_dln_gaussian,
    load_synthetic,
    load_synthetic_cifar,
    load_synthetic_fashion_mnist,
    load_synthetic_mnist,
)
from normlab.registry import Registry

DATASETS_REGISTRY: Registry[Dataset] = Registry("dataset", {
    "digits": (load_digits, "scikit-learn's bundled 8x8 digits, 1437 train / 360 test, no download"),
    "mnist": (load_mnist, "MNIST handwritten digits, 28x28x1, 60000 train / 10000 test (downloaded)"),
    "fashion_mnist": (load_fashion_mnist,
                      "Fashion-MNIST clothing, 28x28x1, 60000 train / 10000 test (downloaded)"),
    "cifar10": (load_cifar10, "CIFAR-10 colour images, 32x32x3, 50000 train / 10000 test (downloaded)"),
    "synthetic": (load_synthetic, "tiny generated classification images (noisy class prototypes), for tests"),
    "synthetic_cifar": (load_synthetic_cifar, "generated CIFAR-10-shaped images (32x32x3, 10 classes): a class's "
                        "object, shifted and mirrored, on 1/f clutter; the VGG presets without a download"),
    "synthetic_mnist": (load_synthetic_mnist, "generated 28x28x1 class-prototype images shaped like MNIST, "
                        "what the tiny size of the MNIST presets trains on (no download)"),
    "synthetic_fashion_mnist": (load_synthetic_fashion_mnist, "generated 28x28x1 class-prototype images shaped "
                                "like Fashion-MNIST, for the tiny size of its presets (no download)"),
    "dln_gaussian": (load_dln_gaussian, "deep-linear-network regression: x ~ N(0, I), y = A x, A Gaussian 10x10"),
}, common=("data_dir", "normalize"))  # every loader takes these; the rest are the dataset's own options

DATASETS: dict[str, str] = DATASETS_REGISTRY.descriptions()


def dataset_names() -> tuple[str, ...]:
    """The registered dataset names, in registry order."""
    return DATASETS_REGISTRY.names()


def dataset_options(name: str) -> dict[str, object]:
    """A dataset's own options and their defaults, e.g. ``{"seed": 0, "test_size": 360}``."""
    return DATASETS_REGISTRY.options(name)


# Input shape and classes of the downloaded datasets, known without a download.
_DOWNLOADED_SHAPES = {
    "mnist": (mnist.IMAGE_SHAPE, mnist.NUM_CLASSES),
    "fashion_mnist": (mnist.IMAGE_SHAPE, mnist.NUM_CLASSES),
    "cifar10": ((cifar.IMAGE_SIZE, cifar.IMAGE_SIZE, 3), cifar.NUM_CLASSES),
}


def dataset_shape(name: str) -> tuple[tuple[int, ...], int]:
    """``(input_shape, num_classes)`` of a dataset; downloaded ones need no download."""
    if name in _DOWNLOADED_SHAPES:
        return _DOWNLOADED_SHAPES[name]
    data = load_dataset(name)  # bundled or generated: cheap
    return data.input_shape, data.num_classes


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
    return DATASETS_REGISTRY.build(name, data_dir=data_dir, normalize=normalize, **options)
