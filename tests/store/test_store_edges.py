"""The store's edge cases: cuts that fall exactly on a step, what a buffer keeps, names and types
that reading must not change, and the shape of run.json and provenance."""

from __future__ import annotations

import numpy as np
import pytest

from normlab.errors import NormlabError
from normlab.store import RunStore, check_output_root, collect_provenance, load_run, new_run_dir
from normlab.store.files import read_json, write_json_atomically
from normlab.store.provenance import package_version


def test_a_cut_exactly_at_a_chunks_first_step_keeps_that_step(store):
    for step in range(8):
        store.append_probe("activations", "bn", step, {"hist": np.array([step])})
        if step in (4, 7):
            store.flush()  # chunks 0-4 and 5-7
    store.truncate_after(5)
    assert load_run(store.path).probe("activations", "bn")["step"].tolist() == list(range(6))


def test_truncate_keeps_buffered_rows_and_probe_steps_up_to_and_at_the_cut(store):
    for step in range(6):  # nothing flushed yet: all of it is in the buffers
        store.append_metrics([{"step": step, "network": "bn", "loss": float(step)}])
        store.append_probe("activations", "bn", step, {"hist": np.array([step])})
    store.truncate_after(3)
    store.flush()
    run = load_run(store.path)
    assert run.metrics["step"].tolist() == [0, 1, 2, 3]
    assert run.probe("activations", "bn")["step"].tolist() == [0, 1, 2, 3]


def test_truncate_keeps_later_checkpoints_only_when_asked(store):
    for step in (2, 4, 6):
        store.save_checkpoint(step, {"w": np.full(1, float(step))}, keep=3)
    assert store.checkpoint_steps() == [2, 4, 6] and store.latest_checkpoint_step() == 6
    store.truncate_after(3, keep_checkpoints=True)
    assert store.checkpoint_steps() == [2, 4, 6]
    store.truncate_after(3)
    assert store.checkpoint_steps() == [2] and store.latest_checkpoint_step() == 2


