"""Typed experiment configuration and ``--set key=value`` overrides.

A ``Config`` is a frozen dataclass holding every choice a run makes; presets are
``with_settings(default_config(), ...)`` and the resolved config is written into every run
directory, so a run can always say exactly what it did. Overrides are parsed against the field
types: an unknown key or a badly typed value raises a one-line ``NormlabError`` naming the key and
what is allowed.

Probe options. Every field of a probe's dataclass is a setting ``<probe>.<field>`` (``--set
hessian_top.k=3``, typed by the field's annotation, explained by its comment), except the
schedule, the name, and the fields that ``SHARED_PROBE_SETTINGS`` sets for several probes at once
with one flat setting (``probe_bn_mode``, the walk probes' grid, the curvature probes' Lanczos
run). A ``Config`` keeps the ones that differ from the probe's default in ``probe_options``;
``settings(config)`` and config.json list every option of the config's probes by its key.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from normlab.errors import NormlabError


@dataclass(frozen=True)
class Config:
    """Every setting of a run; `normlab config PRESET` lists them with their values and types."""

    preset: str = "custom"  # name of the preset this config came from
    size: str = ""  # the preset's size it was made at (tiny, small, paper: chosen with --size); "" = a custom config
    # --- data
    dataset: str = "digits"  # a name from `normlab list` (datasets)
    input_normalization: str = ""  # of the input images; "" = the dataset's conventional one
    augment: bool = False  # CIFAR-10 random crop (pad 4) + horizontal flip
    # --- models: one network per entry of `networks`; the first is the baseline
    model: str = "mlp"  # a name from `normlab list` (models)
    networks: tuple[str, ...] = ("none", "batch")  # norm of each network, built from one seed
    width: float = 1.0  # width multiplier (vgg, mlp)
    init_std: float = 0.0  # std of ioffe_mlp's Gaussian kernel init N(0, init_std^2); 0 = the model's default (0.01)
    depth: int = 0  # dln: number of linear layers k; 0 = the model's default (25)
    activation: str = ""  # "" = the model's own (relu for mlp/vgg, sigmoid for lenet/ioffe_mlp)
    bias_before_norm: bool = True  # False removes the bias of the layer before a norm (d2l ex. 1)
    bias_removed_from: str = "all"  # with bias_before_norm=false, from which layers: "all", "dense" or "conv"
    norm_exclude: tuple[int, ...] = ()  # hidden layers that get no norm (d2l ex. 3)
    norm_position: str = "before_activation"  # where each norm sits: "before_activation" or "after_activation"
    dropout: float = 0.0  # dropout rate after each hidden layer's activation; 0 = no dropout
    conv_path: str = "auto"  # "auto", "xla" (lax.conv_general_dilated), "im2col", "shifted" or "onednn"
    # "isolated": each network's step compiled on its own, so its trajectory is bit-identical alone or
    # in any group; "fused": one compiled step for the whole group (faster for small nets, but XLA
    # may then round a network's arithmetic differently depending on which networks share its group)
    group_step: str = "isolated"
    # True: compile without XLA's CPU code optimizations: faster to compile, slower to run; for short
    # runs, where compiling is most of the time (the tiny size)
    fast_compile: bool = False
    bn_momentum: float = 0.99  # running average: ra = m*ra + (1-m)*batch (Flax convention)
    bn_running_var: str = "biased"  # "biased" (Flax) or "unbiased" (PyTorch, BN15 inference)
    # --- optimization
    optimizer: str = "adam"  # "sgd", "momentum" or "adam"
    lr: float = 1e-3  # learning rate (the peak of a schedule)
    momentum: float = 0.9  # for optimizer="momentum"
    lr_schedule: str = "constant"  # "constant", "cosine", "step" (x0.1 at 50% and 75%), "warmup_cosine"
    weight_decay: float = 0.0  # L2 penalty added to the gradient (decoupled for adam: adamw); 0 = none
    batch_size: int = 32  # examples per training step (ignored with full_batch)
    epochs: int = 1  # passes over the training split; used only when steps = 0
    steps: int = 0  # > 0: train exactly this many steps and ignore epochs; 0 = epochs x steps per epoch
    full_batch: bool = False  # every step sees the whole training split (the DLN study)
    train_subset: int = 0  # > 0: train on the first N training examples only (C21's small subsets); 0 = all
    seed: int = 0  # model initialization (both networks share it)
    data_seed: int = 0  # batch order and augmentation
    # --- evaluation and storage
    # steps between evaluations (test split and train_eval_size training examples, eval mode), always also at
    # step 0 and the last step; 0 = once per epoch (with full_batch: at the end only)
    eval_every: int = 0
    train_eval_size: int = 2000  # training examples evaluated (eval mode) at each evaluation
    log_every: int = 50  # steps between reading metrics back from the device (and updating the progress line)
    checkpoint_every: int = 0  # steps between checkpoints (for --resume); 0 = at every evaluation
    # > 0: before training, time each network's plain training step this many times on the first batch
    # (networks interleaved, after one compiling call; median), recorded in run.json step_seconds; 0 = off
    step_cost_repeats: int = 0
    # --- probes
    probes: tuple[str, ...] = ("activations", "gradients", "distance")  # names or bundles: cheap, standard, full
    probe_every: int = 50  # steps between probe measurements, from step 0; used when probe_points = 0; 0 = never
    # > 0: this many probe measurements spread over the run, step 0 and the last step always among them (at
    # most one per step; replaces probe_every); 0 = use probe_every. Setting probe_every or probe_budget with
    # --set turns it off.
    probe_points: int = 0
    probe_spacing: str = "linear"  # of probe_points: "linear" (even) or "log" (even in log(step + 1): denser early)
    # > 0: probing may cost this fraction of training time; each probe's steps are chosen from its measured
    # cost (replaces probe_points and probe_every); 0 = off
    probe_budget: float = 0.0
    # --- settings of several probes at once (SHARED_PROBE_SETTINGS); a single probe's are probe_options
    probe_bn_mode: str = "train"  # of every probe that measures in a BN mode: "train" (batch statistics) or "eval"
    landscape_points: int = 8  # step sizes of the landscape, predictiveness and beta_smoothness probes
    landscape_range: tuple[float, ...] = (0.5, 4.0)  # their step sizes as multiples of lr
    landscape_spacing: str = "linear"  # of their step sizes: "linear" or "log"
    landscape_batching: str = "auto"  # their step sizes: "auto", "unrolled", "map" or "vmap" (no vmap for convs on CPU)
    divergence_steps: tuple[int, ...] = (0, 1, 2, 3, 4)  # steps the divergence probe measures (B18: the first few)
    lanczos_steps: int = 20  # Lanczos steps m of the curvature probes (one run shared by all of them)
    curvature_per_layer: bool = False  # hessian_top / hessian_trace: also each layer's diagonal block
    # one probe's options that differ from its default: (("<probe>.<option>", value), ...), sorted; set with
    # --set <probe>.<option>=value (`normlab config` lists those of the config's probes)
    probe_options: tuple[tuple[str, Any], ...] = ()
    # --- output
    report: bool = True  # write figures and report.html at the end of the run

    def __post_init__(self):
        # One spelling of the same options (sorted, the probes' defaults left out): equal configs compare equal.
        if self.probe_options:
            object.__setattr__(self, "probe_options", normalized_probe_options(dict(self.probe_options)))


def default_config() -> Config:
    return Config()


# The sizes every preset comes in (``experiments.presets``): tiny = seconds on generated data of the
# real shapes (what the test suite runs), small = minutes on a laptop's CPU, paper = the paper's setting.
SIZES = ("tiny", "small", "paper")


# ------------------------------------------------------------------------------- probe options

WALK_PROBES = ("landscape", "predictiveness", "beta_smoothness")
CURVATURE_PROBES = ("hessian_top", "hessian_trace", "hessian_density", "gradient_concentration")

# The flat settings that set a field of several probes at once, one value for all of them:
# setting -> (probes, field); probes () = every probe that has the field; a pair of fields takes a
# pair of values. Every other field of a probe, but its schedule and name, is its own option
# ``<probe>.<field>``. Checked against every probe's fields by tests/experiments/test_runner.py.
SHARED_PROBE_SETTINGS: dict[str, tuple[tuple[str, ...], str | tuple[str, str]]] = {
    "probe_bn_mode": ((), "bn_mode"),  # every probe that measures in a BN mode
    # One grid for the walk probes: what lets them share a single gradient walk in the compiled step.
    "landscape_points": (WALK_PROBES, "points"),
    "landscape_range": (WALK_PROBES, ("low", "high")),
    "landscape_spacing": (WALK_PROBES, "spacing"),
    "landscape_batching": (WALK_PROBES, "batching"),
    # One Lanczos run per step for the curvature probes: shared when BN mode, steps and seed agree.
    "lanczos_steps": (CURVATURE_PROBES, "lanczos_steps"),
    "seed": (CURVATURE_PROBES, "seed"),
    "curvature_per_layer": ((), "per_layer"),  # hessian_top and hessian_trace
}
NOT_PROBE_OPTIONS = ("schedule", "name")  # the schedule comes from probe_every / probe_points / probe_budget


def _probe_class(probe: str) -> type:
    from normlab.probes import PROBES_REGISTRY  # on demand: JAX is imported only when probes are asked about

    return PROBES_REGISTRY.factory(probe)  # type: ignore[return-value]


def _declared_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def shared_probe_fields(probe: str) -> dict[str, str]:
    """Field of ``probe`` -> the flat setting (``SHARED_PROBE_SETTINGS``) that sets it."""
    declared = _declared_types(_probe_class(probe))
    shared = {}
    for setting, (probes, targets) in SHARED_PROBE_SETTINGS.items():
        if probes and probe not in probes:
            continue
        for target in targets if isinstance(targets, tuple) else (targets,):
            if target in declared:
                shared[target] = setting
    return shared


@functools.cache
def probe_option_types(probe: str) -> dict[str, Any]:
    """The options of ``probe`` (``<probe>.<option>`` settings) and their types, in field order."""
    shared = shared_probe_fields(probe)
    return {name: tp for name, tp in _declared_types(_probe_class(probe)).items()
            if name not in NOT_PROBE_OPTIONS and name not in shared}


@functools.cache
def probe_option_defaults(probe: str) -> dict[str, Any]:
    from normlab.probes import probe_options

    defaults = probe_options(probe)
    return {name: defaults[name] for name in probe_option_types(probe)}


def probe_option_meanings(probe: str) -> dict[str, str]:
    """Option of ``probe`` -> its meaning: the comments at its field (in the class that declares it)."""
    meanings: dict[str, str] = {}
    for cls in reversed(_probe_class(probe).__mro__):  # a subclass's own comment wins
        if dataclasses.is_dataclass(cls) and cls is not object:
            meanings.update({k: v for k, v in declared_meanings(cls).items() if v})
    return {option: meanings.get(option, "") for option in probe_option_types(probe)}


def split_probe_option(key: str) -> tuple[str, str]:
    """``"<probe>.<option>"`` -> ``(probe, option)``; an unknown probe or option is a one-line error
    naming what is allowed."""
    from normlab.probes import probe_names

    probe, _dot, option = key.partition(".")
    if probe not in probe_names():
        raise NormlabError(f"unknown setting {key!r}: no probe {probe!r}; probes: {', '.join(probe_names())}")
    types = probe_option_types(probe)
    if option not in types:
        shared = shared_probe_fields(probe)
        if option in shared:
            raise NormlabError(f"setting {key!r} is set for several probes at once: set {shared[option]!r}")
        raise NormlabError(f"unknown setting {key!r}; probe {probe!r} has the options {', '.join(types) or '(none)'}")
    return probe, option


def _typed_option(key: str, value) -> Any:
    """``value`` of option ``key`` as its field's type (an int is a float where one is expected)."""
    probe, option = split_probe_option(key)
    tp = probe_option_types(probe)[option]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, tp) or (tp is not bool and isinstance(value, bool)):
        raise NormlabError(f"setting {key!r} expects {_type_name(tp)}, got {value!r}")
    return value


