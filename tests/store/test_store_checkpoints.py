"""Checkpoints: round trip of nnx/optax trees, keep-N, extra dicts, mismatched targets."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from normlab.errors import NormlabError
from normlab.store import RunStore, load_run


class TinyNet(nnx.Module):
    """Weights, BN running statistics and an rng stream: every kind of state a run saves."""

    def __init__(self, seed: int):
        rngs = nnx.Rngs(seed, dropout=seed + 1)
        self.dense = nnx.Linear(3, 2, rngs=rngs)
        self.norm = nnx.BatchNorm(2, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)


def training_state(seed: int) -> dict:
    """A checkpointable tree: model state, optimizer state, a Python int."""
    model_state = nnx.state(TinyNet(seed))
    optimizer_state = optax.adam(1e-3).init(nnx.state(TinyNet(seed), nnx.Param))
    return {"model": model_state, "optimizer": optimizer_state, "epoch": seed}


def assert_trees_equal(actual, expected):
    assert jax.tree_util.tree_structure(actual) == jax.tree_util.tree_structure(expected)
    for got, want in zip(jax.tree_util.tree_leaves(actual), jax.tree_util.tree_leaves(expected), strict=True):
        if hasattr(want, "dtype") and jax.dtypes.issubdtype(want.dtype, jax.dtypes.prng_key):
            got, want = jax.random.key_data(got), jax.random.key_data(want)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_round_trip_restores_structure_values_and_extra(store):
    saved = training_state(seed=1)
    store.save_checkpoint(100, saved, extra={"batches_seen": 100, "diverged": {"bn": False}})
    step, restored = RunStore.open(store.path).restore_checkpoint(training_state(seed=7))
    assert step == 100
    assert_trees_equal(restored, saved)
    assert restored["epoch"] == 1 and isinstance(restored["epoch"], int)
    assert store.checkpoint_extra() == {"batches_seen": 100, "diverged": {"bn": False}}
    assert load_run(store.path).checkpoint_extra(100)["batches_seen"] == 100


def test_restored_state_updates_a_model(store):
    source, target = TinyNet(1), TinyNet(2)
    store.save_checkpoint(1, nnx.state(source))
    _, state = store.restore_checkpoint(nnx.state(target))
    nnx.update(target, state)
    np.testing.assert_array_equal(target.dense.kernel[...], source.dense.kernel[...])


def test_only_the_newest_checkpoints_are_kept(store):
    tree = {"w": jnp.arange(3.0)}
    for step in (10, 20, 30, 40):
        store.save_checkpoint(step, {"w": tree["w"] + step}, keep=2)
    assert store.checkpoint_steps() == [30, 40]
    assert store.latest_checkpoint_step() == 40
    assert load_run(store.path).checkpoint_steps == [30, 40]
    assert sorted(p.name for p in (store.path / "checkpoints").iterdir()) == [
        "000000030.json",
        "000000030.msgpack",
        "000000040.json",
        "000000040.msgpack",
    ]
    step, restored = store.restore_checkpoint(tree, step=30)
    assert step == 30 and restored["w"].tolist() == [30.0, 31.0, 32.0]


def test_checkpoint_flushes_buffered_measurements_first(store):
    store.append_metrics([{"step": 5, "network": "bn", "loss": 1.0}])
    store.save_checkpoint(5, {"w": np.zeros(1)})
    assert load_run(store.path).metrics["step"].tolist() == [5]


def test_missing_checkpoint_and_mismatched_target_are_one_line_errors(store):
    assert store.latest_checkpoint_step() is None
    with pytest.raises(NormlabError, match="has no checkpoint; stored checkpoints: none"):
        store.restore_checkpoint({"w": np.zeros(2)})
    store.save_checkpoint(1, {"w": np.zeros(2, np.float32)})
    with pytest.raises(NormlabError, match="shape"):
        store.restore_checkpoint({"w": np.zeros(3, np.float32)})
    with pytest.raises(NormlabError, match="dtype"):
        store.restore_checkpoint({"w": np.zeros(2, np.int32)})
    with pytest.raises(NormlabError, match=r"no array \['v'\]"):
        store.restore_checkpoint({"v": np.zeros(2, np.float32)})
    with pytest.raises(NormlabError, match="no checkpoint 7"):
        store.restore_checkpoint({"w": np.zeros(2, np.float32)}, step=7)


def test_newest_valid_checkpoint_skips_a_truncated_one_and_one_whose_extra_changed(store):
    for step in (1, 2, 3):
        store.save_checkpoint(step, {"w": np.full(2, step, np.float32)}, extra={"at": step}, keep=3)
    directory = store.path / "checkpoints"
    newest = directory / "000000003.msgpack"
    newest.write_bytes(newest.read_bytes()[:-5])  # a write cut short
    (directory / "000000002.json").write_text('{"at": 20}')  # the extra no longer matches its checksum
    step, damaged = RunStore.open(store.path).newest_valid_checkpoint()
    assert step == 1
    assert damaged == [(newest, "checksum mismatch (truncated or changed)"),
                       (directory / "000000002.msgpack", "its 000000002.json is missing or changed")]
    (directory / "000000001.json").unlink()
    assert RunStore.open(store.path).newest_valid_checkpoint() == (None, damaged + [
        (directory / "000000001.msgpack", "its 000000001.json is missing or changed")])


def test_a_random_key_comes_back_with_its_own_implementation(store):
    for impl in ("threefry2x32", "rbg"):
        key = jax.random.key(3, impl=impl)
        store.save_checkpoint(1, {"key": key})
        _, restored = store.restore_checkpoint({"key": jax.random.key(0, impl=impl)})
        assert jax.random.key_impl(restored["key"]) == jax.random.key_impl(key)
        np.testing.assert_array_equal(jax.random.key_data(restored["key"]), jax.random.key_data(key))
