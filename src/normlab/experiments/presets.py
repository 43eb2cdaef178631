"""Named presets, each in three sizes.

A preset is a ``with_settings(default_config(), ...)`` with a one-line purpose: the paper and figure it
reproduces (or, for quickstart and the CPU-sized curvature presets, what it is for). Its
``description(size)`` is that purpose followed by the settings in which the preset at that size
differs from ``default_config()``, generated from its config and the size's overrides, so no
setting is stated twice and what it lists is what that size runs. Its ``sizes`` map
every name of ``config.SIZES`` to the overrides that make that size:

- ``tiny``: a few steps on generated data of the real shapes (``synthetic_mnist``,
  ``synthetic_fashion_mnist``, ``synthetic_cifar``; digits and dln_gaussian are offline already),
  every step probed, evaluations at the start and the end: seconds, no download; the test suite
  runs every preset at this size (tests/experiments/test_presets_tiny.py);
- ``small``: the laptop size, a few minutes on 2 CPU cores, with steps, width, evaluation,
  checkpoint (at every evaluation) and probe cadence (``probe_points``) scaled together;
- ``paper``: the paper's setting (GPU-sized for the VGG presets).

Each size's overrides are stated once per model family (``VGG_SIZES``, ...) and shared by the
presets of that family. ``preset_config(name, size)`` applies them and records ``Config.size``;
without a size a preset runs at its ``default_size`` (small for every preset: `normlab run` with
no arguments is quickstart at small, its one size that is not tiny).

Where a paper leaves a choice open the preset's purpose says which setting is ours and why; every
run writes its resolved config, so the choice is never silent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from normlab.errors import NormlabError, check_name
from normlab.experiments.config import (
    SIZES,
    Config,
    changed_settings,
    default_config,
    validate,
    with_settings,
)
from normlab.store import format_value

PART1_PROBES = ("activations", "gradients", "distance")
SANTURKAR_PROBES = ("ics", "landscape", "predictiveness", "beta_smoothness", "activations", "distance")
DEFAULT_SIZE = "small"


# ----------------------------------------------------------------------------------- sizes

# tiny: 3 steps, each one probed, evaluated at the start and the end. Compiling is nearly all of its
# time, so it compiles as little and as fast as it can: every step probed (no plain step), one
# compiled step for the whole group (group_step=fused) without XLA's code optimizations
# (fast_compile), and 500 training examples evaluated, the evaluation's chunk size, so the test
# split's chunks and the training subset share one compiled evaluation.
TINY = dict(steps=3, eval_every=3, log_every=3, probe_points=3, train_eval_size=500, group_step="fused",
            fast_compile=True)


def tiny(**settings) -> dict:
    """``TINY`` with a family's own changes (its stand-in dataset, a narrow width, ...)."""
    return TINY | settings


# The VGG presets (part2, santurkar_*, ghorbani_vgg). tiny: width 1/32 (2..16 channels) and batch
# 16, only 2 step sizes for the landscape family; small: the width-1/8 VGG on synthetic_cifar.
VGG_TINY = tiny(dataset="synthetic_cifar", width=1 / 32, batch_size=16, landscape_points=2)
VGG_SMALL = dict(dataset="synthetic_cifar", width=0.125, steps=400, eval_every=100, log_every=25, probe_points=9,
                 train_eval_size=512)
VGG_SIZES = {"tiny": VGG_TINY, "small": VGG_SMALL, "paper": {}}
# S18's plain SGD at small: lr 0.02, not 0.1. At lr 0.1 (and 0.05, 0.2, 0.5) the width-1/8 VGG without
# BN leaves its initial plateau and then dies (every ReLU of its upper layers off, loss back at ln 10
# for good) within 300 steps on synthetic_cifar; at 0.02 it keeps learning (README, repro findings).
S18_VGG_SIZES = VGG_SIZES | {"small": VGG_SMALL | dict(lr=0.02)}
# santurkar_vgg's landscape comparison at small: 800 steps, not 400. At lr 0.02 the baseline sits near
# its initial plateau (tiny gradient, so a tiny loss band) for ~350 steps while BN learns at once; over
# 400 steps most of the 9 measurements fall on that plateau and BN's band and predictiveness come out
# above the baseline's. Over 800 steps, from step 400 on (5 of the 9 measurements) both learn and the
# baseline's band and predictiveness are 1-4 orders of magnitude above BN's, as in S18 Fig. 4
# (measured; README, santurkar_vgg row). The noisy and lp presets compare no baseline's landscape.
S18_LANDSCAPE_SIZES = S18_VGG_SIZES | {"small": S18_VGG_SIZES["small"] | dict(steps=800)}
# Part 2's momentum 0.9 at small: lr 0.01 (its lr 0.035 kills the narrow baseline after ~100 steps).
PART2_SIZES = VGG_SIZES | {"small": VGG_SMALL | dict(lr=0.01)}

