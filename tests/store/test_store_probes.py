"""Probe arrays: buffered steps, one chunk per flush, reading in step order, metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest

from normlab.errors import UnknownNameError
from normlab.store import RunStore, load_run


def histogram(step: int) -> dict[str, np.ndarray]:
    """Arrays a probe might record at ``step``: a (layers, bins) count and a scalar."""
    return {"counts": np.full((2, 3), step, dtype=np.int32), "mean": np.float32(step / 10)}


def test_each_flush_writes_one_chunk_per_probe_and_network(store):
    for step in (0, 10, 20):
        store.append_probe("activations", "bn", step, histogram(step))
        store.append_probe("activations", "baseline", step, histogram(step))
    assert not (store.path / "probes").exists()  # nothing before the flush
    store.flush()
    store.append_probe("activations", "bn", 30, histogram(30))
    store.flush()
    chunks = sorted(p.name for p in (store.path / "probes/activations/bn").iterdir())
    assert chunks == ["000000000-000000020.npz", "000000030-000000030.npz"]
    with np.load(store.path / "probes/activations/bn" / chunks[0]) as npz:  # plain npz
        assert npz["counts"].shape == (3, 2, 3) and npz["step"].tolist() == [0, 10, 20]


def test_probe_reads_back_concatenated_in_step_order(store):
    for step in range(0, 50, 10):
        store.append_probe("activations", "bn", step, histogram(step))
        if step % 20 == 0:
            store.flush()
    store.flush()
    data = load_run(store.path).probe("activations", "bn")
    assert data["step"].tolist() == [0, 10, 20, 30, 40]
    assert data["counts"].shape == (5, 2, 3) and data["counts"].dtype == np.int32
    assert data["counts"][:, 0, 0].tolist() == [0, 10, 20, 30, 40]
    np.testing.assert_allclose(data["mean"], np.float32([0, 1, 2, 3, 4]))


def test_names_networks_and_meta(store):
    meta = {"bn_mode": "train", "layers": ["dense_0", "dense_1"], "bin_edges": np.linspace(0, 1, 4)}
    store.set_probe_meta("activations", meta)
    store.append_probe("activations", "bn", 0, histogram(0))
    store.append_probe("gradients", "baseline", 0, {"norm": np.ones(2)})
    store.flush()
    run = load_run(store.path)
    assert run.probe_names == ["activations", "gradients"]
    assert run.networks("activations") == ["bn"]
    assert run.probe_meta("activations")["bin_edges"] == [0.0, 1 / 3, 2 / 3, 1.0]
    assert run.probe_meta("gradients") == {}
    assert json.loads((store.path / "probes/activations/meta.json").read_text())["bn_mode"] == "train"


def test_unknown_probe_or_network_names_the_valid_ones(store):
    store.append_probe("activations", "bn", 0, histogram(0))
    store.flush()
    run = load_run(store.path)
    with pytest.raises(UnknownNameError, match="^unknown probe 'weights'; valid: activations$"):
        run.probe("weights", "bn")
    with pytest.raises(UnknownNameError, match="valid: bn"):
        run.probe("activations", "baseline")


def test_steps_must_increase_also_across_reopen(store):
    store.append_probe("activations", "bn", 5, histogram(5))
    with pytest.raises(ValueError, match="not after the last recorded step 5"):
        store.append_probe("activations", "bn", 5, histogram(5))
    store.flush()
    with pytest.raises(ValueError, match="truncate_after"):
        RunStore.open(store.path).append_probe("activations", "bn", 3, histogram(3))


def test_arrays_must_keep_their_layout_within_a_flush(store):
    store.append_probe("activations", "bn", 0, histogram(0))
    with pytest.raises(ValueError, match="counts"):
        store.append_probe("activations", "bn", 1, {"counts": np.zeros((4,)), "mean": np.float32(0)})
    with pytest.raises(ValueError, match="changed"):
        store.append_probe("activations", "bn", 1, {"counts": np.zeros((2, 3), np.int32)})


@pytest.mark.parametrize("name,network", [("../escape", "bn"), ("activations", "a/b"), (".hidden", "bn")])
def test_names_that_are_not_plain_directory_names_are_rejected(store, name, network):
    kind, bad = ("probe", name) if name != "activations" else ("network", network)
    with pytest.raises(ValueError) as error:
        store.append_probe(name, network, 0, histogram(0))
    assert str(error.value) == (f"{kind} name {bad!r} must be letters, digits, '_', '.' or '-' "
                                "and must not start with '.' or '-'")


def test_appended_arrays_are_copied(store):
    counts = np.zeros(3)
    store.append_probe("activations", "bn", 0, {"counts": counts})
    counts[:] = 7  # the caller reuses its buffer before the flush
    store.flush()
    assert load_run(store.path).probe("activations", "bn")["counts"].tolist() == [[0, 0, 0]]


@pytest.mark.parametrize("key", ["step", 3, "a/b", "dense0..hist", "dense0.hist!"])
def test_array_names_other_than_dotted_identifiers_or_the_step_column_are_rejected(store, key):
    with pytest.raises(ValueError, match="identifiers joined by dots"):
        store.append_probe("activations", "bn", 0, {key: np.zeros(2)})
    store.append_probe("activations", "bn", 0, {"dense0.hist": np.zeros(2), "layer.0": np.zeros(1)})  # allowed
