"""The checks of a config against the dataset and the models it names, before any work starts.

``config.validate`` checks each setting on its own (types, ranges, choices); what only the data
and the built networks can say is checked here: batch and evaluation sizes against the split
sizes, the tracked layer, unit and kernel entry against the model. ``normlab config`` and
``normlab run`` both call :func:`check_against_data`, so they refuse the same things with the same
one-line message naming the setting.
"""

from __future__ import annotations

import math

import jax
import numpy as np

from normlab.data import Dataset
from normlab.errors import NormlabError
from normlab.experiments.config import Config, probe_option
from normlab.train import NetworkSpec, NetworkState, apply_model, state_at


def check_against_data(config: Config, dataset: Dataset, specs: tuple[NetworkSpec, ...],
                       states: tuple[NetworkState, ...]) -> None:
    """Raise a one-line ``NormlabError`` for the first setting the data or the models cannot honour."""
    check_sizes(config, dataset)
    for spec, state in zip(specs, states):
        check_model_indices(config, spec, state, dataset)


def check_sizes(config: Config, dataset: Dataset) -> None:
    """``batch_size`` within the training split, evaluations over at least one example."""
    n_train, n_test = len(dataset.x_train), len(dataset.x_test)
    if not config.full_batch and config.batch_size > n_train:
        raise NormlabError(f"setting 'batch_size' must be at most the {n_train} training examples of "
                           f"{dataset.name!r} (or set full_batch=true); got {config.batch_size}")
    if config.train_eval_size < 1:
        raise NormlabError(f"setting 'train_eval_size' must be >= 1 (at most the {n_train} training examples "
                           f"are used); got {config.train_eval_size}")
    if n_test < 1:
        raise NormlabError(f"dataset {dataset.name!r} has an empty test split")


def activation_units(spec: NetworkSpec, state: NetworkState, dataset: Dataset) -> tuple[int, ...]:
    """Units (last axis: features, or channels of a conv) of each sown hidden layer; shapes only."""
    x = jax.ShapeDtypeStruct((2, *dataset.x_train.shape[1:]), dataset.x_train.dtype)
    _outputs, _rest, activations = jax.eval_shape(
        lambda params, rest, x: apply_model(spec, params, rest, x, train=False), state.params, state.rest, x
    )
    return tuple(int(a.shape[-1]) for a in activations)


def check_model_indices(config: Config, spec: NetworkSpec, state: NetworkState, dataset: Dataset) -> None:
    """Tracked layer/unit and kernel entry exist in network ``spec`` (no silent wrapping or clamping).

    (A small ``width`` cannot empty a layer: ``models.architectures.scaled`` keeps at least one unit.)
    """
    kernels = [np.shape(state_at(state.params, path)) for path in spec.kernel_paths]
    param_layer, param_index = (probe_option(config, key) for key in ("gradients.tracked_layer",
                                                                       "gradients.tracked_index"))
    _check_index("gradients.tracked_layer", param_layer, len(kernels), "weight layers", spec)
    kernel_size = math.prod(kernels[param_layer])
    if not 0 <= param_index < kernel_size:
        raise NormlabError(f"setting 'gradients.tracked_index' must be in 0..{kernel_size - 1} (the kernel of "
                           f"{spec.weight_layer_names[param_layer]}); got {param_index}")
    if not spec.activation_names:
        return
    units = activation_units(spec, state, dataset)
    layer, unit = (probe_option(config, key) for key in ("activations.tracked_layer", "activations.tracked_unit"))
    _check_index("activations.tracked_layer", layer, len(units), "hidden layers", spec)
    if not 0 <= unit < units[layer]:
        raise NormlabError(f"setting 'activations.tracked_unit' must be in 0..{units[layer] - 1} (units of hidden "
                           f"layer {spec.activation_names[layer]}); got {unit}")


def _check_index(key: str, index: int, count: int, what: str, spec: NetworkSpec) -> None:
    """``index`` addresses one of ``count`` items, Python style (-count..count-1)."""
    if not -count <= index < count:
        raise NormlabError(f"setting {key!r} must be in {-count}..{count - 1} (network {spec.name!r} has "
                           f"{count} {what}); got {index}")


def probe_schedule_note(config: Config, total_steps: int) -> str | None:
    """One line when the probe schedule leaves the figures over training with fewer than two
    points (e.g. ``probe_every`` at least the run's length: only step 0), else None.

    Not an error: a short run may be meant (a smoke test); the run warns and its report says so
    in place of each such figure. (``probe_points`` and ``probe_every`` themselves are range-checked
    by ``config.validate``.)
    """
    from normlab.experiments.build import measured_steps  # build imports this module

    if config.probe_budget > 0 or not [name for name in config.probes if name != "divergence"]:
        return None
    steps = measured_steps(config, total_steps)
    if len(steps) >= 2 or total_steps < 2:
        return None
    where = f"only at step {steps[0]}" if steps else "at no step"
    how = f"probe_points={config.probe_points}" if config.probe_points > 0 else f"probe_every={config.probe_every}"
    return (f"probes measure {where} of the run's {total_steps} steps ({how}), so the figures over training get "
            f"fewer than two points; set probe_points=N for N measurements spread over the run")
