"""Command-line conventions: --version, describe's default input, help texts that explain."""

from __future__ import annotations

import argparse
from dataclasses import fields

import pytest

import normlab
from normlab.cli import build_parser, main
from normlab.experiments.config import Config, allowed_keys, probe_option_types, setting_meanings
from normlab.models import DEFAULT_INPUTS, model_names
from normlab.probes import probe_names


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"normlab {normlab.__version__}"


def test_describe_without_dataset_uses_the_models_own_input(capsys):
    assert set(DEFAULT_INPUTS) == set(model_names())
    for model in model_names():
        assert main(["describe", model]) == 0
        default = capsys.readouterr().out
        assert main(["describe", model, "--dataset", DEFAULT_INPUTS[model]]) == 0
        assert capsys.readouterr().out == default and "params" in default
    assert main(["describe", "mlp", "--dataset", "digits"]) == 0  # an explicit dataset still wins
    assert capsys.readouterr().out.splitlines()[2].split()[:2] == ["input", "8x8x1"]


def test_setting_meanings_are_the_config_comments():
    meanings = setting_meanings()
    assert list(meanings) == [f.name for f in fields(Config)]
    assert meanings["width"] == "width multiplier (vgg, mlp)"
    assert meanings["seed"] == "model initialization (both networks share it)"


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from _subparsers(sub)


def test_every_subcommand_explains_its_arguments_and_settings():
    meanings, types = setting_meanings(), allowed_keys()
    for name, sub in _subparsers(build_parser()):
        for action in sub._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"`normlab {name}` argument {action.dest} has no help"
        if name in ("run", "sweep", "config"):
            settings_part, _mark, options_part = sub.format_help().split("settings (--set KEY=VALUE")[1].partition(
                "\n\nprobe options (--set PROBE.OPTION=VALUE")
            settings = settings_part.splitlines()[1:]
            assert len(settings) == len(types)
            for key, type_name in types.items():
                line = next(line for line in settings if line.split()[:1] == [key])
                assert type_name in line and meanings[key] in line, line
            listed = {line.split()[0]: line.split(None, 1)[1] for line in options_part.splitlines()[1:]}
            assert listed == {probe: ", ".join(probe_option_types(probe)) for probe in probe_names()
                              if probe_option_types(probe)}