# MNIST and Fashion-MNIST presets: their generated stand-ins at tiny, the real data from small on.
FASHION_SIZES = {"tiny": tiny(dataset="synthetic_fashion_mnist"),
                 "small": dict(epochs=2, eval_every=117, log_every=39, probe_points=9), "paper": {}}

# Presets already sized for a CPU (digits, the DLN's 1,000 Gaussian samples): small is the preset as
# it is, and so is paper (a paper setting the preset could reach is named in its purpose).
CPU_SIZES = {"tiny": tiny(), "small": {}, "paper": {}}

# The curvature probes at tiny: 10 Lanczos steps (the least hessian_top.k = gradient_concentration.k = 10 allow).
CURVATURE_TINY = dict(lanczos_steps=10)


# Not settings of a preset but its labels: the name it is run by and the size chosen with --size.
LABEL_FIELDS = ("preset", "size")
# How a description introduces its settings: those of one size, the one named.
SETTINGS_HEAD = "Settings at size {size}: "


@dataclass(frozen=True)
class Preset:
    """``purpose``: what the preset reproduces (the paper and figure) or is for, and why it makes
    the choices a paper leaves open; ``config``: the settings every size shares; ``sizes``: size ->
    overrides on top of it (every name of ``SIZES``); ``default_size``: the size used when none is
    asked for. Its settings are stated once, in ``config`` and ``sizes``: ``description(size)`` lists
    those of one size from there."""

    name: str
    purpose: str
    config: Config
    sizes: Mapping[str, dict] = field(default_factory=lambda: {size: {} for size in SIZES})
    default_size: str = DEFAULT_SIZE

    def settings(self, size: str | None = None) -> dict[str, object]:
        """The settings in which the preset at ``size`` (None: its default size) differs from
        ``default_config()``: what that size runs, its own overrides included."""
        return {key: value for key, value in changed_settings(self.at_size(size), default_config()).items()
                if key not in LABEL_FIELDS}

    def description(self, size: str | None = None) -> str:
        """``purpose``, then ``settings(size)`` as ``--set`` writes them, headed by the size (what
        `normlab list` prints at the default size and `normlab run --size S` at the size it runs)."""
        size = self.default_size if size is None else size
        settings = " ".join(f"{key}={format_value(value)}" for key, value in self.settings(size).items())
        return f"{self.purpose}. {SETTINGS_HEAD.format(size=size)}{settings or 'the defaults'}"

    def at_size(self, size: str | None = None) -> Config:
        """The validated config of size ``size`` (None: the default size), with ``Config.size`` set."""
        size = self.default_size if size is None else check_size(self, size)
        return validate(with_settings(self.config, {**self.sizes[size], "size": size}))


def check_size(preset: Preset, size: str) -> str:
    """``size`` if ``preset`` has it, else a one-line error listing the sizes it has."""
    if size not in preset.sizes:
        raise NormlabError(f"unknown size {size!r} for preset {preset.name!r}; allowed: {', '.join(preset.sizes)}")
    return size


def _preset(name: str, purpose: str, *, sizes: Mapping[str, dict], default_size: str = DEFAULT_SIZE,
            **settings) -> Preset:
    missing = [size for size in SIZES if size not in sizes]
    if missing or set(sizes) - set(SIZES):
        raise NormlabError(f"preset {name!r} must define exactly the sizes {', '.join(SIZES)}; got {', '.join(sizes)}")
    preset = Preset(name, purpose, validate(with_settings(default_config(), {"preset": name, **settings})), dict(sizes),
                    default_size)
    for size in SIZES:  # every size is a valid config, checked when normlab is imported
        preset.at_size(size)
    return preset


# The seed notebook's Part 1 study (mlp with and without BN on MNIST, their activation and gradient
# distributions); quickstart is its digits-sized twin.
PART1: dict[str, Any] = dict(
    dataset="mnist",
    input_normalization="standardize_max1",
    model="mlp",
    optimizer="adam",
    lr=1e-3,
    batch_size=32,
    epochs=20,
    probe_points=101,
    log_every=125,
    train_eval_size=10000,
) | {"activations.value_range": 6.0}

# S18's VGG setting (Fig. 1-6): CIFAR-10 without augmentation, SGD lr 0.1, batch 128, 15k steps.
S18_VGG: dict[str, Any] = dict(
    dataset="cifar10",
    model="vgg",
    optimizer="sgd",
    lr=0.1,
    batch_size=128,
    steps=15_000,
    eval_every=500,
    probe_points=151,
    log_every=50,
)


