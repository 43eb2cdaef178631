"""Typed overrides and presets."""

from __future__ import annotations

import pytest

from normlab.errors import NormlabError, UnknownNameError
from normlab.experiments import PRESETS, apply_overrides, default_config, get_preset
from normlab.experiments.config import changed_settings, from_dict, to_dict


def test_overrides_are_parsed_by_the_field_type():
    config = apply_overrides(default_config(), ["epochs=3", "lr=0.5", "augment=true", "networks=none,batch,noisy",
                                                "norm_exclude=0,2", "landscape_range=0.01,30", "model=vgg"])
    assert config.epochs == 3 and config.lr == 0.5 and config.augment is True
    assert config.networks == ("none", "batch", "noisy") and config.norm_exclude == (0, 2)
    assert config.landscape_range == (0.01, 30.0) and config.model == "vgg"
    assert changed_settings(config, default_config())["epochs"] == 3


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("epoch=3", "unknown setting 'epoch'; allowed keys: preset (str)"),
        ("epochs=three", "setting 'epochs' expects int, got 'three'"),
        ("lr=fast", "setting 'lr' expects float"),
        ("augment=maybe", "setting 'augment' expects bool"),
        ("optimizer=rmsprop", "setting 'optimizer' must be one of sgd, momentum, adam"),
        ("batch_size=0", "setting 'batch_size' must be > 0"),
        ("networks=batch,batch", "repeated name"),
        ("epochs", "--set expects key=value"),
    ],
)
def test_bad_overrides_are_one_line_errors(assignment, message):
    with pytest.raises(NormlabError) as error:
        apply_overrides(default_config(), [assignment])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_every_preset_is_valid_and_round_trips_through_json():
    for name, preset in PRESETS.items():
        assert preset.config.preset == name
        assert from_dict(to_dict(preset.config)) == preset.config


def test_unknown_preset_lists_the_valid_names():
    with pytest.raises(UnknownNameError) as error:
        get_preset("part3")
    assert "quickstart" in str(error.value) and "part1" in str(error.value)


def test_probe_bundles_expand_and_divergence_gets_its_own_schedule():
    from normlab.errors import UnknownNameError
    from normlab.experiments.runner import build_probes

    config = apply_overrides(default_config(), ["probes=standard,divergence,activations", "probe_every=7",
                                                "divergence_steps=0,2"])
    probes = build_probes(config)
    assert [p.name for p in probes] == ["activations", "gradients", "distance", "ics", "landscape", "divergence"]
    schedules = {p.name: p.schedule for p in probes}
    assert schedules["ics"](14) and not schedules["ics"](2)
    assert schedules["divergence"](2) and not schedules["divergence"](14)
    with pytest.raises(UnknownNameError, match="standard"):
        build_probes(apply_overrides(default_config(), ["probes=activations,everything"]))


def test_config_files_of_older_runs_load_with_renamed_settings():
    """``normalize`` was the input normalization's name before ``input_normalization``."""
    stored = to_dict(default_config()) | {"dataset": "mnist"}
    stored["normalize"] = stored.pop("input_normalization")
    stored["normalize"] = "unit"
    assert from_dict(stored) == apply_overrides(default_config(), ["dataset=mnist", "input_normalization=unit"])