def normalized_probe_options(options: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """``options`` ({"<probe>.<option>": value}) typed and sorted, those at the probe's default left out."""
    typed = {key: _typed_option(key, value) for key, value in options.items()}
    return tuple(sorted((key, value) for key, value in typed.items()
                        if value != probe_option_defaults(key.partition(".")[0])[key.partition(".")[2]]))


def probe_option(config: Config, key: str) -> Any:
    """The value of option ``key`` ("<probe>.<option>") in ``config``: set, or the probe's default."""
    probe, option = split_probe_option(key)
    return dict(config.probe_options).get(key, probe_option_defaults(probe)[option])


def probe_option_values(config: Config, probe: str) -> dict[str, Any]:
    """Every option of ``probe`` (its fields but schedule, name and the shared ones) in ``config``."""
    return {option: probe_option(config, f"{probe}.{option}") for option in probe_option_types(probe)}


def probe_option_settings(config: Config) -> dict[str, Any]:
    """``{"<probe>.<option>": value}`` of every option of the config's probes, then any option set
    for a probe it does not run."""
    from normlab.probes import expand_bundles

    listed = {f"{probe}.{option}": value for probe in expand_bundles(config.probes)
              for option, value in probe_option_values(config, probe).items()}
    return listed | {key: value for key, value in config.probe_options if key not in listed}


# ------------------------------------------------------------------------------------ overrides


def _type_name(annotation) -> str:
    if typing.get_origin(annotation) is tuple:
        (inner, _ellipsis) = typing.get_args(annotation)
        return f"comma-separated {inner.__name__}s"
    return annotation.__name__


def _field_types() -> dict[str, Any]:
    """The flat settings (every field but ``probe_options``) and their types."""
    return {name: tp for name, tp in _declared_types(Config).items() if name != "probe_options"}


def allowed_keys() -> dict[str, str]:
    """Flat key -> human-readable type, for help texts and error messages."""
    return {name: _type_name(tp) for name, tp in _field_types().items()}


def probe_option_type_names(probe: str) -> dict[str, str]:
    """Option of ``probe`` -> human-readable type."""
    return {option: _type_name(tp) for option, tp in probe_option_types(probe).items()}


def declared_meanings(cls) -> dict[str, str]:
    """Field of the dataclass ``cls`` -> its meaning: the comment block right above the field in the
    class's source and the comment on its own line, joined ("" if it has none). One source for help
    texts: a setting is explained where it is declared. Section headers (``# --- data``) belong to
    no field."""
    import inspect
    import io
    import re
    import tokenize

    source = inspect.getsource(cls)
    comment_on_line = {token.start[0]: token.string.lstrip("#").strip()
                       for token in tokenize.generate_tokens(io.StringIO(source).readline)
                       if token.type == tokenize.COMMENT}
    names = {f.name for f in fields(cls)}
    meanings: dict[str, str] = {}
    block: list[str] = []
    for number, line in enumerate(source.splitlines(), 1):
        declared = re.match(r"    (\w+)\s*:", line)
        if declared and declared.group(1) in names:
            inline = comment_on_line.get(number, "")
            meanings[declared.group(1)] = " ".join(block + ([inline] if inline else []))
            block = []
        elif line.strip().startswith("#") and not line.strip().startswith("# ---"):
            block.append(comment_on_line.get(number, ""))
        else:
            block = []
    return meanings


def setting_meanings() -> dict[str, str]:
    """Setting (a field of ``Config``) -> its meaning (``declared_meanings``)."""
    return declared_meanings(Config)


def _parse_scalar(text: str, tp: type):
    if tp is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(text)
    if tp is int:
        return int(text.replace("_", ""))
    if tp is float:
        return float(text)
    return text.strip()


def _setting_type(key: str):
    """The type of setting ``key``: a flat field, a probe option, or an old spelling of either."""
    renamed = RENAMED_SETTINGS.get(key, key)
    if isinstance(renamed, tuple):  # an old pair setting (low,high) of two options
        (probe, option) = split_probe_option(renamed[0])
        pair: Any = tuple
        return pair[probe_option_types(probe)[option], ...]
    if "." in renamed:
        probe, option = split_probe_option(renamed)
        return probe_option_types(probe)[option]
    types_by_key = _field_types()
    if renamed not in types_by_key:
        allowed = ", ".join(f"{k} ({t})" for k, t in allowed_keys().items())
        raise NormlabError(f"unknown setting {key!r}; allowed keys: {allowed}; and <probe>.<option> "
                           "(`normlab config PRESET` lists those of its probes)")
    return types_by_key[renamed]


def parse_value(key: str, text: str):
    """Parse ``text`` as the type of setting ``key`` (a field of ``Config`` or ``<probe>.<option>``);
    the inverse of ``normlab.store.format_value``."""
    tp = _setting_type(key)
    try:
        if typing.get_origin(tp) is tuple:
            (inner, _ellipsis) = typing.get_args(tp)
            items = [item for item in text.split(",") if item.strip()]
            return tuple(_parse_scalar(item, inner) for item in items)
        return _parse_scalar(text, tp)
    except ValueError:
        raise NormlabError(
            f"setting {key!r} expects {_type_name(tp)}, got {text!r}"
        ) from None


def with_settings(config: Config, changes: Mapping[str, Any]) -> Config:
    """``config`` with ``changes`` ({setting: value}; probe options as ``"<probe>.<option>"``, old
    spellings read as ``RENAMED_SETTINGS`` says), not validated."""
    flat: dict[str, Any] = {}
    options = dict(config.probe_options)
    for key, value in changes.items():
        for new_key, new_value in renamed_setting(key, value).items():
            if "." in new_key:
                options[new_key] = new_value
            elif new_key in _field_types() or new_key == "probe_options":
                flat[new_key] = new_value
            else:
                _setting_type(new_key)  # the one-line error of an unknown setting
    if "probe_options" in flat:
        options |= dict(flat.pop("probe_options"))
    return replace(config, **flat, probe_options=tuple(options.items()))


def apply_overrides(config: Config, assignments: list[str]) -> Config:
    """Apply ``["key=value", ...]`` to ``config``; the result is validated."""
    changes = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep:
            raise NormlabError(f"--set expects key=value, got {assignment!r}")
        if key.strip() == "preset":  # the preset's name labels the run: it comes from the chosen preset
            raise NormlabError("setting 'preset' cannot be set; choose a preset by name: normlab run PRESET")
        if key.strip() == "size":  # a size is a set of overrides, not a label: it comes from --size
            raise NormlabError("setting 'size' cannot be set; choose a size with --size (e.g. --size tiny)")
        changes[key.strip()] = parse_value(key.strip(), text)
    return validate(with_settings(config, schedule_consistent(changes)))


def schedule_consistent(changes: dict) -> dict:
    """``changes`` plus ``probe_points=0`` when they state the probe schedule another way.

    probe_points, probe_every and probe_budget are three ways to state one schedule, and the one
    stated last wins: a preset measuring at ``probe_points`` switches to ``probe_every`` (or to a
    budget) when an override names that and not ``probe_points``.
    """
    if "probe_points" not in changes and ("probe_every" in changes or "probe_budget" in changes):
        return changes | {"probe_points": 0}
    return changes


def settings(config: Config) -> dict[str, Any]:
    """Every setting of ``config`` by its ``--set`` key, in field order: ``probe_options`` is
    replaced by ``probe_option_settings`` (each option of the config's probes, set or default)."""
    listed: dict[str, Any] = {}
    for f in fields(Config):
        if f.name == "probe_options":
            listed |= probe_option_settings(config)
        else:
            listed[f.name] = getattr(config, f.name)
    return listed


def changed_settings(config: Config, base: Config) -> dict[str, object]:
    """The settings in which ``config`` differs from ``base`` (e.g. its preset), by ``--set`` key."""
    theirs = settings(base)
    return {key: value for key, value in settings(config).items()
            if value != (theirs[key] if key in theirs else probe_option(base, key))}


def choices() -> dict[str, tuple[str, ...]]:
    """The allowed values of the settings with a fixed set, from the stages that own the choices."""
    # Imported here: the config module stays importable without JAX (CLI help, config files).
    from normlab.experiments.compiled import GROUP_STEPS
    from normlab.models import BIAS_REMOVAL_LAYERS, CONV_PATHS, NORM_POSITIONS
    from normlab.norms.batch import RUNNING_VAR_CHOICES
    from normlab.probes.base import BN_MODES, PROBE_SPACINGS
    from normlab.probes.landscape import BATCHINGS, SPACINGS
    from normlab.train import OPTIMIZERS, SCHEDULES

    return {
        "norm_position": tuple(NORM_POSITIONS),
        "bias_removed_from": tuple(BIAS_REMOVAL_LAYERS),
        "conv_path": tuple(CONV_PATHS),
        "group_step": tuple(GROUP_STEPS),
        "bn_running_var": tuple(RUNNING_VAR_CHOICES),
        "optimizer": tuple(OPTIMIZERS),
        "lr_schedule": tuple(SCHEDULES),
        "probe_bn_mode": tuple(BN_MODES),
        "probe_spacing": tuple(PROBE_SPACINGS),
        "landscape_spacing": tuple(SPACINGS),
        "landscape_batching": tuple(BATCHINGS),
    }

_POSITIVE = ("batch_size", "log_every", "landscape_points", "lanczos_steps")
_NON_NEGATIVE = ("epochs", "steps", "eval_every", "checkpoint_every", "step_cost_repeats", "probe_every",
                 "probe_points", "train_eval_size", "probe_budget", "train_subset", "depth")


_INT_LIMIT = 2**31 - 1
MAX_WIDTH = 64
# key -> (lower-bound test, upper-bound test, the allowed range in words); NaN and inf never pass.
_RANGES = {
    "lr": (lambda v: v > 0, lambda v: True, "a finite number > 0"),
    # Wider than MAX_WIDTH x the paper's layers no longer fits in memory (a VGG's 512 channels
    # times 64 are 9 GiB of one conv's weights): refused before any work rather than at the build.
    "width": (lambda v: v > 0, lambda v: v <= MAX_WIDTH, f"in (0, {MAX_WIDTH}]"),
    "init_std": (lambda v: v >= 0, lambda v: True, "a finite number >= 0 (0 = the model's default)"),
    "dropout": (lambda v: v >= 0, lambda v: v < 1, "in [0, 1)"),
    "momentum": (lambda v: v >= 0, lambda v: v < 1, "in [0, 1)"),
    "bn_momentum": (lambda v: v >= 0, lambda v: v <= 1, "in [0, 1] (running average weight of the old value)"),
    "weight_decay": (lambda v: v >= 0, lambda v: True, "a finite number >= 0"),
}


def check_probe_options(config: Config) -> None:
    """Build each probe that has options set, so that the probe checks its own options (ranges,
    choices) before any work; its ``OptionError`` becomes the one-line error of the setting."""
    from normlab.probes.base import OptionError

    for probe in dict.fromkeys(key.partition(".")[0] for key, _value in config.probe_options):
        try:
            _probe_class(probe)(**probe_option_values(config, probe))
        except OptionError as error:
            raise NormlabError(f"setting '{probe}.{error.option}' {error.requirement}") from None


def validate(config: Config) -> Config:
    """Check value ranges and choices; names of datasets/models/norms are checked when used."""
    for key, allowed in choices().items():
        value = getattr(config, key)
        if value not in allowed:
            raise NormlabError(f"setting {key!r} must be one of {', '.join(allowed)}; got {value!r}")
    for key in _POSITIVE:
        if getattr(config, key) <= 0:
            raise NormlabError(f"setting {key!r} must be > 0; got {getattr(config, key)}")
    for key in _NON_NEGATIVE:
        if getattr(config, key) < 0:
            raise NormlabError(f"setting {key!r} must be >= 0; got {getattr(config, key)}")
    if config.epochs == 0 and config.steps == 0:
        raise NormlabError("set epochs > 0 or steps > 0")
    if config.probe_points == 1:
        raise NormlabError("setting 'probe_points' must be 0 (use probe_every) or at least 2 (step 0 and the "
                           "last step are always measured); got 1")
    if config.probe_points > 0 and config.probe_budget > 0:
        raise NormlabError(f"settings 'probe_points' ({config.probe_points}) and 'probe_budget' "
                           f"({config.probe_budget:g}) both choose the probe steps; set one of them to 0")
    if config.size not in ("", *SIZES):
        raise NormlabError(f"setting 'size' must be one of {', '.join(SIZES)} (or empty); got {config.size!r}")
    if not config.networks:
        raise NormlabError("setting 'networks' needs at least one norm name")
    if len(set(config.networks)) != len(config.networks):
        raise NormlabError(f"setting 'networks' has a repeated name: {','.join(config.networks)}")
    for key, (low, high, meaning) in _RANGES.items():
        value = getattr(config, key)
        if not (math.isfinite(value) and low(value) and high(value)):
            raise NormlabError(f"setting {key!r} must be {meaning}; got {value}")
    flat = {key: getattr(config, key) for key in _field_types()} | dict(config.probe_options)
    for key, setting in flat.items():  # step counters and seeds are int32 inside compiled code
        for value in setting if isinstance(setting, tuple) else (setting,):
            if isinstance(value, int) and not isinstance(value, bool) and not -_INT_LIMIT <= value <= _INT_LIMIT:
                raise NormlabError(f"setting {key!r} must be at most {_INT_LIMIT} in size; got {value}")
    for key in ("seed", "data_seed"):
        if getattr(config, key) < 0:
            raise NormlabError(f"setting {key!r} must be >= 0; got {getattr(config, key)}")
    if not all(math.isfinite(v) for v in config.landscape_range):
        raise NormlabError("setting 'landscape_range' must be finite numbers")
    if len(config.landscape_range) != 2 or not 0 < config.landscape_range[0] < config.landscape_range[1]:
        raise NormlabError(
            f"setting 'landscape_range' expects two numbers 0 < low < high; got {config.landscape_range}"
        )
    check_probe_options(config)
    if config.conv_path == "onednn":  # forced: refuse before any work when it cannot run here
        from normlab.models import onednn
        onednn.require()
    return config




def to_dict(config: Config) -> dict:
    """JSON-able dict of ``settings(config)`` (tuples become lists): what config.json holds."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in settings(config).items()}


# Settings renamed since runs were first written: old key -> new key, or the pair of keys an old
# (low, high) setting became. Old config.json files load and old ``--set`` spellings work.
RENAMED_SETTINGS: dict[str, str | tuple[str, str]] = {
    "normalize": "input_normalization",
    "hist_bins": "activations.bins",
    "hist_range": "activations.value_range",
    "tracked_layer": "activations.tracked_layer",
    "tracked_unit": "activations.tracked_unit",
    "tracked_param_layer": "gradients.tracked_layer",
    "tracked_param_index": "gradients.tracked_index",
    "ics_strategy": "ics.strategy",
    "divergence_points": "divergence.points",
    "divergence_range": ("divergence.low", "divergence.high"),
    "hessian_k": "hessian_top.k",
    "hessian_method": "hessian_top.method",
    "power_iterations": "hessian_top.power_iterations",
    "hutchinson_vectors": "hessian_trace.vectors",
    "slq_starts": "hessian_density.starts",
    "concentration_k": "gradient_concentration.k",
}


def current_setting_key(key: str) -> str:
    """``key`` in today's spelling (``RENAMED_SETTINGS``); an old pair setting, which became two
    settings, keeps its key (``renamed_setting`` splits its value)."""
    renamed = RENAMED_SETTINGS.get(key, key)
    return renamed if isinstance(renamed, str) else key


def renamed_setting(key: str, value) -> dict[str, Any]:
    """``{key: value}`` in today's spelling (``RENAMED_SETTINGS``); an old pair setting gives two."""
    renamed = RENAMED_SETTINGS.get(key, key)
    if not isinstance(renamed, tuple):
        return {renamed: value}
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise NormlabError(f"setting {key!r} expects two numbers low,high; got {value!r}")
    return dict(zip(renamed, value))


def from_dict(data: dict) -> Config:
    """Inverse of ``to_dict``; unknown keys are an error (a run from a newer normlab)."""
    types_by_key = _field_types()
    values: dict[str, Any] = {}
    options: dict[str, Any] = {}
    unknown = []
    for old_key, old_value in data.items():
        for key, value in renamed_setting(old_key, old_value).items():
            if "." in key:
                options[key] = value
            elif key not in types_by_key:
                unknown.append(key)
            else:
                values[key] = tuple(value) if typing.get_origin(types_by_key[key]) is tuple else value
    if unknown:
        raise NormlabError(f"config has unknown settings: {', '.join(sorted(unknown))}")
    return validate(Config(**values, probe_options=tuple(options.items())))
