"""A killed sweep, re-run, completes only what is missing: finished members stay untouched, the
member killed mid-way resumes from its checkpoint to the uninterrupted result, members never
started run afresh; in this process (jobs 1) and in worker processes (jobs 2).

The kill is the fault point ``kill:2:checkpoint`` (SIGKILL at a member's second checkpoint
write, step 16 of 24): the 8-step member has no checkpoint to pass and finishes, the 24-step one
dies half-way.
"""

from __future__ import annotations

import subprocess

import pytest

from normlab.errors import NormlabError
from normlab.experiments import run_experiment
from normlab.experiments.member import run_member
from normlab.experiments.sweep import load_sweep, parse_grid, resume_sweep, run_sweep
from normlab.store import load_run
from reliability_helpers import NORMLAB, TINY, assert_same_run, subprocess_env, tiny_config

KILL = "kill:2:checkpoint"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The 24-step member run without interruption (seed 0, as the sweep's member)."""
    return run_experiment(tiny_config("steps=24"), run_dir=tmp_path_factory.mktemp("reference") / "run",
                          quiet=True, report=False).path


def _fingerprint(path):
    """What must not change in a member that was already finished."""
    return {name: ((path / name).stat().st_mtime_ns, (path / name).read_bytes())
            for name in ("run.json", "metrics.csv")}


def _check_resumed(sweep_dir, reference, untouched, fresh=()):
    sweep = load_sweep(sweep_dir)
    assert sweep["status"] == "completed"
    assert all(member["status"] == "completed" for member in sweep["members"])
    for name, fingerprint in untouched.items():
        assert _fingerprint(sweep_dir / name) == fingerprint, f"{name} was run again"
    killed = load_run(sweep_dir / "steps=24-seed=0")
    assert killed.status == "completed" and killed.info["resumed_from"] == 8
    assert_same_run(reference, sweep_dir / "steps=24-seed=0")
    for name in fresh:
        run = load_run(sweep_dir / name)
        assert run.status == "completed" and "resumed_from" not in run.info


def test_a_sweep_killed_in_a_member_reruns_only_what_is_missing(tmp_path, reference):
    completed = subprocess.run(
        [str(NORMLAB), "sweep", "quickstart", "--quiet", "--jobs", "1", "--out", str(tmp_path), "--set", *TINY,
         "--grid", "steps=8,24,16"],
        env=subprocess_env(NORMLAB_FAULT=KILL), capture_output=True, text=True, timeout=600)
    assert completed.returncode == -9, completed.stderr
    sweep_dir = next(tmp_path.iterdir())
    sweep = load_sweep(sweep_dir)
    assert sweep["status"] == "running"  # what a kill leaves: not "completed"
    assert [m["status"] for m in sweep["members"]] == ["completed", "pending", "pending"]
    assert load_run(sweep_dir / "steps=24-seed=0").status == "running"
    assert not (sweep_dir / "steps=16-seed=0").exists()
    untouched = {"steps=8-seed=0": _fingerprint(sweep_dir / "steps=8-seed=0")}
    _directory, results = resume_sweep(sweep_dir, quiet=True, jobs=1)
    assert [r.status for r in results] == ["completed"] * 3
    _check_resumed(sweep_dir, reference, untouched, fresh=["steps=16-seed=0"])


def test_a_worker_killed_mid_member_is_recorded_and_resumed(tmp_path, reference, monkeypatch):
    monkeypatch.setenv("NORMLAB_FAULT", KILL)  # inherited by the workers; this process never checkpoints
    directory, results = run_sweep(tiny_config(), parse_grid(["steps=8,24"]), [0], out=tmp_path, quiet=True, jobs=2)
    monkeypatch.delenv("NORMLAB_FAULT")
    assert [r.status for r in results] == ["completed", "failed"]
    sweep = load_sweep(directory)
    assert sweep["status"] == "failed" and [m["status"] for m in sweep["members"]] == ["completed", "failed"]
    assert load_run(directory / "steps=24-seed=0").status == "running"  # killed: its run.json never finished
    untouched = {"steps=8-seed=0": _fingerprint(directory / "steps=8-seed=0")}
    resume_sweep(directory, quiet=True, jobs=1)
    _check_resumed(directory, reference, untouched)


def test_a_member_directory_cut_short_at_creation_is_run_afresh_but_a_foreign_one_is_refused(tmp_path):
    member = tmp_path / "lr=0.01-seed=0"
    member.mkdir()
    (member / "config.json").write_text("{}")  # RunStore.create killed before metrics.csv and run.json
    config = tiny_config("steps=8")
    assert run_member(config, member).status == "completed"
    assert load_run(member).status == "completed"
    foreign = tmp_path / "other"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(NormlabError, match="exists but is not a run \\(notes.txt\\)"):
        run_member(config, foreign)
    assert (foreign / "notes.txt").read_text() == "mine"
