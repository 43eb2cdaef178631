"""The start views the runner stores at run creation: examples, input histograms, step-0 weights."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np

import normlab.experiments.runner as runner
from normlab.data import load_dataset
from normlab.experiments import apply_overrides, default_config
from normlab.experiments.start import write_start_views
from normlab.store import RunStore, load_run
from normlab.store.layout import START_DATA_FILE, START_META_FILE, START_WEIGHTS_FILE
from normlab.train import state_at


def _written(tmp_path, dataset_name="digits"):
    config = apply_overrides(replace(default_config(), preset="tiny"),
                             [f"dataset={dataset_name}", "model=mlp", "width=0.25", "steps=2", "report=false"])
    dataset = load_dataset(dataset_name)
    specs, states = runner.build_group(config, dataset)
    store = RunStore.create(tmp_path / "run", config={"networks": ["none", "batch"]}, provenance={},
                            metric_columns=["loss"])
    write_start_views(store, config, dataset, specs, states)
    run = load_run(tmp_path / "run")
    return config, dataset, specs, states, run.read_json(START_META_FILE), run.read_arrays(START_DATA_FILE), \
        run.read_arrays(START_WEIGHTS_FILE)


def test_weights_are_fingerprinted_and_histogrammed_per_parameter(tmp_path):
    _config, _dataset, specs, states, meta, _data, weights = _written(tmp_path)
    none, batch = meta["networks"]["none"], meta["networks"]["batch"]
    kernels = [name for name in none if name.endswith(".kernel")]
    assert [name.split(".kernel")[0] for name in kernels] == list(specs[0].weight_layer_names)  # forward order
    for name, path in zip(kernels, specs[0].kernel_paths):
        values = np.asarray(state_at(states[0].params, path), dtype=np.float32)
        assert none[name]["sha256"] == hashlib.sha256(values.tobytes()).hexdigest() == batch[name]["sha256"]
        assert none[name]["size"] == values.size and np.isclose(none[name]["std"], values.std())
        counts, edges = weights[f"none.{name}.counts"], weights[f"{name}.edges"]
        np.testing.assert_array_equal(counts, np.histogram(values, bins=edges)[0])
        assert counts.sum() == values.size
    norm = {name: p for name, p in batch.items() if p["norm"]}
    assert not any(p["norm"] for p in none.values())
    assert len(norm) == 2 * (len(kernels) - 1)  # a scale and a bias per hidden layer
    assert all(p["min"] == p["max"] == (1.0 if name.endswith("scale") else 0.0) for name, p in norm.items())
    assert set(batch) - set(none) == set(norm)


def test_examples_and_input_histograms_come_from_the_training_split(tmp_path):
    config, dataset, _specs, _states, meta, data, _weights = _written(tmp_path)
    raw = load_dataset("digits", normalize="none")
    indices = meta["data"]["example_indices"]
    assert len(indices) == 10 and meta["data"]["num_train"] == 1437 and meta["data"]["num_test"] == 360
    np.testing.assert_array_equal(data["examples.images"], raw.x_train[indices])
    np.testing.assert_array_equal(data["examples.labels"], dataset.y_train[indices])
    for which, inputs in (("raw", raw.x_train), ("normalized", dataset.x_train)):
        counts, edges = data[f"inputs.{which}.counts"], data[f"inputs.{which}.edges"]
        assert edges[0] == inputs.min() and edges[-1] == inputs.max() and counts.sum() == inputs.size
    assert data["inputs.raw.edges"][-1] == 16.0 and meta["data"]["raw_available"]


def test_vector_data_has_no_example_grid_and_no_raw_form(tmp_path):
    config = apply_overrides(replace(default_config(), preset="tiny"),
                             ["dataset=dln_gaussian", "model=dln", "steps=2", "report=false", "networks=none"])
    dataset = load_dataset("dln_gaussian")
    specs, states = runner.build_group(config, dataset)
    store = RunStore.create(tmp_path / "run", config={}, provenance={}, metric_columns=["loss"])
    write_start_views(store, config, dataset, specs, states)
    run = load_run(tmp_path / "run")
    data = run.read_arrays(START_DATA_FILE)
    assert "examples.images" not in data and "inputs.raw.counts" not in data and "inputs.normalized.counts" in data
    assert run.read_json(START_META_FILE)["data"]["raw_available"] is False
