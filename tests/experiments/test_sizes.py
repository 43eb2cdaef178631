"""Preset sizes and the probe schedule that follows the run's length."""

from __future__ import annotations

import json

import numpy as np
import pytest

from normlab.cli import main
from normlab.errors import NormlabError
from normlab.experiments import PRESETS, apply_overrides, default_config, get_preset, preset_config
from normlab.experiments.build import build_probes, measured_steps
from normlab.experiments.checks import probe_schedule_note
from normlab.experiments.config import SIZES, changed_settings, from_dict, to_dict
from normlab.probes import spaced_steps

DOWNLOADED = ("mnist", "fashion_mnist", "cifar10")

# ------------------------------------------------------------------------- the schedule


@pytest.mark.parametrize("total, points, spacing, expected", [
    (10, 4, "linear", (0, 3, 6, 9)),  # 9/3 = 3 apart
    (11, 4, "linear", (0, 3, 7, 10)),  # 10/3: 3.33 -> 3, 6.67 -> 7
    (5, 4, "linear", (0, 1, 3, 4)),  # 4/3: 1.33 -> 1, 2.67 -> 3
    (1000, 5, "log", (0, 5, 31, 177, 999)),  # 1000^(k/4) = 1, 5.6, 31.6, 177.8, 1000, minus 1
    (10, 5, "log", (0, 1, 2, 5, 9)),  # 10^(k/4) = 1, 1.78, 3.16, 5.62, 10 -> 1, 2, 3, 6, 10, minus 1
    # 20^(k/7) = 1, 1.53, 2.35, 3.61, 5.54, 8.50, 13.04, 20 -> 0, 1, 1, 3, 5, 7, 12, 19: the second 1 moves to 2
    (20, 8, "log", (0, 1, 2, 3, 5, 7, 12, 19)),
    (6, 5, "log", (0, 1, 2, 3, 5)),  # 6^(k/4) -> 0, 1, 1, 3, 5: the second 1 moves to 2
    (3, 5, "linear", (0, 1, 2)),  # more points than steps: every step
    (1, 4, "log", (0,)),
])
def test_spaced_steps_against_hand_computed_lists(total, points, spacing, expected):
    assert spaced_steps(total, points, spacing) == expected


