"""The ``Dataset`` record every loader returns.

Shapes (N = number of examples in a split):

- classification images: ``x`` float32 (N, H, W, C) (NHWC, already normalized), ``y`` int32 (N,)
  with values in ``[0, num_classes)``;
- regression vectors: ``x`` float32 (N, D), ``y`` float32 (N, D_out), ``num_classes == 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from normlab.errors import NormlabError

TASKS = ("classification", "regression")


# eq=False: dataclass equality would compare numpy arrays elementwise and fail on truthiness.
@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test pair of arrays plus what a model needs to know about them.

    Attributes:
        name: registry name, e.g. ``"mnist"``.
        x_train, x_test: float32 inputs, (N, H, W, C) for images or (N, D) for vectors.
        y_train, y_test: int32 class labels (N,), or float32 regression targets (N, D_out).
        num_classes: number of classes; 0 for regression.
        input_shape: shape of one input, ``x_train.shape[1:]``: (H, W, C) or (D,).
        task: ``"classification"`` or ``"regression"``.
        normalization: name of the input normalization that was applied (e.g. ``"standard"``).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    input_shape: tuple[int, ...]
    task: str
    normalization: str

    def __post_init__(self) -> None:
        # A loader bug should fail here, at construction, not deep inside a jitted train step.
        problems = _consistency_problems(self)
        if problems:
            raise NormlabError(f"inconsistent dataset {self.name!r}: {'; '.join(problems)}")

    @property
    def num_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.x_test.shape[0])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, task={self.task!r}, train={self.x_train.shape}, "
            f"test={self.x_test.shape}, num_classes={self.num_classes}, "
            f"normalization={self.normalization!r})"
        )


def _consistency_problems(dataset: Dataset) -> list[str]:
    """List every way the arrays disagree with the declared shapes, dtypes and task."""
    problems = []
    if dataset.task not in TASKS:
        problems.append(f"task {dataset.task!r} is not one of {TASKS}")
    label_dtype = np.int32 if dataset.task == "classification" else np.float32
    for split in ("train", "test"):
        x, y = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
        if x.dtype != np.float32:
            problems.append(f"x_{split} is {x.dtype}, not float32")
        if tuple(x.shape[1:]) != tuple(dataset.input_shape):
            problems.append(f"x_{split} examples are {x.shape[1:]}, not {dataset.input_shape}")
        if y.dtype != label_dtype:
            problems.append(f"y_{split} is {y.dtype}, not {np.dtype(label_dtype)}")
        if y.shape[0] != x.shape[0]:
            problems.append(f"{y.shape[0]} labels for {x.shape[0]} inputs in {split}")
    if (dataset.task == "regression") != (dataset.num_classes == 0):
        problems.append("num_classes must be 0 exactly when the task is regression")
    return problems
