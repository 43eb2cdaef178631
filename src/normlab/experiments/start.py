"""The start of a run as data: a few training examples, the input distributions, the step-0 weights.

Written once, at run creation, into the run's ``start/`` group through the store, so the report
(which never runs a model) can show what the seed notebook's Part 1 shows before training: the
examples with their labels, the inputs before and after normalization, and the initial weight
histograms of every network, with a fingerprint per parameter that proves the pairing (shared
parameters are bit-identical across the networks; a norm's own scale and bias exist only in the
networks that have the norm).

Files (all small: histograms, not the weights themselves):

- ``start/start.json``: dataset sizes and shapes, the normalization, which examples were drawn,
  and per network per parameter: shape, size, SHA-256 of the float32 bytes, min/max/mean/std,
  whether it is a norm's own parameter, and the weight layer it belongs to.
- ``start/data.npz``: ``examples.images`` (k, H, W, C) raw pixels (normalized ones when the
  dataset has no raw form), ``examples.labels`` (k,), and for ``raw`` and ``normalized``:
  ``inputs.<which>.counts`` (bins,) and ``inputs.<which>.edges`` (bins + 1,).
- ``start/weights.npz``: ``<network>.<parameter>.counts`` (bins,) over ``<parameter>.edges``
  (bins + 1,), the edges shared by every network that has the parameter.
"""

from __future__ import annotations

import hashlib

import jax
import numpy as np

from normlab.data import Dataset, load_dataset
from normlab.probes.ics import common_prefix_length
from normlab.store.layout import START_DATA_FILE, START_META_FILE, START_WEIGHTS_FILE

EXAMPLES = 10
INPUT_BINS = 50
WEIGHT_BINS = 60
# Input histograms use at most this many training examples: enough for the shape, cheap for CIFAR-10.
HISTOGRAM_EXAMPLES = 10_000


def histogram(values: np.ndarray, bins: int, low: float | None = None, high: float | None = None):
    """``(counts int64 (bins,), edges float64 (bins + 1,))`` over [low, high] (default: min, max);
    a constant array gets a unit-wide range around its value so the edges stay increasing."""
    values = np.asarray(values, dtype=np.float64).ravel()
    low = float(values.min()) if low is None else low
    high = float(values.max()) if high is None else high
    if not high > low:
        low, high = low - 0.5, high + 0.5
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    return counts.astype(np.int64), edges


def parameter_names(spec, params) -> dict[str, tuple[tuple, str, bool]]:
    """``{name: (path, layer, is_norm)}`` for every trainable array of a network.

    A parameter under a weight layer's module (the prefix of its kernel path) is that layer's
    ``kernel`` or ``bias``; anything else belongs to a norm and is named after the weight layer
    whose path it shares most of: ``dense0.norm_scale``.
    """
    prefixes = [tuple(path[:-1]) for path in spec.kernel_paths]
    names = {}
    for key_path, _leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        path = tuple(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))) for k in key_path)
        path = tuple(p for p in path if p != "value")
        owner = max(range(len(prefixes)), key=lambda i: (common_prefix_length(prefixes[i], path), -i))
        layer = spec.weight_layer_names[owner]
        is_norm = path[: len(prefixes[owner])] != prefixes[owner]
        names[f"{layer}.{'norm_' if is_norm else ''}{path[-1]}"] = (path, layer, is_norm, owner)
    # In forward order (the state's own order is alphabetical: "head" before "hidden").
    ordered = sorted(names.items(), key=lambda item: item[1][3])
    return {name: value[:3] for name, value in ordered}


def _leaf(params, path: tuple) -> np.ndarray:
    node = params
    for key in path:
        node = node[key]
    return np.asarray(node.get_value() if hasattr(node, "get_value") else node, dtype=np.float32)


def weight_views(specs, states) -> tuple[dict, dict]:
    """(meta per network, histogram arrays) of every network's step-0 parameters."""
    values: dict[str, dict[str, np.ndarray]] = {}
    meta: dict[str, dict] = {}
    for spec, state in zip(specs, states):
        names = parameter_names(spec, state.params)
        values[spec.name] = {name: _leaf(state.params, path) for name, (path, _l, _n) in names.items()}
        meta[spec.name] = {
            name: {
                "layer": layer, "norm": is_norm, "shape": list(values[spec.name][name].shape),
                "size": int(values[spec.name][name].size),
                "sha256": hashlib.sha256(np.ascontiguousarray(values[spec.name][name]).tobytes()).hexdigest(),
                **_moments(values[spec.name][name]),
            }
            for name, (_path, layer, is_norm) in names.items()
        }
    arrays: dict[str, np.ndarray] = {}
    every_name = list(dict.fromkeys(name for per_network in values.values() for name in per_network))
    for name in every_name:
        present = [v[name] for v in values.values() if name in v]
        low = min(float(v.min()) for v in present)
        high = max(float(v.max()) for v in present)
        for network, per_network in values.items():
            if name in per_network:
                counts, edges = histogram(per_network[name], WEIGHT_BINS, low, high)
                arrays[f"{network}.{name}.counts"] = counts
        arrays[f"{name}.edges"] = edges
    return meta, arrays


def _moments(values: np.ndarray) -> dict:
    return {"min": float(values.min()), "max": float(values.max()), "mean": float(values.mean()),
            "std": float(values.std())}


def data_views(config, dataset: Dataset) -> tuple[dict, dict]:
    """(meta, arrays) of the example grid and the raw/normalized input histograms."""
    raw = _raw_inputs(config, dataset)
    n = dataset.num_train
    indices = np.random.default_rng(config.data_seed).choice(n, size=min(EXAMPLES, n), replace=False)
    is_image = len(dataset.input_shape) == 3
    arrays: dict[str, np.ndarray] = {}
    if is_image:
        source = raw if raw is not None else dataset.x_train
        arrays["examples.images"] = np.asarray(source[indices], dtype=np.float32)
        arrays["examples.labels"] = np.asarray(dataset.y_train[indices])
    part = slice(0, min(n, HISTOGRAM_EXAMPLES))
    for which, inputs in (("raw", raw), ("normalized", dataset.x_train)):
        if inputs is not None:
            counts, edges = histogram(inputs[part], INPUT_BINS)
            arrays[f"inputs.{which}.counts"], arrays[f"inputs.{which}.edges"] = counts, edges
    meta = {
        "dataset": dataset.name, "task": dataset.task, "num_train": n, "num_test": dataset.num_test,
        "input_shape": list(dataset.input_shape), "num_classes": dataset.num_classes,
        "normalization": dataset.normalization, "raw_available": raw is not None,
        "example_indices": [int(i) for i in indices] if is_image else [],
        "histogram_examples": min(n, HISTOGRAM_EXAMPLES),
    }
    return meta, arrays


def _raw_inputs(config, dataset: Dataset) -> np.ndarray | None:
    """The training inputs without normalization (same split), or None if the data has no other form."""
    if dataset.normalization == "none":
        return None
    raw = load_dataset(config.dataset, normalize="none")
    return raw.x_train if raw.x_train.shape == dataset.x_train.shape else None


def write_start_views(store, config, dataset: Dataset, specs, states) -> None:
    """Write ``start/`` (see the module docstring) for a new run."""
    data_meta, data_arrays = data_views(config, dataset)
    weights_meta, weight_arrays = weight_views(specs, states)
    store.write_arrays(START_DATA_FILE, data_arrays)
    store.write_arrays(START_WEIGHTS_FILE, weight_arrays)
    store.write_json(START_META_FILE, {"format": 1, "data": data_meta, "networks": weights_meta})