def test_probe_arrays_must_keep_shape_and_dtype_separately(store):
    store.append_probe("activations", "bn", 0, {"x": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="changed"):
        store.append_probe("activations", "bn", 1, {"x": np.zeros(4, np.float32)})  # shape only
    with pytest.raises(ValueError, match="changed"):
        store.append_probe("activations", "bn", 1, {"x": np.zeros(3, np.float64)})  # dtype only


def test_network_names_and_metric_types_survive_reading(make_store):
    store = make_store(metric_columns=["loss", "correct"])
    store.append_metrics([{"step": 0, "network": "007", "loss": 1.0, "correct": 3},
                          {"step": 1, "network": "nan", "loss": 2.0, "correct": 4}])
    store.flush()
    metrics = load_run(store.path).metrics
    assert metrics["network"].tolist() == ["007", "nan"]  # names, never parsed as numbers
    assert metrics["step"].dtype == np.int64 and metrics["loss"].dtype == np.float64


def test_an_empty_metrics_table_has_the_key_and_metric_columns(store):
    metrics = load_run(store.path).metrics
    assert metrics.empty and list(metrics.columns) == ["step", "network", "kind", "loss", "accuracy"]
    assert metrics["step"].dtype == np.int64 and metrics["loss"].dtype == metrics["accuracy"].dtype == np.float64


def test_probe_chunks_that_disagree_are_one_line_errors(store):
    store.append_probe("activations", "bn", 0, {"x": np.zeros(2)})
    store.flush()
    store.append_probe("activations", "bn", 1, {"y": np.zeros(2)})
    store.flush()
    with pytest.raises(NormlabError, match="do not all hold the same arrays"):
        load_run(store.path).probe("activations", "bn")


def test_open_keeps_hidden_files_that_are_not_its_own(store):
    (store.path / ".notes").write_text("mine")
    RunStore.open(store.path)
    assert (store.path / ".notes").read_text() == "mine"


def test_status_round_trips_and_end_time_is_a_timestamp(store):
    store.set_status("running")  # running again without an end_time is fine
    store.set_status("completed")
    end_time = load_run(store.path).info["end_time"]
    assert isinstance(end_time, str) and end_time[:2] == "20"
    store.set_status("running")
    assert "end_time" not in load_run(store.path).info


def test_nested_extra_files_and_run_roots_are_created(tmp_path, store):
    store.write_text("figures/a/b/loss.svg", "<svg/>")
    assert load_run(store.path).read_text("figures/a/b/loss.svg") == "<svg/>"
    assert new_run_dir(tmp_path / "deep" / "er", "mlp").is_dir()
    with pytest.raises(ValueError, match="run name"):
        new_run_dir(tmp_path, "../x")


def test_json_written_atomically_reads_back(tmp_path):
    write_json_atomically(tmp_path / "a.json", {"path": tmp_path, "set": {2, 1}, "n": np.int64(3)})
    assert read_json(tmp_path / "a.json") == {"path": str(tmp_path), "set": [1, 2], "n": 3}
    with pytest.raises(TypeError, match="cannot store a object as JSON"):
        write_json_atomically(tmp_path / "b.json", {"x": object()})


def test_provenance_keys_and_unknown_packages():
    provenance = collect_provenance(seeds={})
    assert set(provenance) == {"normlab_version", "versions", "platform", "jax", "git", "hostname",
                               "command", "seeds"}
    assert set(provenance["jax"]) == {"backend", "devices"} and provenance["jax"]["devices"]
    assert all("cpu" in device.lower() for device in provenance["jax"]["devices"])
    assert package_version("no-such-distribution-normlab") == "unknown"


def test_run_repr_and_unknown_network_message(store):
    store.append_probe("activations", "bn", 0, {"x": np.zeros(2)})
    store.flush()
    run = load_run(store.path)
    assert repr(run) == f"Run({str(store.path)!r}, status='running')"
    with pytest.raises(NormlabError, match="unknown network for probe 'activations' 'baseline'"):
        run.probe("activations", "baseline")


def test_truncate_keeps_the_checkpoint_taken_at_the_cut(store):
    for step in (2, 4):
        store.save_checkpoint(step, {"w": np.full(1, float(step))}, keep=3)
    store.truncate_after(2)
    assert store.checkpoint_steps() == [2]


def test_a_run_is_created_under_missing_parents_and_in_an_empty_directory(tmp_path, make_store):
    nested = RunStore.create(tmp_path / "a" / "b" / "run", config={}, provenance={}, metric_columns=["loss"])
    assert nested.path.is_dir()
    (tmp_path / "empty").mkdir()
    assert make_store("empty").path == tmp_path / "empty"


def test_an_output_root_that_is_a_file_under_a_file_or_unusable_is_one_line(tmp_path, monkeypatch):
    import os

    from normlab.store import writer

    assert check_output_root(tmp_path / "new" / "runs") == tmp_path / "new" / "runs"
    (tmp_path / "f").write_text("")
    with pytest.raises(NormlabError) as error:
        check_output_root(tmp_path / "f")
    assert str(error.value) == (f"cannot make run directories under {tmp_path / 'f'}: it is a file; "
                                "pass a directory to --out")
    with pytest.raises(NormlabError) as error:
        check_output_root(tmp_path / "f" / "runs")
    assert str(error.value) == (f"cannot make run directories under {tmp_path / 'f' / 'runs'}: it lies under the file "
                                f"{tmp_path / 'f'}; pass a directory to --out")
    # Permissions cannot lock out root (the tests may run as root), so os.access answers no here.
    asked = []
    monkeypatch.setattr(writer.os, "access", lambda path, mode: asked.append((path, mode)) and False)
    with pytest.raises(NormlabError) as error:
        check_output_root(tmp_path / "new" / "runs")
    assert asked == [(tmp_path, os.W_OK | os.X_OK)]
    assert str(error.value) == (f"cannot make run directories under {tmp_path / 'new' / 'runs'}: {tmp_path} "
                                "is not writable")


def test_a_finished_run_restores_its_checkpoints_and_reads_its_arrays(store):
    store.save_checkpoint(1, {"w": np.full(2, 1.0, np.float32)}, keep=3)
    store.save_checkpoint(3, {"w": np.full(2, 3.0, np.float32)}, keep=3)
    path = store.write_arrays("start/views.npz", {"x": np.arange(3), "dense0.w": np.eye(2, dtype=np.float32)})
    assert path == store.path / "start" / "views.npz"
    run = load_run(store.path)
    step, tree = run.restore_checkpoint({"w": np.zeros(2, np.float32)})
    assert step == 3 and tree["w"].tolist() == [3.0, 3.0]
    step, tree = run.restore_checkpoint({"w": np.zeros(2, np.float32)}, step=1)
    assert step == 1 and tree["w"].tolist() == [1.0, 1.0]
    with pytest.raises(NormlabError, match=r"has no checkpoint at step 2; steps: \[1, 3\]"):
        run.restore_checkpoint({"w": np.zeros(2, np.float32)}, step=2)
    with pytest.raises(NormlabError) as error:  # a wrong target names the checkpoint file it was read from
        run.restore_checkpoint({"v": np.zeros(2, np.float32)})
    assert str(error.value).startswith(f"checkpoint {store.path / 'checkpoints' / '000000003.msgpack'} has no array")
    arrays = run.read_arrays("start/views.npz")
    assert sorted(arrays) == ["dense0.w", "x"] and arrays["x"].tolist() == [0, 1, 2]
    np.testing.assert_array_equal(arrays["dense0.w"], np.eye(2, dtype=np.float32))


def test_a_run_without_checkpoints_says_so(store):
    with pytest.raises(NormlabError, match="has no checkpoint$"):
        load_run(store.path).restore_checkpoint({"w": np.zeros(2)})


def test_a_jax_that_cannot_start_is_recorded_as_unknown(monkeypatch):
    import jax

    from normlab.store.provenance import jax_devices

    def broken():
        raise RuntimeError("no backend")

    monkeypatch.setattr(jax, "devices", broken)
    assert jax_devices() == {"backend": "unknown", "devices": []}


def test_json_files_are_indented_two_spaces_and_end_with_a_newline():
    from normlab.store.files import encode_json

    expected = b'{\n  "a": [\n    1,\n    0.5\n  ],\n  "b": "\\u00e9"\n}\n'  # ASCII: non-ASCII escaped
    assert encode_json({"a": [1, np.float32(0.5)], "b": "\u00e9"}) == expected


def test_a_run_directory_without_its_metrics_file_is_named_damaged(store):
    store.flush()
    (store.path / "metrics.csv").unlink()
    with pytest.raises(NormlabError) as error:
        RunStore.open(store.path)
    assert str(error.value) == f"{store.path} is a damaged run directory: metrics.csv is missing"
