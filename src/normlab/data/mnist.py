"""MNIST and Fashion-MNIST: 28x28 grayscale, 60,000 training and 10,000 test images, 10 classes.

Both come as four gzipped IDX files (see ``normlab.data.idx``) with the same names. The default
checksums are the SHA-256 of the original files; tests pass their own through ``checksums=``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from normlab.data.dataset import Dataset
from normlab.data.download import fetch_file
from normlab.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx_gz
from normlab.data.normalization import normalize_splits
from normlab.errors import NormlabError, UnknownNameError

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
FILE_NAMES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28, 1)  # H, W, C of both datasets

# The Google-hosted copy TensorFlow uses: byte-identical to the original yann.lecun.com files,
# which are often unreachable.
MNIST_BASE_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
FASHION_MNIST_BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

MNIST_CHECKSUMS = {
    TRAIN_IMAGES: "sha256:440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    TRAIN_LABELS: "sha256:3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    TEST_IMAGES: "sha256:8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    TEST_LABELS: "sha256:f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
FASHION_MNIST_CHECKSUMS = {
    TRAIN_IMAGES: "sha256:3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    TRAIN_LABELS: "sha256:a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    TEST_IMAGES: "sha256:346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    TEST_LABELS: "sha256:67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}

# Conventional "standard" constants on the [0, 1] pixel scale (mean, std of the training pixels).
MNIST_MEAN_STD = ((0.1307,), (0.3081,))
FASHION_MNIST_MEAN_STD = ((0.2860,), (0.3530,))


def load_mnist(
    *,
    data_dir: str | os.PathLike | None = None,
    normalize: str | None = None,
    checksums: Mapping[str, str] | None = None,
) -> Dataset:
    """MNIST handwritten digits; ``normalize`` defaults to ``"standard"`` (0.1307 / 0.3081).

    Shapes: x_train (60000, 28, 28, 1), x_test (10000, 28, 28, 1), float32; labels int32 0..9.
    ``checksums`` overrides the default checksum of any of the four files (by file name).
    """
    return _load_idx_dataset(
        "mnist",
        base_url=MNIST_BASE_URL,
        checksums={**MNIST_CHECKSUMS, **_known_files(checksums)},
        mean_std=MNIST_MEAN_STD,
        data_dir=data_dir,
        normalize=normalize,
    )


def load_fashion_mnist(
    *,
    data_dir: str | os.PathLike | None = None,
    normalize: str | None = None,
    checksums: Mapping[str, str] | None = None,
) -> Dataset:
    """Fashion-MNIST (Zalando clothing); ``normalize`` defaults to ``"standard"`` (0.2860 / 0.3530).

    Same shapes and file names as MNIST.
    """
    return _load_idx_dataset(
        "fashion_mnist",
        base_url=FASHION_MNIST_BASE_URL,
        checksums={**FASHION_MNIST_CHECKSUMS, **_known_files(checksums)},
        mean_std=FASHION_MNIST_MEAN_STD,
        data_dir=data_dir,
        normalize=normalize,
    )


def _known_files(checksums: Mapping[str, str] | None) -> dict[str, str]:
    """Reject checksums for files the dataset does not have (likely a typo in a test or config)."""
    checksums = dict(checksums or {})
    for file_name in checksums:
        if file_name not in FILE_NAMES:
            raise UnknownNameError("file", file_name, FILE_NAMES)
    return checksums


def _load_idx_dataset(
    name: str,
    *,
    base_url: str,
    checksums: Mapping[str, str],
    mean_std: tuple[tuple[float, ...], tuple[float, ...]],
    data_dir,
    normalize: str | None,
) -> Dataset:
    paths = {
        file_name: fetch_file(
            name,
            file_name,
            canonical_url=base_url + file_name,
            checksum=checksums[file_name],
            data_dir=data_dir,
        )
        for file_name in FILE_NAMES
    }
    train_images = read_idx_gz(paths[TRAIN_IMAGES], expected_magic=IMAGES_MAGIC)
    train_labels = read_idx_gz(paths[TRAIN_LABELS], expected_magic=LABELS_MAGIC)
    test_images = read_idx_gz(paths[TEST_IMAGES], expected_magic=IMAGES_MAGIC)
    test_labels = read_idx_gz(paths[TEST_LABELS], expected_magic=LABELS_MAGIC)
    _check_pair(name, "train", train_images, train_labels)
    _check_pair(name, "test", test_images, test_labels)
    if train_images.shape[1:] != test_images.shape[1:]:
        raise NormlabError(
            f"{name}: train images are {train_images.shape[1:]} but test images "
            f"{test_images.shape[1:]}"
        )

    method = normalize or "standard"
    x_train, x_test = normalize_splits(
        train_images[..., None],  # (N, 28, 28) -> NHWC with one channel
        test_images[..., None],
        method,
        pixel_max=255.0,
        standard_mean=mean_std[0],
        standard_std=mean_std[1],
    )
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=train_labels.astype(np.int32),
        x_test=x_test,
        y_test=test_labels.astype(np.int32),
        num_classes=NUM_CLASSES,
        input_shape=tuple(x_train.shape[1:]),
        task="classification",
        normalization=method,
    )


def _check_pair(name: str, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Images must be (N, rows, cols) with N labels, each in 0..9."""
    if images.ndim != 3 or labels.ndim != 1:
        raise NormlabError(
            f"{name} {split}: expected images (N, rows, cols) and labels (N,), got "
            f"{images.shape} and {labels.shape}"
        )
    if images.shape[0] != labels.shape[0]:
        raise NormlabError(f"{name} {split}: {images.shape[0]} images but {labels.shape[0]} labels")
    if labels.size and labels.max() >= NUM_CLASSES:
        raise NormlabError(f"{name} {split}: label {labels.max()} is not in 0..{NUM_CLASSES - 1}")
