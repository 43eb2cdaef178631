"""Resuming: truncate_after makes an interrupted-and-resumed run store what an uninterrupted one does."""

from __future__ import annotations

import numpy as np
import pandas as pd

from normlab.store import RunStore, load_run

FLUSH_EVERY, CHECKPOINT_EVERY, LAST_STEP = 3, 5, 20


def record_steps(store: RunStore, steps: range) -> None:
    """A stand-in for the training loop: measure every step, flush and checkpoint on a schedule."""
    for step in steps:
        for network in ("baseline", "bn"):
            store.append_metrics([{"step": step, "network": network, "loss": 1.0 / (step + 1)}])
            store.append_probe("activations", network, step, {"hist": np.full(4, step, dtype=np.int64)})
        if step % FLUSH_EVERY == 0:
            store.flush()
        if step % CHECKPOINT_EVERY == 0:
            store.save_checkpoint(step, {"weights": np.full(2, float(step))}, extra={"step": step})
    store.flush()


def resume(path) -> RunStore:
    """What the trainer does on resume: reopen, restore the latest checkpoint, truncate after it."""
    store = RunStore.open(path)
    step, _ = store.restore_checkpoint({"weights": np.zeros(2)})
    store.truncate_after(step)
    record_steps(store, range(step + 1, LAST_STEP + 1))
    return store


def assert_same_store(actual, expected) -> None:
    run, reference = load_run(actual), load_run(expected)
    pd.testing.assert_frame_equal(run.metrics, reference.metrics)
    for network in ("baseline", "bn"):
        got, want = run.probe("activations", network), reference.probe("activations", network)
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
    assert run.checkpoint_steps == reference.checkpoint_steps


def test_resumed_run_matches_uninterrupted_run(make_store):
    uninterrupted = make_store("uninterrupted")
    record_steps(uninterrupted, range(LAST_STEP + 1))

    interrupted = make_store("interrupted")
    record_steps(interrupted, range(0, 13))  # flushed up to 12, last checkpoint at 10
    interrupted.append_metrics([{"step": 13, "network": "bn", "loss": 0.5}])  # lost: never flushed
    resume(interrupted.path)

    assert_same_store(interrupted.path, uninterrupted.path)


def test_truncate_rewrites_straddling_chunks_and_drops_later_ones(store):
    for step in range(10):
        store.append_probe("activations", "bn", step, {"hist": np.arange(3) + step})
        store.append_metrics([{"step": step, "network": "bn", "loss": float(step)}])
        if step in (3, 7):
            store.flush()
    store.flush()  # chunks 0-3, 4-7, 8-9
    store.save_checkpoint(4, {"w": np.zeros(1)})
    store.save_checkpoint(8, {"w": np.zeros(1)})
    store.append_metrics([{"step": 9, "network": "baseline"}])  # buffered after the step too

    store.truncate_after(5)
    store.truncate_after(5)  # a second truncation (after a kill during the first) is harmless
    chunks = sorted(p.name for p in (store.path / "probes/activations/bn").iterdir())
    assert chunks == ["000000000-000000003.npz", "000000004-000000005.npz"]
    store.flush()
    run = load_run(store.path)
    assert run.probe("activations", "bn")["step"].tolist() == list(range(6))
    assert run.metrics["step"].tolist() == list(range(6))
    assert run.checkpoint_steps == [4]


def test_truncate_after_minus_one_empties_the_run(store):
    store.append_metrics([{"step": 0, "network": "bn", "loss": 1.0}])
    store.append_probe("activations", "bn", 0, {"hist": np.zeros(2)})
    store.flush()
    store.truncate_after(-1)
    run = load_run(store.path)
    assert run.metrics.empty and list(run.metrics.columns) == ["step", "network", "kind", "loss", "accuracy"]
    assert run.probe_names == ["activations"] and run.networks("activations") == []
    store.append_probe("activations", "bn", 0, {"hist": np.zeros(2)})  # step 0 may be recorded again


def test_duplicate_steps_from_an_interrupted_truncation_are_read_once(store):
    for step in range(4):
        store.append_probe("activations", "bn", step, {"hist": np.array([step])})
    store.flush()  # chunk 0-3
    directory = store.path / "probes/activations/bn"
    # The state a kill leaves between writing the shortened chunk and deleting the old one.
    old = next(directory.iterdir())
    (directory / "000000000-000000001.npz").write_bytes(old.read_bytes())
    assert load_run(store.path).probe("activations", "bn")["step"].tolist() == [0, 1, 2, 3]
