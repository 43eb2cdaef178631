"""Atomic replacement: a write that fails midway leaves the old file and no temporary files."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from normlab.store import RunStore, load_run
from normlab.store import files as store_files


def temporary_files(run_dir):
    return [path for path in run_dir.rglob("*") if store_files.TMP_MARKER in path.name]


class Boom(RuntimeError):
    """The failure injected into a write."""


def fail(*args, **kwargs):
    raise Boom


def test_successful_writes_leave_no_temporary_files(store):
    store.set_probe_meta("activations", {"layers": ["a"]})
    store.append_probe("activations", "bn", 0, {"x": np.zeros(2)})
    store.append_metrics([{"step": 0, "network": "bn", "loss": 1.0}])
    store.save_checkpoint(0, {"w": np.zeros(2)})
    store.set_status("completed")
    store.write_text("report.html", "ok")
    assert temporary_files(store.path) == []


def test_failed_json_encoding_keeps_the_old_run_json(store, monkeypatch):
    before = (store.path / "run.json").read_bytes()
    monkeypatch.setattr(store_files.json, "dumps", fail)
    with pytest.raises(Boom):
        store.set_status("completed")
    assert (store.path / "run.json").read_bytes() == before
    assert temporary_files(store.path) == []


def test_chunk_write_failing_midway_keeps_old_content_and_the_buffer(store, monkeypatch):
    store.append_probe("activations", "bn", 0, {"x": np.zeros(2)})
    store.flush()
    store.append_probe("activations", "bn", 1, {"x": np.ones(2)})

    written = []

    def fail_after_first_member(self, name, mode="r", **kwargs):  # the zip is half written
        if mode == "w":
            written.append(name)
            if len(written) > 1:
                raise Boom
        return original_open(self, name, mode, **kwargs)

    original_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", fail_after_first_member)
    with pytest.raises(Boom):
        store.flush()
    assert temporary_files(store.path) == []
    assert load_run(store.path).probe("activations", "bn")["step"].tolist() == [0]

    monkeypatch.undo()
    store.flush()  # the buffered step was kept and is written now
    assert load_run(store.path).probe("activations", "bn")["step"].tolist() == [0, 1]


def test_replacing_a_file_whose_writer_raises_keeps_the_old_file(store):
    store.write_text("figures/loss.png", "old")
    with pytest.raises(Boom), store.replacing("figures/loss.png") as tmp:
        tmp.write_text("half")
        raise Boom
    assert (store.path / "figures/loss.png").read_text() == "old"
    assert temporary_files(store.path) == []


def test_failed_append_truncates_back_and_keeps_the_rows(store, monkeypatch):
    store.append_metrics([{"step": 0, "network": "bn", "loss": 1.0}])
    store.flush()
    before = (store.path / "metrics.csv").read_bytes()
    store.append_metrics([{"step": 1, "network": "bn", "loss": 2.0}])

    def write_half_then_fail(fd, data):
        original_write(fd, bytes(data[: len(data) // 2]))
        raise Boom

    original_write = store_files.os.write
    monkeypatch.setattr(store_files.os, "write", write_half_then_fail)
    with pytest.raises(Boom):
        store.flush()
    monkeypatch.undo()
    assert (store.path / "metrics.csv").read_bytes() == before
    store.flush()
    assert load_run(store.path).metrics["step"].tolist() == [0, 1]


def test_open_removes_temporary_files_left_by_a_kill(store):
    leftover = store_files.temporary_sibling(store.path / "probes" / "a" / "bn" / "000000000-000000001.npz")
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a zip")
    assert load_run(store.path).probe_names == ["a"]  # readers ignore it: no chunk name matches
    RunStore.open(store.path)
    assert not leftover.exists()
