"""The console script: its commands and its one-line errors (exit status 2, no traceback)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

NORMLAB = shutil.which("normlab", path=str(Path(sys.executable).parent)) or shutil.which("normlab")


def normlab(*args, cwd=None, env=None):
    if NORMLAB is None:
        pytest.fail("the `normlab` console script is not installed (pip install -e .)")
    return subprocess.run([NORMLAB, *args], capture_output=True, text=True, cwd=cwd, timeout=600,
                          env={**os.environ, **(env or {})})


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_help_lists_the_commands():
    result = normlab("--help")
    assert result.returncode == 0
    for command in ("run", "list", "describe", "config", "report", "export"):
        assert command in result.stdout
    for command in ("run", "list", "describe", "config", "report"):
        assert normlab(command, "--help").returncode == 0


def test_list_shows_every_registry():
    result = normlab("list")
    assert result.returncode == 0
    for name in ("quickstart", "part1", "digits", "mnist", "fashion_mnist", "cifar10", "synthetic",
                 "mlp", "vgg", "batch", "noisy", "activations"):
        assert f"  {name} " in result.stdout


def test_list_describes_each_preset_at_its_default_size():
    """santurkar_vgg's shared settings say S18's lr 0.1; its small size, the default, runs 0.02."""
    line = next(line for line in normlab("list").stdout.splitlines() if line.startswith("  santurkar_vgg "))
    assert "Settings at size small: " in line and " lr=0.02 " in line and " steps=800 " in line
    assert "lr=0.1 " not in line


def test_unknown_preset(tmp_path):
    assert_one_line_error(normlab("run", "part9", "--out", str(tmp_path)), "unknown preset 'part9'", "quickstart")
    assert not any(tmp_path.iterdir()), "nothing is written for a bad command"


def test_unknown_set_key(tmp_path):
    assert_one_line_error(normlab("run", "--set", "epoch=1", "--out", str(tmp_path)),
                          "unknown setting 'epoch'", "epochs (int)")


def test_bad_set_type(tmp_path):
    assert_one_line_error(normlab("run", "--set", "epochs=two", "--out", str(tmp_path)),
                          "setting 'epochs' expects int, got 'two'")


def test_unknown_names_inside_settings(tmp_path):
    assert_one_line_error(
        normlab("run", "--set", "dataset=imagenet", "--out", str(tmp_path)), "unknown dataset", "digits"
    )
    assert_one_line_error(
        normlab("run", "--set", "networks=none,batchy", "--out", str(tmp_path)), "unknown norm", "batch"
    )


def test_unknown_command_and_flag_are_one_line():
    assert_one_line_error(normlab("train"), "invalid choice")
    assert_one_line_error(normlab("run", "--bogus"), "unrecognized arguments")


def test_missing_data_is_a_one_line_error(tmp_path):
    env = {"NORMLAB_DATA_DIR": str(tmp_path / "cache"), "NORMLAB_DATA_MIRROR": "http://127.0.0.1:9"}
    result = normlab("run", "part1", "--set", "steps=1", "--out", str(tmp_path / "runs"), env=env)
    assert_one_line_error(result, "NORMLAB_DATA_DIR", "NORMLAB_DATA_MIRROR")


@pytest.mark.parametrize(
    "args, total",
    [
        (("mlp", "--dataset", "mnist"), "242,762"),
        (("mlp", "--norm", "batch", "--dataset", "mnist"), "243,658"),
        (("vgg", "--dataset", "cifar10"), "9,464,522"),
        (("vgg", "--norm", "batch", "--dataset", "cifar10"), "params + stats = 9,476,298"),
    ],
)
def test_describe_prints_the_papers_parameter_counts(args, total):
    result = normlab("describe", *args)
    assert result.returncode == 0, result.stderr
    assert total in result.stdout