_PRESETS = [
    _preset(
        "quickstart",
        "The Part 1 study on the embedded digits data: mlp with and without BN, well under a minute on 2 CPU "
        "cores (its paper-sized sibling is part1); plain SGD, as with Part 1's Adam both nets learn digits "
        "equally fast",
        sizes=CPU_SIZES,
        **PART1
        | dict(dataset="digits", input_normalization="", optimizer="sgd", lr=0.03, epochs=10, eval_every=22,
               probe_points=41, log_every=44, train_eval_size=1437),
    ),
    _preset(
        "part1",
        "Seed notebook Part 1: mlp with and without BN on MNIST, inputs standardized then scaled to max 1",
        sizes={"tiny": tiny(dataset="synthetic_mnist"),
               "small": dict(epochs=2, eval_every=375, probe_points=21), "paper": {}},
        **PART1,
    ),
    _preset(
        "part2",
        "Seed notebook Part 2: vgg with and without BN on CIFAR-10 without augmentation, SGD with momentum",
        sizes=PART2_SIZES,
        dataset="cifar10",
        model="vgg",
        optimizer="momentum",
        lr=0.035,
        momentum=0.9,
        batch_size=128,
        epochs=39,
        probe_points=40,
        log_every=50,
        probes=("activations", "gradients", "distance"),
    ),
    _preset(
        "ioffe_mnist",
        "BN15 Fig. 1: ioffe_mlp (3x100 sigmoid) with and without BN on MNIST, test accuracy over training and "
        "a last-hidden-layer unit's 15/50/85th percentiles; lr and the kernels' init_std are our choice (BN15 "
        "gives neither, only 'small random Gaussian values'; with the model's default std 0.01 the network "
        "without BN stays at chance)",
        sizes={"tiny": tiny(dataset="synthetic_mnist"),
               "small": dict(steps=20_000, eval_every=1000, log_every=250, probe_points=41), "paper": {}},
        dataset="mnist",
        input_normalization="unit",
        model="ioffe_mlp",
        init_std=0.1,
        optimizer="sgd",
        lr=0.1,
        batch_size=60,
        steps=50_000,
        eval_every=1000,
        probe_points=51,
        log_every=250,
        probe_options={"activations.tracked_layer": -1, "activations.value_range": 8.0},
    ),
    _preset(
        "d2l_lenet",
        "d2l BNLeNet (d2l.ai, batch normalization) on Fashion-MNIST: lenet with and without BN",
        sizes=FASHION_SIZES,
        dataset="fashion_mnist",
        model="lenet",
        optimizer="sgd",
        lr=0.1,
        batch_size=128,
        epochs=10,
        probe_points=21,
        log_every=47,
    ),
    _preset(
        "santurkar_vgg",
        "S18 Fig. 3/4: internal covariate shift, loss landscape, gradient predictiveness and beta-smoothness of "
        "vgg with and without BN on CIFAR-10 without augmentation, plain SGD",
        sizes=S18_LANDSCAPE_SIZES,
        **S18_VGG,
        probes=SANTURKAR_PROBES,
    ),
    _preset(
        "santurkar_dln",
        "S18 Fig. 3/4 on the deep linear network: dln (k=25) with and without BN on 1000 Gaussian samples, "
        "full-batch GD; our loss is the per-sample mean, so S18's rates on the loss summed over the samples, "
        "1e-6 and 1e-7, are 1000x larger here: the preset uses the first, small the second (where BN's G and G' "
        "decorrelate; at the first they stay aligned)",
        sizes={**CPU_SIZES, "small": dict(lr=1e-4, steps=5000, eval_every=500, probe_points=21)},
        dataset="dln_gaussian",
        model="dln",
        optimizer="sgd",
        lr=1e-3,
        full_batch=True,
        steps=10_000,
        eval_every=500,
        probe_points=101,
        log_every=100,
        probes=("ics", "landscape", "predictiveness", "beta_smoothness", "distance"),
        landscape_range=(0.01, 30.0),
        landscape_spacing="log",
    ),
]

_PRESETS += [
    _preset(
        "santurkar_noisy",
        "S18 Fig. 2/8: vgg on CIFAR-10 without norm, with BN and with noisy BN (S18 Alg. 1: BN's output shifted "
        "and scaled by noise that changes every step), plain SGD; activation moments for the drift figure",
        sizes=S18_VGG_SIZES,
        **S18_VGG,
        networks=("none", "batch", "noisy"),
        probes=("activations", "distance"),
    ),
    _preset(
        "santurkar_lp",
        "S18 Fig. 5/6: vgg on CIFAR-10 with BN and with l1, l2 and linf normalization, plain SGD; landscape, "
        "predictiveness and beta-smoothness",
        sizes=VGG_SIZES,
        **S18_VGG,
        networks=("batch", "l1", "l2", "linf"),
        probes=("activations", "landscape", "predictiveness", "beta_smoothness"),
    ),
    _preset(
        "d2l_variants",
        "d2l exercises 4-5: BNLeNet on Fashion-MNIST with BN, mean-only, variance-only and no-affine "
        "normalization against no norm",
        sizes=FASHION_SIZES,
        dataset="fashion_mnist",
        model="lenet",
        networks=("none", "batch", "mean_only", "var_only", "no_affine"),
        optimizer="sgd",
        lr=0.1,
        batch_size=128,
        epochs=10,
        probe_points=21,
        log_every=47,
    ),
]

