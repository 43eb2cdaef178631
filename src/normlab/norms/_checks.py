"""Argument checks shared by the norm classes: each failure is a one-line ``NormlabError``.

Shapes and modes are static under ``jax.jit``, so these checks run at trace time and cost nothing
per step.
"""

from __future__ import annotations

import numpy as np

from normlab.errors import NormlabError


def check_positive_int(option: str, value) -> int:
    """An option that must be a positive int."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise NormlabError(f"{option} must be a positive int, got {value!r}")
    return int(value)


def check_num_features(num_features) -> int:
    """``num_features`` must be a positive int (the size of the last axis of ``x``)."""
    return check_positive_int("num_features", num_features)


def check_number(option: str, value, *, low: float, high: float | None = None,
                 low_inclusive: bool = True) -> float:
    """A real option in ``[low, high]`` (or ``(low, high]`` when ``low_inclusive`` is False)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = (value >= low if low_inclusive else value > low) and (high is None or value <= high)
    if not ok:
        lo = "[" if low_inclusive else "("
        hi = f"{high}]" if high is not None else "inf)"
        raise NormlabError(f"option {option} must be a number in {lo}{low}, {hi}, got {value!r}")
    return value


def check_choice(option: str, value, choices: tuple[str, ...]) -> str:
    """A string option that must be one of ``choices``."""
    if value not in choices:
        raise NormlabError(f"option {option} must be one of {', '.join(choices)}; got {value!r}")
    return value


def check_call(module, x, train) -> None:
    """The call contract of every norm: explicit bool mode, features on the last axis."""
    if not isinstance(train, (bool, np.bool_)):
        raise NormlabError(
            f"{type(module).__name__}: train must be a Python bool (True: batch statistics, "
            f"False: running averages), got {train!r}; under jax.jit pass it as a static argument"
        )
    if x.ndim < 2 or x.shape[-1] != module.num_features:
        raise NormlabError(
            f"{type(module).__name__}: expected input (N, {module.num_features}) or "
            f"(N, H, W, {module.num_features}) with features last, got shape {tuple(x.shape)}"
        )
