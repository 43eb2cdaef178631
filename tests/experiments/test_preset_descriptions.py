"""A preset's description: its purpose, then the settings it changes, generated from its config."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from normlab.experiments import PRESETS, default_config
from normlab.experiments.config import Config, parse_value
from normlab.experiments.presets import Preset

SETTINGS_MARK = ". Settings (all sizes, before the size's own): "


def described_settings(preset: Preset) -> dict[str, object]:
    """The description's settings part parsed back as ``--set`` would parse it."""
    purpose, mark, settings = preset.description.partition(SETTINGS_MARK)
    assert mark and purpose == preset.purpose
    if settings == "the defaults":
        return {}
    pairs = [item.split("=", 1) for item in settings.split(" ")]
    return {key: parse_value(key, text) for key, text in pairs}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_description_names_exactly_the_fields_that_differ_from_the_default_config(name):
    preset = PRESETS[name]
    default = default_config()
    differing = {f.name: getattr(preset.config, f.name) for f in fields(Config)
                 if getattr(preset.config, f.name) != getattr(default, f.name)}
    differing.pop("preset")  # the preset's name is its label, not one of its settings
    # A probe's options are described one by one, by their --set keys <probe>.<option>.
    differing |= dict(differing.pop("probe_options", ()))
    assert described_settings(preset) == differing  # same keys, and each value reads back as the config's


def test_description_follows_the_config_not_a_text():
    """A preset changed in one setting is described with that setting and no other."""
    plain = Preset("plain", "a purpose", replace(default_config(), preset="plain"))
    assert plain.description.endswith(SETTINGS_MARK + "the defaults")
    assert described_settings(plain) == {}
    changed = replace(plain, config=replace(plain.config, lr=0.25, networks=("batch", "l2"), full_batch=True))
    assert described_settings(changed) == {"networks": ("batch", "l2"), "lr": 0.25, "full_batch": True}
    assert list(changed.settings) == ["networks", "lr", "full_batch"]  # in the config's field order


def test_description_names_a_probe_option_by_its_set_key():
    plain = Preset("plain", "a purpose", replace(default_config(), preset="plain"))
    changed = replace(plain, config=replace(plain.config, probes=("hessian_top",),
                                            probe_options={"hessian_top.k": 3, "hessian_top.method": "lanczos"}))
    assert described_settings(changed) == {"probes": ("hessian_top",), "hessian_top.k": 3}  # not the default
