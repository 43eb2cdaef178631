"""A preset's description: its purpose, then the settings one size runs, generated from its config
and that size's overrides."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from normlab.experiments import PRESETS, default_config
from normlab.experiments.config import SIZES, Config, parse_value
from normlab.experiments.presets import Preset


def described_settings(preset: Preset, size: str | None = None) -> dict[str, object]:
    """The description's settings part (at ``size``) parsed back as ``--set`` would parse it."""
    shown = preset.default_size if size is None else size
    purpose, mark, settings = preset.description(size).partition(f". Settings at size {shown}: ")
    assert mark and purpose == preset.purpose
    if settings == "the defaults":
        return {}
    pairs = [item.split("=", 1) for item in settings.split(" ")]
    return {key: parse_value(key, text) for key, text in pairs}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_description_names_exactly_the_fields_the_size_runs_differently_from_the_default_config(name, size):
    preset = PRESETS[name]
    runs, default = preset.at_size(size), default_config()
    differing = {f.name: getattr(runs, f.name) for f in fields(Config)
                 if getattr(runs, f.name) != getattr(default, f.name)}
    for label in ("preset", "size"):  # the preset's name and size are its labels, not its settings
        differing.pop(label)
    # A probe's options are described one by one, by their --set keys <probe>.<option>.
    differing |= dict(differing.pop("probe_options", ()))
    assert described_settings(preset, size) == differing  # same keys, each value reads back as the size's


def test_description_shows_the_size_not_the_shared_settings():
    """santurkar_vgg shares S18's lr 0.1 and 15,000 steps, but its small size runs lr 0.02 for 800
    steps: the description without a size is the default size's (what `normlab list` prints)."""
    preset = PRESETS["santurkar_vgg"]
    assert preset.config.lr == 0.1
    small = described_settings(preset, "small")
    assert small["lr"] == 0.02 and small["steps"] == 800 and small["dataset"] == "synthetic_cifar"
    assert described_settings(preset) == small
    assert described_settings(preset, "paper")["lr"] == 0.1


def test_description_follows_the_config_not_a_text():
    """A preset changed in one setting is described with that setting and no other."""
    plain = Preset("plain", "a purpose", replace(default_config(), preset="plain"))
    assert plain.description().endswith(". Settings at size small: the defaults")
    assert described_settings(plain) == {}
    changed = replace(plain, config=replace(plain.config, lr=0.25, networks=("batch", "l2"), full_batch=True))
    assert described_settings(changed) == {"networks": ("batch", "l2"), "lr": 0.25, "full_batch": True}
    assert list(changed.settings()) == ["networks", "lr", "full_batch"]  # in the config's field order
    sized = replace(changed, sizes={**changed.sizes, "tiny": {"lr": 0.5, "steps": 3}})
    assert described_settings(sized, "tiny") == {"networks": ("batch", "l2"), "lr": 0.5, "steps": 3,
                                                  "full_batch": True}
    assert described_settings(sized, "small") == described_settings(changed)


def test_description_names_a_probe_option_by_its_set_key():
    plain = Preset("plain", "a purpose", replace(default_config(), preset="plain"))
    changed = replace(plain, config=replace(plain.config, probes=("hessian_top",),
                                            probe_options={"hessian_top.k": 3, "hessian_top.method": "lanczos"}))
    assert described_settings(changed) == {"probes": ("hessian_top",), "hessian_top.k": 3}  # not the default
