"""Durability, observed from outside: replacement is a rename, fsyncs come in the right order,
and a truncation that fails midway loses no step it was asked to keep."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from normlab.store import RunStore, load_run
from normlab.store import files as store_files


class Boom(OSError):
    """The failure injected into a system call."""


def temporary_files(run_dir: Path) -> list[Path]:
    return [path for path in run_dir.rglob("*") if store_files.TMP_MARKER in path.name]


def test_replacing_a_file_gives_it_a_new_inode(store):
    """A rename puts a new inode in place; truncating and rewriting would keep the old one."""
    target = store.path / "notes.txt"
    store.write_text("notes.txt", "old")
    old_inode = target.stat().st_ino
    held_open = open(target, "rb")  # a reader that opened the old file keeps reading the old bytes
    try:
        store.write_text("notes.txt", "new content")
        assert target.stat().st_ino != old_inode
        assert held_open.read() == b"old"
    finally:
        held_open.close()
    assert target.read_text() == "new content"


@pytest.mark.parametrize("write", [
    lambda store: store.write_text("notes.txt", "new content"),
    lambda store: store.set_status("completed"),
    lambda store: store.set_probe_meta("activations", {"layers": ["b"]}),
], ids=["write_text", "run_json", "probe_meta"])
def test_a_failing_rename_leaves_the_old_file_byte_identical(store, monkeypatch, write):
    store.write_text("notes.txt", "old")
    store.set_probe_meta("activations", {"layers": ["a"]})
    before = {path: path.read_bytes() for path in store.path.rglob("*") if path.is_file()}

    def failing_replace(src, dst):
        raise Boom("rename failed")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(Boom):
        write(store)
    monkeypatch.undo()
    after = {path: path.read_bytes() for path in store.path.rglob("*") if path.is_file()}
    assert after == before
    assert temporary_files(store.path) == []


def record_durability_calls(monkeypatch) -> list[tuple]:
    """Record ("fsync", path), ("replace", src, dst) and ("write", path) as they happen.

    The path of an fsynced or written descriptor is read from /proc/self/fd, so the record says
    what was made durable, not just that fsync was called.
    """
    events: list[tuple] = []
    original_fsync, original_replace, original_write = os.fsync, os.replace, os.write

    def path_of(fd) -> Path:
        return Path(os.readlink(f"/proc/self/fd/{fd}")).resolve()

    def fsync(fd):
        events.append(("fsync", path_of(fd)))
        return original_fsync(fd)

    def replace(src, dst, **kwargs):
        events.append(("replace", Path(src).resolve(), Path(dst).resolve()))
        return original_replace(src, dst, **kwargs)

    def write(fd, data):
        events.append(("write", path_of(fd)))
        return original_write(fd, data)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "write", write)
    return events


def assert_every_replace_and_append_is_fsynced(events: list[tuple]) -> None:
    """The temporary file is fsynced before its rename, the directory after it; a written file
    is fsynced before anything else happens to the store."""
    replaces = [i for i, event in enumerate(events) if event[0] == "replace"]
    writes = [i for i, event in enumerate(events) if event[0] == "write"]
    assert replaces and writes, "the scenario should exercise both replaces and appends"
    for i in replaces:
        _, src, dst = events[i]
        before = events[:i]
        assert ("fsync", src) in before, f"{src.name} renamed over {dst.name} without an fsync of its data"
        # the fsync of the new data comes after the last write to it (if written via os.write)
        last_fsync = max(j for j, event in enumerate(before) if event == ("fsync", src))
        assert ("write", src) not in events[last_fsync:i]
        assert events[i + 1] == ("fsync", dst.parent), f"the rename over {dst.name} was not made durable"
    for i in writes:
        path = events[i][1]
        following = [event for event in events[i + 1:] if event[0] != "write" or event[1] != path]
        assert following and following[0] == ("fsync", path), f"an append to {path.name} was not fsynced"


def test_every_replace_and_append_is_fsynced_file_then_directory(tmp_path, monkeypatch):
    events = record_durability_calls(monkeypatch)
    store = RunStore.create(tmp_path / "run", config={"a": 1}, provenance={}, metric_columns=["loss"])
    store.set_probe_meta("activations", {"layers": ["a"]})
    for step in range(3):
        store.append_metrics([{"step": step, "network": "bn", "loss": 1.0}])
        store.append_probe("activations", "bn", step, {"x": np.full(2, step)})
        store.flush()
    store.save_checkpoint(2, {"w": np.zeros(2)})
    store.truncate_after(1)
    store.set_status("completed")
    store.write_text("report.html", "ok")
    kinds = {event[0] for event in events}
    assert kinds == {"fsync", "replace", "write"}
    assert_every_replace_and_append_is_fsynced(events)
    # the files a run cannot do without were all replaced durably
    replaced = {event[2].name for event in events if event[0] == "replace"}
    assert {"config.json", "metrics.csv", "run.json", "meta.json", "report.html"} <= replaced
    assert any(name.endswith(".npz") for name in replaced) and any(name.endswith(".msgpack") for name in replaced)


def test_a_truncation_failing_midway_keeps_every_step_up_to_the_cut(store, monkeypatch):
    for step in range(10):
        store.append_probe("activations", "bn", step, {"hist": np.arange(3) + step})
        store.append_metrics([{"step": step, "network": "bn", "loss": float(step)}])
        if step in (3, 7):
            store.flush()
    store.flush()  # chunks 0-3, 4-7, 8-9: the cut at 5 straddles the middle one
    original_replace = os.replace

    def fail_on_chunks(src, dst):
        if str(dst).endswith(".npz"):
            raise Boom("disk full")
        return original_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_chunks)
    with pytest.raises(Boom):
        store.truncate_after(5)
    monkeypatch.undo()

    kept = load_run(store.path).probe("activations", "bn")
    assert set(range(6)) <= set(kept["step"].tolist()), "a step before the cut was lost"
    for step, hist in zip(kept["step"], kept["hist"]):
        np.testing.assert_array_equal(hist, np.arange(3) + step)
    assert temporary_files(store.path) == []

    RunStore.open(store.path).truncate_after(5)  # the next resume finishes the cut
    run = load_run(store.path)
    assert run.probe("activations", "bn")["step"].tolist() == list(range(6))
    np.testing.assert_array_equal(run.probe("activations", "bn")["hist"], np.arange(3) + np.arange(6)[:, None])
    assert run.metrics["step"].tolist() == list(range(6))