@pytest.mark.parametrize("spacing", ["linear", "log"])
def test_spaced_steps_are_distinct_from_step_0_to_the_last_step_for_every_length(spacing):
    for total in range(1, 70):
        for points in range(2, total + 3):
            steps = spaced_steps(total, points, spacing)
            assert len(steps) == min(points, total)
            assert steps[0] == 0 and steps[-1] == total - 1
            assert all(a < b for a, b in zip(steps, steps[1:]))
            if spacing == "log" and points >= 3 and total > points:  # denser early: half the points, early
                assert steps[len(steps) // 2] <= (total - 1) / 2


def test_measured_steps_follow_probe_points_else_probe_every():
    config = apply_overrides(default_config(), ["probe_every=7"])
    assert tuple(measured_steps(config, 30)) == (0, 7, 14, 21, 28)
    assert tuple(measured_steps(apply_overrides(default_config(), ["probe_every=0"]), 30)) == ()
    points = apply_overrides(config, ["probe_points=4"])
    assert measured_steps(points, 30) == (0, 10, 19, 29)  # 29/3 = 9.67: 0, 9.67, 19.33, 29
    assert measured_steps(points, 3) == (0, 1, 2)  # shrinking the run keeps the figures filled
    log = apply_overrides(points, ["probe_spacing=log", "probe_points=5"])
    assert measured_steps(log, 1000) == (0, 5, 31, 177, 999)


def test_the_probes_measure_at_the_measured_steps_and_divergence_at_its_own():
    config = apply_overrides(default_config(), ["probes=activations,divergence", "probe_points=3",
                                                "divergence_steps=0,2"])
    probes = {probe.name: probe for probe in build_probes(config, 11)}
    assert [s for s in range(11) if probes["activations"].schedule(s)] == [0, 5, 10]
    assert [s for s in range(11) if probes["divergence"].schedule(s)] == [0, 2]
    with pytest.raises(ValueError, match="total_steps"):
        build_probes(config)


def test_stating_probe_every_or_a_budget_turns_probe_points_off():
    points = apply_overrides(default_config(), ["probe_points=9"])
    assert apply_overrides(points, ["probe_every=5"]).probe_points == 0
    assert apply_overrides(points, ["probe_budget=0.1"]).probe_points == 0
    assert apply_overrides(points, ["probe_every=5", "probe_points=4"]).probe_points == 4
    with pytest.raises(NormlabError, match="'probe_points' .* and 'probe_budget' .* set one of them to 0"):
        apply_overrides(default_config(), ["probe_points=4", "probe_budget=0.1"])


def test_a_schedule_with_a_single_point_is_named_before_the_run():
    every = apply_overrides(default_config(), ["probe_every=100"])
    note = probe_schedule_note(every, 60)
    assert note is not None and "only at step 0" in note and "probe_every=100" in note and "probe_points" in note
    assert probe_schedule_note(apply_overrides(every, ["probe_points=5"]), 60) is None
    assert probe_schedule_note(apply_overrides(every, ["probe_every=20"]), 60) is None
    assert probe_schedule_note(apply_overrides(every, ["probes=divergence"]), 60) is None


# ---------------------------------------------------------------------------- the sizes


def test_every_preset_has_every_size_and_records_it():
    for name, preset in PRESETS.items():
        assert tuple(preset.sizes) == SIZES and preset.default_size in SIZES
        for size in SIZES:
            config = preset_config(name, size)
            assert config.size == size and config.preset == name
            assert from_dict(to_dict(config)) == config
            assert changed_settings(config, preset.config).keys() - {"size"} == preset.sizes[size].keys() - {
                key for key, value in preset.sizes[size].items() if getattr(preset.config, key) == value}
        assert preset_config(name) == preset_config(name, preset.default_size)


def test_tiny_needs_no_download_and_every_preset_measures_by_probe_points():
    for name, preset in PRESETS.items():
        tiny = preset_config(name, "tiny")
        assert tiny.dataset not in DOWNLOADED, name
        assert 0 < tiny.steps <= 4 and tiny.probe_points >= 2, name
        for size in SIZES:
            assert preset_config(name, size).probe_points >= 2, (name, size)


def test_the_vgg_presets_share_one_tiny_and_one_small():
    vgg = [preset for preset in PRESETS.values() if preset.config.model == "vgg" and preset.name != "ghorbani_vgg"]
    assert len(vgg) == 4
    assert all(preset.sizes["tiny"] is vgg[0].sizes["tiny"] for preset in vgg)
    # One small for all, but the learning rate and the length: the width-1/8 VGG without BN dies at S18's
    # lr 0.1 and at Part 2's 0.035 with momentum, so their small sizes lower it (santurkar_lp has no
    # baseline to lose); santurkar_vgg runs twice as long, for measurements where its baseline learns.
    own = ("lr", "steps")
    shared = {key: value for key, value in vgg[0].sizes["small"].items() if key not in own}
    assert all({k: v for k, v in preset.sizes["small"].items() if k not in own} == shared for preset in vgg)
    names = ("santurkar_vgg", "santurkar_noisy", "part2", "santurkar_lp")
    lrs = {name: preset_config(name, "small").lr for name in names}
    assert lrs == {"santurkar_vgg": 0.02, "santurkar_noisy": 0.02, "part2": 0.01, "santurkar_lp": 0.1}
    steps = {name: preset_config(name, "small").steps for name in names}
    assert steps == {"santurkar_vgg": 800, "santurkar_noisy": 400, "part2": 400, "santurkar_lp": 400}
    assert preset_config("santurkar_vgg", "tiny").width <= 1 / 32
    # ghorbani_vgg states its own small: the narrow VGG on the same data at Part 2's small lr (with
    # momentum 0.9), 300 steps, for curvature measured while its baseline learns.
    g19 = preset_config("ghorbani_vgg", "small")
    assert (g19.width, g19.dataset, g19.optimizer, g19.lr, g19.steps) == (
        shared["width"], shared["dataset"], "momentum", lrs["part2"], 300)


def test_quickstart_at_its_default_size_is_the_preset_as_it_was():
    assert get_preset("quickstart").default_size == "small"
    assert changed_settings(preset_config("quickstart"), get_preset("quickstart").config) == {"size": "small"}


def _one_error_line(capsys, argv) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


@pytest.mark.parametrize("command", ["run", "config", "sweep"])
def test_a_bad_size_is_one_line_naming_the_sizes(capsys, tmp_path, command):
    argv = [command, "santurkar_vgg", "--size", "huge"] + (["--out", str(tmp_path)] if command != "config" else [])
    line = _one_error_line(capsys, argv)
    assert line == "normlab: error: unknown size 'huge' for preset 'santurkar_vgg'; allowed: tiny, small, paper"
    assert not any(tmp_path.iterdir())


def test_resume_takes_no_size(capsys, tmp_path):
    line = _one_error_line(capsys, ["run", "--resume", str(tmp_path), "--size", "tiny"])
    assert "--size" in line


def test_config_prints_each_settings_value_type_and_meaning(capsys):
    assert main(["config", "santurkar_vgg", "--size", "tiny"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("preset santurkar_vgg at size tiny (sizes: tiny, small (default), paper)")
    lines = out.splitlines()
    steps = lines.index(next(line for line in lines if line.split()[:1] == ["steps"]))
    assert lines[steps].split()[1:] == ["3", "int"]
    assert "> 0: train exactly this many steps and ignore epochs; 0 = epochs x steps per epoch" in lines[steps + 1]
    for fragment in ("0 = once per epoch", "0 = at every evaluation", "0 = use probe_every",
                     "\"\" = the dataset's conventional one", "epochs and steps: steps > 0 trains exactly",
                     "run: 3 steps (steps = 3 > 0, so epochs = 1 is ignored)", "evaluations: 2 (steps 0, 3)",
                     "probes: 3 measurements (probe_points = 3, linear): steps 0, 1, 2"):
        assert fragment in " ".join(out.split()), fragment


def test_config_says_how_epochs_make_the_steps(capsys):
    assert main(["config", "quickstart", "--set", "epochs=2", "probe_every=100"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    # digits: 1437 training examples // batch 32 = 44 steps per epoch
    assert "run: 88 steps (steps = 0: epochs = 2 x 44 steps per epoch of 32 of the 1437 training examples)" in text
    assert "probes: 1 measurement (probe_every = 100): steps 0" in text
    assert "note: probes measure only at step 0" in text


def test_a_run_records_its_size_and_its_preset_at_that_size(tmp_path):
    from normlab.experiments import run_experiment

    config = apply_overrides(preset_config("quickstart", "tiny"), ["report=false", "steps=2"])
    result = run_experiment(config, out=tmp_path, quiet=True)
    stored = json.loads((result.path / "config.json").read_text())
    info = json.loads((result.path / "run.json").read_text())
    assert stored["size"] == "tiny" and info["preset_defaults"] == to_dict(preset_config("quickstart", "tiny"))


def test_fast_compile_compiles_the_same_training_without_code_optimizations(tmp_path):
    """tiny's fast_compile only changes how XLA optimizes the code: the same losses to float32 rounding."""
    from normlab.experiments import run_experiment
    from normlab.experiments.compiled import FAST_COMPILE_OPTIONS
    from normlab.store import load_run

    assert FAST_COMPILE_OPTIONS["xla_backend_optimization_level"] == 0
    losses = {}
    for fast in (False, True):
        config = apply_overrides(preset_config("quickstart", "tiny"),
                                 ["report=false", f"fast_compile={fast}", "probes=distance"])
        run = load_run(run_experiment(config, out=tmp_path / str(fast), quiet=True).path)
        assert run.config["fast_compile"] is fast
        losses[fast] = run.metrics.dropna(subset=["loss"])["loss"].to_numpy()
    assert len(losses[True]) == 6  # 3 steps x 2 networks
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-5)
