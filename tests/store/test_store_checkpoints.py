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
