"""Experiments: typed configs, named presets and the runner that ties the stages together."""

from normlab.experiments.config import Config, apply_overrides, default_config
from normlab.experiments.presets import DEFAULT_PRESET, PRESETS, Preset, get_preset, preset_config
from normlab.experiments.runner import RunResult, resume_experiment, run_experiment

__all__ = [
    "Config",
    "DEFAULT_PRESET",
    "PRESETS",
    "Preset",
    "RunResult",
    "apply_overrides",
    "default_config",
    "get_preset",
    "preset_config",
    "resume_experiment",
    "run_experiment",
]
