"""A full or unwritable disk: one line naming the path, status "failed" where it can still be written,
everything flushed before intact; a bad --out is refused before any work with one line, exit 2."""

from __future__ import annotations

import errno
import os

import pytest

from normlab.cli import main
from normlab.experiments import run_experiment
from normlab.store import load_run, writer
from reliability_helpers import TINY, tiny_config


def _failing_after(original, calls: int):
    """``original``, except that every call after the first ``calls`` fails as a full disk does."""
    count = [0]

    def write(path, data):
        count[0] += 1
        if count[0] > calls:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return original(path, data)

    return write


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return load_run(run_experiment(tiny_config(), run_dir=tmp_path_factory.mktemp("ref") / "run", quiet=True).path)


def test_a_full_disk_stops_the_run_with_one_line_and_keeps_what_was_flushed(tmp_path, capsys, monkeypatch,
                                                                           reference):
    monkeypatch.setattr(writer, "append_durably", _failing_after(writer.append_durably, 2))
    assert main(["run", "quickstart", "--quiet", "--out", str(tmp_path), "--set", *TINY]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    run_dir = next(tmp_path.iterdir())
    assert lines == [f"normlab: error: cannot write {run_dir / 'metrics.csv'}: No space left on device"]
    run = load_run(run_dir)
    assert run.status == "failed" and "No space left" in run.info["error"]
    kept = run.metrics
    assert len(kept) > 0
    expected = reference.metrics.iloc[: len(kept)].reset_index(drop=True)
    assert kept.reset_index(drop=True).equals(expected), "the rows flushed before the failure are intact"


def test_a_run_directory_that_refuses_every_write_still_ends_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(writer, "append_durably", _failing_after(writer.append_durably, 0))
    monkeypatch.setattr(writer, "write_bytes_atomically", _failing_after(writer.write_bytes_atomically, 4))
    assert main(["run", "quickstart", "--quiet", "--out", str(tmp_path), "--set", *TINY]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0] and "Traceback" not in captured.err
    assert load_run(next(tmp_path.iterdir())).status == "running", "run.json could not be rewritten: it is as it was"


@pytest.mark.parametrize("kind", ["file", "under-file", "unwritable", "impossible"])
def test_a_bad_out_is_one_line_and_exit_2_before_any_work(tmp_path, capsys, monkeypatch, kind):
    regular = tmp_path / "a-file"
    regular.write_text("not a directory")
    out = {"file": regular, "under-file": regular / "runs", "unwritable": tmp_path / "locked" / "runs",
           "impossible": "/proc/self/runs"}[kind]
    if kind == "unwritable":  # as root every directory is writable: the permission check is what we test
        (tmp_path / "locked").mkdir()
        monkeypatch.setattr(os, "access", lambda path, mode: False)
    for command in (["run", "quickstart", "--quiet"], ["sweep", "quickstart", "--quiet"]):
        assert main([*command, "--out", str(out), "--set", *TINY]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and f"cannot make run directories under {out}" in lines[0], lines
    expected = ["a-file"] + (["locked"] if kind == "unwritable" else [])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected)
