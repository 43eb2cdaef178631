"""Typed experiment configuration and ``--set key=value`` overrides.

A ``Config`` is a frozen dataclass holding every choice a run makes; presets are
``dataclasses.replace(default_config(), ...)`` and the resolved config is written into every run
directory, so a run can always say exactly what it did. Overrides are parsed against the field
types: an unknown key or a badly typed value raises a one-line ``NormlabError`` naming the key and
what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, fields, replace

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
    conv_path: str = "auto"  # "auto", "xla" (lax.conv_general_dilated), "im2col" or "shifted"
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
    probe_bn_mode: str = "train"  # "train" (batch statistics) or "eval" (running averages)
    hist_bins: int = 60  # activation histogram bins
    hist_range: float = 5.0  # activation histogram edges: linspace(-r, r, bins + 1)
    tracked_layer: int = -1  # hidden layer whose unit is tracked (BN15 Fig. 1: the last)
    tracked_unit: int = 0  # unit (feature or channel) of tracked_layer whose percentiles are tracked (BN15 Fig. 1)
    tracked_param_layer: int = -1  # weight layer whose kernel entry is tracked (gradients probe)
    tracked_param_index: int = 0  # flat index into that kernel
    landscape_points: int = 8  # step sizes of the landscape/predictiveness probes
    landscape_range: tuple[float, ...] = (0.5, 4.0)  # step sizes as multiples of lr
    landscape_spacing: str = "linear"  # or "log"
    landscape_batching: str = "auto"  # step sizes: "auto", "unrolled", "map" or "vmap" (never vmap conv nets on CPU)
    ics_strategy: str = "unrolled"  # "unrolled" (fastest) or "map" (compile time independent of depth)
    divergence_steps: tuple[int, ...] = (0, 1, 2, 3, 4)  # B18: the first few mini-batches
    divergence_range: tuple[float, ...] = (1e-5, 1e-1)  # absolute step sizes, log grid
    divergence_points: int = 9  # step sizes of the divergence probe (B18)
    lanczos_steps: int = 20  # Lanczos steps m shared by hessian_top, hessian_density, gradient_concentration
    hessian_k: int = 1  # hessian_top: number of largest eigenvalues
    hessian_method: str = "lanczos"  # hessian_top: "lanczos" or "power" (power iteration, largest magnitude)
    power_iterations: int = 20  # hessian_top with hessian_method=power: iterations per eigenvalue
    hutchinson_vectors: int = 10  # hessian_trace: Rademacher vectors
    slq_starts: int = 2  # hessian_density: random starts n_v (start 0 is the shared Lanczos run)
    concentration_k: int = 10  # gradient_concentration: top Ritz vectors spanning the subspace
    curvature_per_layer: bool = False  # hessian_top / hessian_trace: also each layer's diagonal block
    # --- output
    report: bool = True  # write figures and report.html at the end of the run


def default_config() -> Config:
    return Config()


# The sizes every preset comes in (``experiments.presets``): tiny = seconds on generated data of the
# real shapes (what the test suite runs), small = minutes on a laptop's CPU, paper = the paper's setting.
SIZES = ("tiny", "small", "paper")


# ------------------------------------------------------------------------------------ overrides


def _type_name(annotation) -> str:
    if typing.get_origin(annotation) is tuple:
        (inner, _ellipsis) = typing.get_args(annotation)
        return f"comma-separated {inner.__name__}s"
    return annotation.__name__


def _field_types() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in fields(Config)}


def allowed_keys() -> dict[str, str]:
    """Key -> human-readable type, for help texts and error messages."""
    return {name: _type_name(tp) for name, tp in _field_types().items()}


def setting_meanings() -> dict[str, str]:
    """Setting -> its meaning: the comment block right above the setting in ``Config``'s source and
    the comment on its own line, joined ("" if it has none). One source for help texts: a setting is
    explained where it is declared. Section headers (``# --- data``) belong to no setting."""
    import inspect
    import io
    import re
    import tokenize

    source = inspect.getsource(Config)
    comment_on_line = {token.start[0]: token.string.lstrip("#").strip()
                       for token in tokenize.generate_tokens(io.StringIO(source).readline)
                       if token.type == tokenize.COMMENT}
    meanings: dict[str, str] = {}
    block: list[str] = []
    for number, line in enumerate(source.splitlines(), 1):
        declared = re.match(r"    (\w+)\s*:", line)
        if declared:
            inline = comment_on_line.get(number, "")
            meanings[declared.group(1)] = " ".join(block + ([inline] if inline else []))
            block = []
        elif line.strip().startswith("#") and not line.strip().startswith("# ---"):
            block.append(comment_on_line.get(number, ""))
        else:
            block = []
    return meanings


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


def parse_value(key: str, text: str):
    """Parse ``text`` as the type of config field ``key``."""
    types_by_key = _field_types()
    if key not in types_by_key:
        allowed = ", ".join(f"{k} ({t})" for k, t in allowed_keys().items())
        raise NormlabError(f"unknown setting {key!r}; allowed keys: {allowed}")
    tp = types_by_key[key]
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
    return validate(replace(config, **schedule_consistent(changes)))


def schedule_consistent(changes: dict) -> dict:
    """``changes`` plus ``probe_points=0`` when they state the probe schedule another way.

    probe_points, probe_every and probe_budget are three ways to state one schedule, and the one
    stated last wins: a preset measuring at ``probe_points`` switches to ``probe_every`` (or to a
    budget) when an override names that and not ``probe_points``.
    """
    if "probe_points" not in changes and ("probe_every" in changes or "probe_budget" in changes):
        return changes | {"probe_points": 0}
    return changes


def changed_settings(config: Config, base: Config) -> dict[str, object]:
    """The settings in which ``config`` differs from ``base`` (e.g. its preset)."""
    return {
        f.name: getattr(config, f.name)
        for f in fields(Config)
        if getattr(config, f.name) != getattr(base, f.name)
    }


def choices() -> dict[str, tuple[str, ...]]:
    """The allowed values of the settings with a fixed set, from the stages that own the choices."""
    # Imported here: the config module stays importable without JAX (CLI help, config files).
    from normlab.experiments.compiled import GROUP_STEPS
    from normlab.models import BIAS_REMOVAL_LAYERS, CONV_PATHS, NORM_POSITIONS
    from normlab.norms.batch import RUNNING_VAR_CHOICES
    from normlab.probes.base import BN_MODES, PROBE_SPACINGS
    from normlab.probes.curvature import METHODS as HESSIAN_METHODS
    from normlab.probes.ics import STRATEGIES
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
        "ics_strategy": tuple(STRATEGIES),
        "hessian_method": tuple(HESSIAN_METHODS),
    }

