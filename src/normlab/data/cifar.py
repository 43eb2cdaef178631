"""CIFAR-10: 32x32 colour images, 50,000 training and 10,000 test, 10 classes.

Source: the "python version" archive ``cifar-10-python.tar.gz``. Inside ``cifar-10-batches-py/``,
``data_batch_1`` .. ``data_batch_5`` (training) and ``test_batch`` are Python 2 pickles of dicts
with byte-string keys: ``b"data"`` a uint8 (10000, 3072) array, each row one image stored channel
by channel (1024 red, 1024 green, 1024 blue values, each 32x32 row-major), and ``b"labels"`` a list
of 10000 ints in 0..9.

The batches are read straight from the cached ``.tar.gz`` on every load, never extracted: the
archive is the one file whose checksum pooch verifies, so nothing unverified can sit in the cache.
(Decompressing the 163 MB archive takes a few seconds.) The pickles are read with an unpickler
that only admits the few numpy globals an array needs, so even a tampered archive cannot run code.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from normlab.data.dataset import Dataset
from normlab.data.download import fetch_file
from normlab.data.normalization import normalize_splits
from normlab.errors import NormlabError, UnknownNameError

ARCHIVE = "cifar-10-python.tar.gz"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
# The MD5 published on the CIFAR page.
CHECKSUM = "md5:c58f30108f718f92721af3b95e74349a"
MEMBER_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{index}" for index in range(1, 6))
TEST_BATCHES = ("test_batch",)
IMAGE_SIZE = 32
NUM_CLASSES = 10
# Conventional per-channel constants (R, G, B) on the [0, 1] scale.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

# What a pickled numpy array may reference. Old pickles (the real files) name numpy.core, pickles
# written by numpy 2 name numpy._core; _codecs.encode carries bytes in protocol-2 pickles.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


def load_cifar10(
    *,
    data_dir: str | os.PathLike | None = None,
    normalize: str | None = None,
    checksums: Mapping[str, str] | None = None,
) -> Dataset:
    """CIFAR-10; ``normalize`` defaults to ``"standard"`` (the conventional per-channel constants).

    Shapes: x_train (50000, 32, 32, 3), x_test (10000, 32, 32, 3), float32 NHWC (R, G, B);
    labels int32 0..9. ``checksums={"cifar-10-python.tar.gz": "sha256:..."}`` overrides the MD5.
    """
    checksums = dict(checksums or {})
    for file_name in checksums:
        if file_name != ARCHIVE:
            raise UnknownNameError("file", file_name, (ARCHIVE,))
    archive = fetch_file(
        "cifar10",
        ARCHIVE,
        canonical_url=URL,
        checksum=checksums.get(ARCHIVE, CHECKSUM),
        data_dir=data_dir,
    )
    (train_images, train_labels), (test_images, test_labels) = read_batches(
        archive, (TRAIN_BATCHES, TEST_BATCHES)
    )
    method = normalize or "standard"
    x_train, x_test = normalize_splits(
        train_images,
        test_images,
        method,
        pixel_max=255.0,
        standard_mean=CIFAR10_MEAN,
        standard_std=CIFAR10_STD,
    )
    return Dataset(
        name="cifar10",
        x_train=x_train,
        y_train=train_labels,
        x_test=x_test,
        y_test=test_labels,
        num_classes=NUM_CLASSES,
        input_shape=tuple(x_train.shape[1:]),
        task="classification",
        normalization=method,
    )


def read_batches(
    archive: Path, groups: tuple[tuple[str, ...], ...]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Read groups of batches from the archive in one pass over it.

    Returns, per group, the concatenated images uint8 (N, 32, 32, 3) and labels int32 (N,).
    """
    wanted = {name for group in groups for name in group}
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                folder, _, base = name.rpartition("/")
                if folder == MEMBER_FOLDER and base in wanted and member.isfile():
                    extracted = tar.extractfile(member)
                    assert extracted is not None  # tarfile gives None only for members that are not files
                    batches[base] = _decode_batch(extracted.read(), f"{archive}:{name}")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise NormlabError(f"cannot read CIFAR-10 archive {archive}: {error}") from None
    missing = sorted(wanted - batches.keys())
    if missing:
        raise NormlabError(
            f"CIFAR-10 archive {archive} lacks {', '.join(f'{MEMBER_FOLDER}/{m}' for m in missing)}"
        )
    return [
        (
            np.concatenate([batches[name][0] for name in group]),
            np.concatenate([batches[name][1] for name in group]),
        )
        for group in groups
    ]


def _decode_batch(payload: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> images uint8 (N, 32, 32, 3) and labels int32 (N,)."""
    try:
        # encoding="bytes": the batches were pickled by Python 2, whose str keys become bytes.
        batch = _NumpyOnlyUnpickler(io.BytesIO(payload), encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as error:
        raise NormlabError(f"malformed CIFAR-10 batch {source}: {error!r}") from None
    pixels = 3 * IMAGE_SIZE * IMAGE_SIZE
    if data.ndim != 2 or data.shape[1] != pixels or labels.shape != (data.shape[0],):
        raise NormlabError(
            f"malformed CIFAR-10 batch {source}: data {data.shape} and labels {labels.shape}, "
            f"expected (N, {pixels}) and (N,)"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise NormlabError(f"malformed CIFAR-10 batch {source}: labels outside 0..9")
    # Rows are channel-major (C, H, W); the models want channels last.
    images = data.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int32)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global except what rebuilding a numpy array needs."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)
