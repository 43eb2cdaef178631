"""One validation pass: `normlab config` and `normlab run` refuse the same settings with the same line."""

from __future__ import annotations

import pytest

from normlab.cli import main
from normlab.store import RunStore

TINY = ["dataset=synthetic", "model=mlp", "width=0.25", "steps=4", "report=false"]


def _one_error_line(capsys, argv) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


@pytest.mark.parametrize(
    "setting, named, allowed",
    [
        ("train_eval_size=0", "'train_eval_size'", ">= 1"),
        ("activations.tracked_layer=99", "'activations.tracked_layer'", "-3..2"),
        ("activations.tracked_layer=-4", "'activations.tracked_layer'", "-3..2"),
        ("tracked_layer=99", "'activations.tracked_layer'", "-3..2"),  # the old spelling
        ("activations.tracked_unit=100000", "'activations.tracked_unit'", "0.."),
        ("gradients.tracked_layer=7", "'gradients.tracked_layer'", "-4..3"),
        ("gradients.tracked_index=10000000", "'gradients.tracked_index'", "0.."),
        ("hessian_top.k=0", "'hessian_top.k'", ">= 1"),
        ("hessian_trace.vectors=0", "'hessian_trace.vectors'", ">= 1"),
        ("ics.strategy=loop", "'ics.strategy'", "unrolled, map"),
        ("bn_parameters.value_range=-1", "'bn_parameters.value_range'", "finite number > 0"),
        ("nosuchprobe.k=1", "'nosuchprobe.k'", "probes: activations"),
        ("lr=nan", "'lr'", "finite number > 0"),
        ("lr=inf", "'lr'", "finite number > 0"),
        ("lr=-1", "'lr'", "finite number > 0"),
        ("bn_momentum=2", "'bn_momentum'", "[0, 1]"),
        ("weight_decay=-1", "'weight_decay'", ">= 0"),
        ("momentum=-1", "'momentum'", "[0, 1)"),
        ("batch_size=100000", "'batch_size'", "at most the"),
        ("steps=99999999999", "'steps'", "at most 2147483647"),
        ("landscape_range=0.5,inf", "'landscape_range'", "finite"),
        ("init_std=-0.1", "'init_std'", ">= 0"),
        ("width=1e40", "'width'", "(0, 64]"),  # found by the CLI fuzz: it reached the model build
        ("init_std=0.1", "'init_std'", "ioffe_mlp"),  # the mlp has no init_std option
        ("depth=-1", "'depth'", ">= 0"),
        ("depth=3", "'depth'", "(dln)"),
        ("preset=part1", "'preset' cannot be set", "normlab run PRESET"),
        ("size=tiny", "'size' cannot be set", "--size"),
        ("probe_points=1", "'probe_points'", "at least 2"),
        ("probe_points=-3", "'probe_points'", ">= 0"),
        ("probe_spacing=cubic", "'probe_spacing'", "linear, log"),
    ],
)
def test_config_and_run_refuse_the_same_setting_with_the_same_line(capsys, tmp_path, setting, named, allowed):
    config_line = _one_error_line(capsys, ["config", "--set", *TINY, setting])
    run_line = _one_error_line(capsys, ["run", "--quiet", "--out", str(tmp_path), "--set", *TINY, setting])
    assert config_line == run_line
    assert named in config_line and allowed in config_line
    other_settings = {"'lr'", "'width'", "'activations.value_range'", "'momentum'"} - {named}
    assert not any(other in config_line for other in other_settings), "the message names one setting"
    assert not any(tmp_path.iterdir()), "nothing is written before the checks pass"


def test_a_diverged_run_resumes_as_already_finished(capsys, tmp_path):
    store = RunStore.create(tmp_path / "run", config={}, provenance={}, metric_columns=["loss"])
    store.set_status("diverged", diverged={"none": 3})
    line = _one_error_line(capsys, ["run", "--resume", str(tmp_path / "run")])
    assert "already finished (status diverged)" in line
    assert store.info["status"] == "diverged", "a refused resume changes nothing"