# G19 / C21: the Hessian probes. Ghorbani et al. (G19) train with SGD + momentum and watch the
# spectrum's outliers (about one per class) and the gradient's concentration in their span.
CURVATURE_PROBES = ("hessian_top", "hessian_density", "hessian_trace", "gradient_concentration")
G19: dict[str, Any] = dict(optimizer="momentum", momentum=0.9, probes=CURVATURE_PROBES) | {
    "hessian_top.k": 10, "gradient_concentration.k": 10}

# ghorbani_vgg at small: lr 0.01 (Part 2's small lr) for 300 steps, not lr 0.02 for 200. At 0.02 the
# network without BN was still at chance at step 100 (test accuracy 10.4%) while BN learned, so the
# spectra compared a plateaued net with a learning one; at 0.01 it leaves its plateau and reaches 50%
# test accuracy by step 300 (measured; README, ghorbani_vgg row).
G19_VGG_SMALL = dict(lr=0.01, steps=300, eval_every=50)

_PRESETS += [
    _preset(
        "ghorbani_outliers",
        "G19 Fig. 2-6 at CPU size: mlp with and without BN on digits, SGD with momentum as G19 trains; the "
        "Hessian's top eigenvalues (its outliers), SLQ spectral density, trace and the gradient's concentration "
        "in the top subspace (--set probe_bn_mode=eval: the population-statistics Hessian; G19's own networks "
        "are CIFAR-10 and ImageNet sized: small = paper here, see ghorbani_vgg --size paper)",
        sizes={**CPU_SIZES, "tiny": tiny(**CURVATURE_TINY)},
        **G19,
        dataset="digits",
        model="mlp",
        lr=0.02,
        batch_size=32,
        epochs=10,
        probe_points=5,
        log_every=45,
        lanczos_steps=40,
        probe_options={"hessian_density.starts": 3},
    ),
    _preset(
        "ghorbani_vgg",
        "G19's Hessian probes (as ghorbani_outliers) on a narrow VGG with and without BN on generated "
        "CIFAR-shaped data, SGD with momentum (paper: our choice of G19's scale, the full VGG on CIFAR-10)",
        sizes={"tiny": VGG_TINY | CURVATURE_TINY, "small": G19_VGG_SMALL,
               "paper": dict(dataset="cifar10", width=1.0, steps=15_000, eval_every=500, log_every=50,
                             probe_points=31, lanczos_steps=90)},
        **G19,
        dataset="synthetic_cifar",
        model="vgg",
        width=0.125,
        lr=0.02,
        batch_size=128,
        steps=200,
        eval_every=100,
        probe_points=5,
        log_every=25,
        lanczos_steps=20,
        probe_options={"hessian_density.starts": 2},
    ),
    _preset(
        "edge_of_stability",
        "C21 Fig. 1 at CPU size: full-batch GD on a subset of digits, mlp with and without BN; the sharpness (top "
        "Hessian eigenvalue) against 2/lr (sweep lr: normlab sweep edge_of_stability --grid lr=0.02,0.05,0.1; "
        "paper: C21's scale, 5,000 CIFAR-10 images and tanh, with our cross-entropy loss)",
        sizes={**CPU_SIZES,
               "paper": dict(dataset="cifar10", train_subset=5000, activation="tanh", steps=5000, eval_every=500,
                             log_every=100, probe_points=101)},
        dataset="digits",
        model="mlp",
        optimizer="sgd",
        lr=0.05,
        full_batch=True,
        train_subset=256,
        steps=600,
        eval_every=100,
        probe_points=61,
        log_every=50,
        probes=("hessian_top",),
        lanczos_steps=20,
        probe_options={"hessian_top.k": 2},
    ),
]

PRESETS: dict[str, Preset] = {preset.name: preset for preset in _PRESETS}
DEFAULT_PRESET = "quickstart"


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name lists the valid ones."""
    return PRESETS[check_name("preset", name, PRESETS)]


def preset_config(name: str, size: str | None = None) -> Config:
    """The validated config of preset ``name`` at ``size`` (None: its default size), ``Config.size``
    recorded; an unknown preset or size is a one-line error listing the valid ones."""
    return get_preset(name).at_size(size)


def preset_defaults(config: Config) -> Config:
    """What ``config`` is compared with to say which settings were changed: its preset at its size
    (the preset's shared settings for a config made without a size)."""
    preset = get_preset(config.preset)
    return preset.at_size(config.size) if config.size else preset.config
