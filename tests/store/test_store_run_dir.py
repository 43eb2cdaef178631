"""Creating, opening and loading run directories; status; config; extra files; provenance."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from normlab.errors import NormlabError
from normlab.store import RunStore, collect_provenance, is_run_dir, load_run, new_run_dir
from normlab.store import provenance as provenance_module
from normlab.store.provenance import git_revision


def test_create_writes_config_and_run_info(store):
    run = load_run(store.path)
    assert run.config == {"model": "mlp", "lr": 0.1, "widths": [8, 8]}
    assert run.status == "running" and "start_time" in run.info and "end_time" not in run.info
    assert run.provenance == {"seeds": {"init": 0}}
    assert is_run_dir(store.path)


def test_create_refuses_a_non_empty_directory_but_accepts_an_empty_one(tmp_path, make_store):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(NormlabError, match="not empty"):
        make_store("taken")
    (tmp_path / "empty").mkdir()
    assert is_run_dir(make_store("empty").path)


def test_config_that_is_not_json_leaves_no_directory(tmp_path, make_store):
    with pytest.raises(TypeError):
        make_store("bad", config={"model": object()})
    assert not (tmp_path / "bad").exists()


def test_non_run_directories_give_one_line_errors(tmp_path):
    (tmp_path / "plain").mkdir()
    for path in (tmp_path / "plain", tmp_path / "missing"):
        assert not is_run_dir(path)
        for read in (load_run, RunStore.open):
            with pytest.raises(NormlabError, match="is not a normlab run directory") as error:
                read(path)
            assert "\n" not in str(error.value)


def test_new_run_dir_is_timestamped_and_unique(tmp_path):
    first = new_run_dir(tmp_path, "mlp")
    second = new_run_dir(tmp_path, "mlp")
    assert re.fullmatch(r"\d{8}-\d{6}-mlp", first.name)
    assert first != second and first.is_dir() and second.is_dir()
    assert is_run_dir(RunStore.create(second, config={}, provenance={}, metric_columns=[]).path)


@pytest.mark.parametrize("status", ["completed", "interrupted", "failed", "diverged"])
def test_terminal_status_records_end_time_and_info(store, status):
    store.set_status(status, final_step=42)
    run = load_run(store.path)
    assert run.status == status and run.info["final_step"] == 42 and "end_time" in run.info
    assert run.provenance == {"seeds": {"init": 0}}  # the rest of run.json survives


def test_resuming_sets_running_again_without_end_time(store):
    store.set_status("interrupted")
    store.set_status("running", resumed_from=10)
    assert "end_time" not in load_run(store.path).info


def test_update_info_keeps_the_status(store):
    store.update_info(steps_done=7, diverged={"bn": 5})
    store.update_info(steps_done=9)
    run = load_run(store.path)
    assert run.status == "running" and run.info["steps_done"] == 9 and run.info["diverged"] == {"bn": 5}
    with pytest.raises(ValueError, match="status"):
        store.update_info(status="completed")


def test_status_is_validated(store):
    with pytest.raises(ValueError, match="running, completed, interrupted, failed, diverged"):
        store.set_status("done")
    with pytest.raises(ValueError, match="start_time"):
        store.set_status("failed", start_time="never")


def test_extra_files_are_written_inside_the_run(store):
    store.write_text("report/index.html", "<h1>run</h1>")
    store.write_bytes("figures/raw.bin", b"\x00\x01")
    store.write_json("summary.json", {"best": 0.9})
    with store.replacing("figures/loss.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == store.path / "figures"
        tmp.write_bytes(b"png")
    run = load_run(store.path)
    assert run.read_text("report/index.html") == "<h1>run</h1>"
    assert run.read_json("summary.json") == {"best": 0.9}
    assert run.file("figures/loss.png").read_bytes() == b"png"
    assert store.path_for("figures/new/plot.svg").parent.is_dir()


@pytest.mark.parametrize(
    "relpath", ["../outside.txt", "/etc/passwd", "metrics.csv", "probes/x.txt", "run.json"]
)
def test_extra_files_cannot_escape_or_overwrite_store_files(store, relpath):
    with pytest.raises(ValueError):
        store.write_text(relpath, "x")


def test_provenance_is_complete_and_json_able():
    provenance = collect_provenance(seeds={"init": 0, "data": 1})
    json.dumps(provenance)
    assert provenance["seeds"] == {"init": 0, "data": 1}
    assert set(provenance["versions"]) == {"jax", "jaxlib", "flax", "optax", "numpy", "pandas", "onednn-cpu-gomp",
                                           "python"}
    assert provenance["versions"]["numpy"] != "unknown"
    assert provenance["jax"]["backend"] == "cpu"
    assert provenance["git"] is None or set(provenance["git"]) == {"revision", "dirty"}
    assert provenance["hostname"] and isinstance(provenance["command"], list)


def test_provenance_survives_a_missing_git(monkeypatch):
    monkeypatch.setenv("PATH", "")  # no git executable can be found
    assert collect_provenance(seeds={})["git"] is None


def git(cwd, *args) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout.strip()


def test_git_revision_is_head_of_the_checkout_and_tracks_dirtiness(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("a = 1\n")
    git(tmp_path, "add", "code.py")
    git(tmp_path, "commit", "-q", "-m", "first")
    (tmp_path / "pkg").mkdir()
    head = git(tmp_path, "rev-parse", "HEAD")
    assert git_revision(tmp_path / "pkg") == {"revision": head, "dirty": False}  # from a sub-directory
    (tmp_path / "untracked.txt").write_text("run output")
    assert git_revision(tmp_path) == {"revision": head, "dirty": False}  # untracked files are ignored
    (tmp_path / "code.py").write_text("a = 2\n")
    assert git_revision(tmp_path) == {"revision": head, "dirty": True}
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ".git").write_text("gitdir: /nonexistent\n")  # not a checkout: no revision
    assert git_revision(outside) is None


def test_a_runs_provenance_names_the_revision_of_normlabs_own_checkout():
    source_dir = Path(provenance_module.__file__).resolve().parent
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source_dir, capture_output=True, text=True)
    recorded = collect_provenance(seeds={})["git"]
    if head.returncode != 0:  # an installed copy outside any checkout
        assert recorded is None
    else:
        assert recorded["revision"] == head.stdout.strip() and isinstance(recorded["dirty"], bool)
