"""Datasets, normalization, seeded batching and augmentation.

Downloaded datasets (mnist, fashion_mnist, cifar10) are cached at ``<cache>/<dataset>/<file>``
with ``<cache>`` = ``$NORMLAB_DATA_DIR`` or the per-user cache; ``$NORMLAB_DATA_MIRROR`` replaces
the canonical hosts with ``<mirror>/<dataset>/<file>``. See ``normlab.data.download``.
"""

from normlab.data.augment import augment_cifar
from normlab.data.batching import BatchIterator
from normlab.data.dataset import Dataset
from normlab.data.download import DATA_DIR_VARIABLE, MIRROR_VARIABLE, cache_root
from normlab.data.normalization import NORMALIZATIONS
from normlab.data.registry import DATASETS, dataset_names, dataset_options, dataset_shape, load_dataset

__all__ = [
    "DATASETS",
    "DATA_DIR_VARIABLE",
    "MIRROR_VARIABLE",
    "NORMALIZATIONS",
    "BatchIterator",
    "Dataset",
    "augment_cifar",
    "cache_root",
    "dataset_names",
    "dataset_options",
    "dataset_shape",
    "load_dataset",
]
