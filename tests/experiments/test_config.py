"""Typed overrides and presets."""

from __future__ import annotations

import json

import pytest

from normlab.errors import NormlabError, UnknownNameError
from normlab.experiments import PRESETS, apply_overrides, default_config, get_preset
from normlab.experiments.config import (
    changed_settings,
    from_dict,
    parse_value,
    probe_option,
    probe_option_meanings,
    probe_option_values,
    to_dict,
)


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
        # a probe's options, <probe>.<option>, and the old flat names of them
        ("hessain_top.k=3", "unknown setting 'hessain_top.k': no probe 'hessain_top'; probes: activations,"),
        ("hessian_top.kk=3", "unknown setting 'hessian_top.kk'; probe 'hessian_top' has the options k, method,"),
        ("distance.bins=3", "probe 'distance' has the options (none)"),
        ("hessian_top.schedule=3", "has the options k, method"),
        ("landscape.points=3", "setting 'landscape.points' is set for several probes at once: set 'landscape_points'"),
        ("activations.bn_mode=eval", "set 'probe_bn_mode'"),
        ("hessian_top.k=three", "setting 'hessian_top.k' expects int, got 'three'"),
        ("hessian_top.k=0", "setting 'hessian_top.k' must be >= 1; got 0"),
        ("hessian_top.method=newton", "setting 'hessian_top.method' must be one of lanczos, power; got 'newton'"),
        ("ics.strategy=vmap", "setting 'ics.strategy' must be one of unrolled, map; got 'vmap'"),
        ("activations.value_range=inf", "setting 'activations.value_range' must be a finite number > 0; got inf"),
        ("divergence.high=1e-6", "setting 'divergence.high' must be a finite number > low = 1e-05; got 1e-06"),
        ("hist_bins=0", "setting 'activations.bins' must be >= 1; got 0"),
        ("gradients.tracked_index=99999999999", "setting 'gradients.tracked_index' must be at most 2147483647"),
        ("divergence_range=0.1", "setting 'divergence_range' expects two numbers low,high; got (0.1,)"),
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


# ------------------------------------------------------------------------------- probe options


def test_probe_options_are_set_by_probe_and_field_typed_by_the_field():
    config = apply_overrides(default_config(), ["hessian_top.k=3", "bn_parameters.bins=20", "ics.strategy=map",
                                                "activations.value_range=2", "hessian_top.method=power"])
    assert probe_option(config, "hessian_top.k") == 3 and probe_option(config, "bn_parameters.bins") == 20
    assert probe_option(config, "activations.value_range") == 2.0
    assert isinstance(probe_option(config, "activations.value_range"), float)
    assert probe_option(config, "activations.bins") == 60  # unset: the probe's own default
    assert changed_settings(config, default_config()) == {
        "activations.value_range": 2.0, "bn_parameters.bins": 20, "hessian_top.k": 3, "hessian_top.method": "power",
        "ics.strategy": "map"}


def test_every_option_of_every_probe_can_be_set_and_says_what_it_means():
    from normlab.probes import probe_names

    for probe in probe_names():
        for option, default in probe_option_values(default_config(), probe).items():
            key = f"{probe}.{option}"
            changed = {bool: lambda v: not v, int: lambda v: v + 1, float: lambda v: v * 1.5, str: lambda v: v}
            text = str(changed[type(default)](default))
            config = apply_overrides(default_config(), [f"{key}={text}"])
            assert probe_option(config, key) == parse_value(key, text), key
            assert probe_option_meanings(probe)[option], f"{key} has no comment at its field"


def test_probe_options_round_trip_through_config_json():
    config = apply_overrides(default_config(), ["probes=cheap,curvature", "hessian_top.k=3", "divergence.high=0.5"])
    stored = to_dict(config)
    assert stored["hessian_top.k"] == 3 and stored["hessian_trace.vectors"] == 10  # the config's probes, all options
    assert stored["divergence.high"] == 0.5  # set for a probe the config does not run: kept
    assert "probe_options" not in stored and "bins" not in stored
    assert json.loads(json.dumps(stored)) == stored
    assert from_dict(stored) == config
    assert config.probe_options == (("divergence.high", 0.5), ("hessian_top.k", 3))  # defaults are not kept




OLD_SPELLINGS = {  # each setting as runs before the per-probe options wrote it -> today's key and value
    "hist_bins": (30, "activations.bins", 30),
    "hist_range": (6.0, "activations.value_range", 6.0),
    "tracked_layer": (0, "activations.tracked_layer", 0),
    "tracked_unit": (2, "activations.tracked_unit", 2),
    "tracked_param_layer": (1, "gradients.tracked_layer", 1),
    "tracked_param_index": (7, "gradients.tracked_index", 7),
    "ics_strategy": ("map", "ics.strategy", "map"),
    "divergence_points": (5, "divergence.points", 5),
    "hessian_k": (4, "hessian_top.k", 4),
    "hessian_method": ("power", "hessian_top.method", "power"),
    "power_iterations": (9, "hessian_top.power_iterations", 9),
    "hutchinson_vectors": (3, "hessian_trace.vectors", 3),
    "slq_starts": (4, "hessian_density.starts", 4),
    "concentration_k": (5, "gradient_concentration.k", 5),
}


def test_config_files_of_older_runs_load_with_the_old_probe_settings():
    stored = {key: value for key, value in to_dict(default_config()).items() if "." not in key}
    stored |= {old: value for old, (value, _new, _same) in OLD_SPELLINGS.items()} | {"divergence_range": [1e-4, 0.2]}
    config = from_dict(stored)
    for old, (_value, new, expected) in OLD_SPELLINGS.items():
        assert probe_option(config, new) == expected, old
    assert (probe_option(config, "divergence.low"), probe_option(config, "divergence.high")) == (1e-4, 0.2)
    unchanged = {key: value for key, value in to_dict(default_config()).items() if "." not in key} | {
        "hist_bins": 60, "divergence_range": [1e-5, 0.1]}  # an old default config: today's default config
    assert from_dict(unchanged) == default_config()


@pytest.mark.parametrize("old", sorted(OLD_SPELLINGS))
def test_old_set_spellings_set_the_renamed_option(old):
    value, new, expected = OLD_SPELLINGS[old]
    config = apply_overrides(default_config(), [f"{old}={value}"])
    assert config == apply_overrides(default_config(), [f"{new}={value}"])
    assert probe_option(config, new) == expected


def test_old_divergence_range_sets_both_ends():
    config = apply_overrides(default_config(), ["divergence_range=1e-4,0.2"])
    assert dict(config.probe_options) == {"divergence.low": 1e-4, "divergence.high": 0.2}


def test_format_value_is_read_back_by_parse_value():
    from normlab.store import format_value

    config = apply_overrides(default_config(), ["networks=none,batch,noisy", "lr=0.125", "augment=true",
                                                "landscape_range=0.01,30", "activations.value_range=2.5"])
    for key, value in changed_settings(config, default_config()).items():
        assert parse_value(key, format_value(value)) == value, key