_POSITIVE = ("batch_size", "log_every", "hist_bins", "landscape_points", "divergence_points", "lanczos_steps",
             "hessian_k", "power_iterations", "hutchinson_vectors", "slq_starts", "concentration_k")
_NON_NEGATIVE = ("epochs", "steps", "eval_every", "checkpoint_every", "step_cost_repeats", "probe_every",
                 "probe_points", "train_eval_size", "probe_budget", "train_subset", "depth")


_INT_LIMIT = 2**31 - 1
# key -> (lower-bound test, upper-bound test, the allowed range in words); NaN and inf never pass.
_RANGES = {
    "lr": (lambda v: v > 0, lambda v: True, "a finite number > 0"),
    "width": (lambda v: v > 0, lambda v: True, "a finite number > 0"),
    "init_std": (lambda v: v >= 0, lambda v: True, "a finite number >= 0 (0 = the model's default)"),
    "hist_range": (lambda v: v > 0, lambda v: True, "a finite number > 0"),
    "dropout": (lambda v: v >= 0, lambda v: v < 1, "in [0, 1)"),
    "momentum": (lambda v: v >= 0, lambda v: v < 1, "in [0, 1)"),
    "bn_momentum": (lambda v: v >= 0, lambda v: v <= 1, "in [0, 1] (running average weight of the old value)"),
    "weight_decay": (lambda v: v >= 0, lambda v: True, "a finite number >= 0"),
}


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
    for key, tp in _field_types().items():  # step counters and seeds are int32 inside compiled code
        values = getattr(config, key) if typing.get_origin(tp) is tuple else (getattr(config, key),)
        for value in values:
            if isinstance(value, int) and not isinstance(value, bool) and not -_INT_LIMIT <= value <= _INT_LIMIT:
                raise NormlabError(f"setting {key!r} must be at most {_INT_LIMIT} in size; got {value}")
    for key in ("seed", "data_seed"):
        if getattr(config, key) < 0:
            raise NormlabError(f"setting {key!r} must be >= 0; got {getattr(config, key)}")
    if not all(math.isfinite(v) for v in config.landscape_range + config.divergence_range):
        raise NormlabError("settings 'landscape_range' and 'divergence_range' must be finite numbers")
    if len(config.landscape_range) != 2 or not 0 < config.landscape_range[0] < config.landscape_range[1]:
        raise NormlabError(
            f"setting 'landscape_range' expects two numbers 0 < low < high; got {config.landscape_range}"
        )
    if len(config.divergence_range) != 2 or not 0 < config.divergence_range[0] < config.divergence_range[1]:
        raise NormlabError(
            f"setting 'divergence_range' expects two numbers 0 < low < high; got {config.divergence_range}"
        )
    return config


def to_dict(config: Config) -> dict:
    """JSON-able dict (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


# Settings renamed since runs were first written: old key -> new key (old config.json files load).
RENAMED_SETTINGS = {"normalize": "input_normalization"}


def from_dict(data: dict) -> Config:
    """Inverse of ``to_dict``; unknown keys are an error (a run from a newer normlab)."""
    data = {RENAMED_SETTINGS.get(key, key): value for key, value in data.items()}
    types_by_key = _field_types()
    unknown = set(data) - set(types_by_key)
    if unknown:
        raise NormlabError(f"config has unknown settings: {', '.join(sorted(unknown))}")
    values = {}
    for key, value in data.items():
        if typing.get_origin(types_by_key[key]) is tuple:
            value = tuple(value)
        values[key] = value
    return validate(Config(**values))
