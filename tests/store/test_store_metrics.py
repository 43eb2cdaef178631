"""metrics.csv: buffering, flushing, pandas in one call, damaged final lines."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from normlab.errors import NormlabError
from normlab.store import RunStore, load_run


def test_header_is_written_at_create_and_reads_as_empty_frame(store):
    frame = pd.read_csv(store.path / "metrics.csv")
    assert list(frame.columns) == ["step", "network", "kind", "loss", "accuracy"]
    loaded = load_run(store.path).metrics
    assert loaded.empty and list(loaded.columns) == ["step", "network", "kind", "loss", "accuracy"]


def test_rows_are_on_disk_only_after_flush(store):
    store.append_metrics([{"step": 1, "network": "baseline", "loss": 2.5}])
    assert load_run(store.path).metrics.empty
    store.flush()
    assert len(load_run(store.path).metrics) == 1


def test_values_round_trip_through_pandas_in_one_call(store):
    loss = 0.1 + 0.2  # a float whose shortest repr is long: it must come back bit-exact
    store.append_metrics(
        [
            {"step": 0, "network": "baseline", "loss": loss, "accuracy": np.float32(0.25)},
            {"step": 0, "network": "bn", "loss": np.array(1.5), "accuracy": None},
            {"step": 1, "network": "bn", "loss": float("inf"), "accuracy": True},
        ]
    )
    store.flush()
    frame = pd.read_csv(store.path / "metrics.csv")
    assert frame["step"].tolist() == [0, 0, 1]
    assert frame["network"].tolist() == ["baseline", "bn", "bn"]
    assert frame["loss"].iloc[0] == loss
    assert frame["accuracy"].iloc[0] == float(np.float32(0.25))
    assert math.isnan(frame["accuracy"].iloc[1])  # missing value -> NaN
    assert frame["loss"].iloc[2] == math.inf and frame["accuracy"].iloc[2] == 1


def test_flushes_append(store):
    for step in range(3):
        store.append_metrics([{"step": step, "network": "bn", "loss": float(step)}])
        store.flush()
    assert load_run(store.path).metrics["loss"].tolist() == [0.0, 1.0, 2.0]


def test_unknown_column_is_rejected_at_append(store):
    with pytest.raises(NormlabError, match="unknown metric column.*lossy.*loss, accuracy"):
        store.append_metrics([{"step": 0, "network": "bn", "lossy": 1.0}])


@pytest.mark.parametrize(
    "row",
    [
        {"network": "bn", "loss": 1.0},  # no step
        {"step": 0, "loss": 1.0},  # no network
        {"step": -1, "network": "bn"},
        {"step": 1.5, "network": "bn"},
        {"step": 0, "network": "b,n"},
        {"step": 0, "network": "bn", "loss": "high"},
        {"step": 0, "network": "bn", "loss": np.zeros(2)},
    ],
)
def test_malformed_rows_are_rejected(store, row):
    with pytest.raises(ValueError):
        store.append_metrics([row])


def test_truncated_final_line_is_ignored_and_repaired_on_open(store):
    store.append_metrics([{"step": 0, "network": "bn", "loss": 1.0}])
    store.flush()
    with open(store.path / "metrics.csv", "ab") as file:
        file.write(b"1,bn,0.12")  # a write cut short by a kill: no newline
    assert load_run(store.path).metrics["step"].tolist() == [0]

    reopened = RunStore.open(store.path)
    reopened.append_metrics([{"step": 1, "network": "bn", "loss": 2.0}])
    reopened.flush()
    frame = pd.read_csv(store.path / "metrics.csv")
    assert frame["step"].tolist() == [0, 1] and frame["loss"].tolist() == [1.0, 2.0]


def test_open_reads_the_columns_from_the_header(store):
    assert RunStore.open(store.path).metric_columns == ["loss", "accuracy"]


@pytest.mark.parametrize("columns", [["step"], ["loss", "loss"], [""]])
def test_bad_metric_columns_are_rejected_before_anything_is_written(make_store, tmp_path, columns):
    with pytest.raises(ValueError):
        make_store("bad", metric_columns=columns)
    assert not (tmp_path / "bad").exists()


def _evaluated_run(make_store):
    store = make_store(metric_columns=["loss", "test_loss", "test_accuracy"])
    store.append_metrics([
        {"step": 0, "network": "a", "kind": "eval", "test_loss": 2.0, "test_accuracy": 0.1},
        {"step": 0, "network": "a", "kind": "train", "loss": 2.1},
        {"step": 1, "network": "a", "kind": "train", "loss": float("nan")},
        {"step": 2, "network": "a", "kind": "eval", "test_loss": 1.0, "test_accuracy": 0.7},
        {"step": 4, "network": "a", "kind": "eval", "test_loss": 1.5, "test_accuracy": 0.5},
        {"step": 4, "network": "b", "kind": "eval", "test_loss": 3.0},
    ])
    store.flush()
    return store


def test_kind_tells_training_from_evaluation_rows_and_final_metrics_read_them(make_store):
    run = load_run(_evaluated_run(make_store).path)
    assert run.training()["step"].tolist() == [0, 1]  # a NaN loss is still a training row
    assert run.evaluations("a")["step"].tolist() == [0, 2, 4]
    final = run.final_metrics()
    assert final["a"] == {"step": 4, "test_loss": 1.5, "test_accuracy": 0.5, "best_test_accuracy": 0.7}
    assert (
        final["b"]["step"] == 4 and math.isnan(final["b"]["test_accuracy"]) and "best_test_accuracy" not in final["b"]
    )
    with pytest.raises(ValueError, match="kind"):
        make_store("other").append_metrics([{"step": 0, "network": "a", "kind": "test"}])


def test_files_without_a_kind_column_read_and_resume_as_before(make_store):
    """Runs written before the column existed: kind inferred (eval where test_loss is present)."""
    store = _evaluated_run(make_store)
    path = store.path / "metrics.csv"
    frame = pd.read_csv(path).drop(columns="kind")
    frame.to_csv(path, index=False)  # the older format: step,network,<metrics>
    run = load_run(store.path)
    assert run.metrics["kind"].tolist() == ["eval", "train", "train", "eval", "eval", "eval"]
    assert run.final_metrics()["a"]["best_test_accuracy"] == 0.7
    reopened = RunStore.open(store.path)
    reopened.append_metrics([{"step": 5, "network": "a", "kind": "train", "loss": 0.5}])
    reopened.flush()
    assert pd.read_csv(path).columns.tolist() == ["step", "network", "loss", "test_loss", "test_accuracy"]
    assert load_run(store.path).training("a")["step"].tolist() == [0, 1, 5]


def test_jax_scalars_are_stored_as_numbers_and_jax_arrays_refused(store):
    import jax.numpy as jnp

    store.append_metrics([{"step": 0, "network": "bn", "loss": jnp.float32(0.5), "accuracy": jnp.asarray(1)}])
    store.flush()
    row = load_run(store.path).metrics.iloc[0]
    assert row["loss"] == 0.5 and row["accuracy"] == 1
    with pytest.raises(ValueError, match=r"^metric 'loss' must be a scalar, got an array of shape \(2,\)$"):
        store.append_metrics([{"step": 1, "network": "bn", "loss": jnp.zeros(2)}])
