"""Checkpoints carry checksums: a damaged one is detected and the resume falls back to an earlier one."""

from __future__ import annotations

import shutil

import pytest

from normlab.errors import NormlabError
from normlab.experiments import resume_experiment, run_experiment
from normlab.store import RunStore, load_run
from reliability_helpers import assert_same_run, tiny_config


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted tiny run (checkpoints kept at steps 8 and 16)."""
    result = run_experiment(tiny_config(), run_dir=tmp_path_factory.mktemp("reference") / "run", quiet=True)
    assert load_run(result.path).checkpoint_steps == [8, 16]
    return result.path


def _interrupted_copy(reference, tmp_path):
    """The reference as a run interrupted after its last checkpoint (everything after 16 resumable)."""
    copy = tmp_path / "run"
    shutil.copytree(reference, copy)
    RunStore.open(copy).set_status("interrupted", steps_done=16)
    return copy


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_bytes(path):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(255 - b for b in data[middle : middle + 8])  # same size, new bytes
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _flip_bytes, lambda path: path.unlink()],
                         ids=["truncated", "bytes-flipped", "deleted"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_earlier_one(reference, tmp_path, capsys, damage):
    run_dir = _interrupted_copy(reference, tmp_path)
    damage(run_dir / "checkpoints" / "000000016.msgpack")
    result = resume_experiment(run_dir, quiet=True)
    assert result.status == "completed"
    assert_same_run(reference, run_dir)
    warnings = capsys.readouterr().err.strip().splitlines()
    if damage is not _truncate and damage is not _flip_bytes:  # a deleted file is simply not there
        assert warnings == []
    else:
        assert len(warnings) == 1 and "000000016.msgpack is damaged" in warnings[0] and "step 8" in warnings[0]


def test_a_changed_extra_file_makes_its_checkpoint_invalid(reference, tmp_path, capsys):
    run_dir = _interrupted_copy(reference, tmp_path)
    extra = run_dir / "checkpoints" / "000000016.json"
    extra.write_text(extra.read_text().replace("{}", "{ }") + " ")
    resume_experiment(run_dir, quiet=True)
    assert_same_run(reference, run_dir)
    assert "000000016.json is missing or changed" in capsys.readouterr().err


def test_no_valid_checkpoint_is_one_line_naming_the_files(reference, tmp_path):
    run_dir = _interrupted_copy(reference, tmp_path)
    for step in (8, 16):
        _flip_bytes(run_dir / "checkpoints" / f"{step:09d}.msgpack")
    with pytest.raises(NormlabError) as error:
        resume_experiment(run_dir, quiet=True)
    message = str(error.value)
    assert "\n" not in message and "000000008.msgpack" in message and "000000016.msgpack" in message
    assert load_run(run_dir).status == "interrupted", "a refused resume changes nothing"
