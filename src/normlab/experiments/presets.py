"""Named presets, each in three sizes.

A preset is a ``replace(default_config(), ...)`` with a one-line description: the paper's setting
(for the presets that reproduce a paper) or the study's own (quickstart, the CPU-sized curvature
presets). Its ``sizes`` map every name of ``config.SIZES`` to the overrides that make that size:

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

Where a paper leaves a choice open the preset records ours in its description; every run writes
its resolved config, so the choice is never silent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from normlab.errors import NormlabError, check_name
from normlab.experiments.config import SIZES, Config, default_config, validate

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
# Part 2's momentum 0.9 at small: lr 0.01 (its lr 0.035 kills the narrow baseline after ~100 steps).
PART2_SIZES = VGG_SIZES | {"small": VGG_SMALL | dict(lr=0.01)}

# MNIST and Fashion-MNIST presets: their generated stand-ins at tiny, the real data from small on.
FASHION_SIZES = {"tiny": tiny(dataset="synthetic_fashion_mnist"),
                 "small": dict(epochs=2, eval_every=117, log_every=39, probe_points=9), "paper": {}}

# Presets already sized for a CPU (digits, the DLN's 1,000 Gaussian samples): small is the preset as
# it is, and so is paper (a paper setting the preset could reach is named in its description).
CPU_SIZES = {"tiny": tiny(), "small": {}, "paper": {}}

# The curvature probes at tiny: 10 Lanczos steps (the least hessian_k = concentration_k = 10 allow).
CURVATURE_TINY = dict(lanczos_steps=10)


@dataclass(frozen=True)
class Preset:
    """``config``: the settings every size shares; ``sizes``: size -> overrides on top of it (every
    name of ``SIZES``); ``default_size``: the size used when none is asked for."""

    name: str
    description: str
    config: Config
    sizes: Mapping[str, dict] = field(default_factory=lambda: {size: {} for size in SIZES})
    default_size: str = DEFAULT_SIZE

    def at_size(self, size: str | None = None) -> Config:
        """The validated config of size ``size`` (None: the default size), with ``Config.size`` set."""
        size = self.default_size if size is None else check_size(self, size)
        return validate(replace(self.config, **self.sizes[size], size=size))


def check_size(preset: Preset, size: str) -> str:
    """``size`` if ``preset`` has it, else a one-line error listing the sizes it has."""
    if size not in preset.sizes:
        raise NormlabError(f"unknown size {size!r} for preset {preset.name!r}; allowed: {', '.join(preset.sizes)}")
    return size


def _preset(name: str, description: str, *, sizes: Mapping[str, dict], default_size: str = DEFAULT_SIZE,
            **settings) -> Preset:
    missing = [size for size in SIZES if size not in sizes]
    if missing or set(sizes) - set(SIZES):
        raise NormlabError(f"preset {name!r} must define exactly the sizes {', '.join(SIZES)}; got {', '.join(sizes)}")
    preset = Preset(name, description, validate(replace(default_config(), preset=name, **settings)), dict(sizes),
                    default_size)
    for size in SIZES:  # every size is a valid config, checked when normlab is imported
        preset.at_size(size)
    return preset


# The seed notebook's Part 1 study (SCIENCE.md section 4); quickstart is its digits-sized twin.
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
    hist_range=6.0,
    train_eval_size=10000,
)

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
        "Part 1 study on the embedded digits data: mlp with and without BN, plain SGD lr 0.03 (with Part 1's "
        "Adam 1e-3 both nets learn digits equally fast), batch 32, 10 epochs, well under a minute on 2 CPU cores "
        "(its paper-sized sibling is part1)",
        sizes=CPU_SIZES,
        **PART1
        | dict(dataset="digits", input_normalization="", optimizer="sgd", lr=0.03, epochs=10, eval_every=22,
               probe_points=41, log_every=44, train_eval_size=1437),
    ),
    _preset(
        "part1",
        "seed notebook Part 1: mlp with/without BN on MNIST, Adam 1e-3, batch 32, 20 epochs, "
        "inputs standardized then scaled to max 1",
        sizes={"tiny": tiny(dataset="synthetic_mnist"),
               "small": dict(epochs=2, eval_every=375, probe_points=21), "paper": {}},
        **PART1,
    ),
    _preset(
        "part2",
        "seed notebook Part 2: vgg with/without BN on CIFAR-10, SGD momentum 0.9, lr 0.035, batch 128, "
        "39 epochs, no augmentation",
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
        "BN15 Fig. 1: ioffe_mlp (3x100 sigmoid) on MNIST, batch 60, 50,000 steps; SGD lr 0.1 and kernels "
        "N(0, 0.1^2) are our choice (BN15 states neither; with the model's default std 0.01 the network "
        "without BN stays at chance); tracks a last-hidden-layer unit's 15/50/85th percentiles",
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
        tracked_layer=-1,
        hist_range=8.0,
    ),
    _preset(
        "d2l_lenet",
        "d2l BNLeNet on Fashion-MNIST: lenet with/without BN, SGD lr 0.1, batch 128, 10 epochs",
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
        "S18 Fig. 3/4: vgg on CIFAR-10, no augmentation, batch 128, SGD lr 0.1, 15,000 steps, the "
        "Santurkar probes",
        sizes=S18_VGG_SIZES,
        **S18_VGG,
        probes=SANTURKAR_PROBES,
    ),
    _preset(
        "santurkar_dln",
        "S18 Fig. 3/4 deep linear network: dln k=25 on 1000 Gaussian samples, full-batch GD, lr 1e-3 on the "
        "per-sample mean loss (= S18's lr 1e-6 on the loss summed over the 1000 samples), 10,000 steps, "
        "landscape over [0.01, 30] x lr (small: S18's other rate, 1e-7 on the sum = 1e-4 on the mean, where "
        "BN's G and G' decorrelate; at 1e-3 they stay aligned), 5,000 steps",
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
        "S18 Fig. 2/8: vgg on CIFAR-10 without norm, with BN and with noisy BN (S18 Alg. 1), SGD lr 0.1, "
        "batch 128, 15,000 steps; activation moments for the drift figure",
        sizes=S18_VGG_SIZES,
        **S18_VGG,
        networks=("none", "batch", "noisy"),
        probes=("activations", "distance"),
    ),
    _preset(
        "santurkar_lp",
        "S18 Fig. 5/6: vgg on CIFAR-10 with BN and l1, l2, linf normalization, SGD lr 0.1, batch 128, "
        "15,000 steps",
        sizes=VGG_SIZES,
        **S18_VGG,
        networks=("batch", "l1", "l2", "linf"),
        probes=("activations", "landscape", "predictiveness", "beta_smoothness"),
    ),
    _preset(
        "d2l_variants",
        "d2l exercises 4-5: BNLeNet on Fashion-MNIST with BN, mean-only, variance-only and no-affine "
        "normalization against no norm, SGD lr 0.1, batch 128, 10 epochs",
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
G19: dict[str, Any] = dict(optimizer="momentum", momentum=0.9, probes=CURVATURE_PROBES, hessian_k=10,
                           concentration_k=10)

_PRESETS += [
    _preset(
        "ghorbani_outliers",
        "G19 Fig. 2-6 at CPU size: mlp with and without BN on digits, SGD momentum 0.9 lr 0.02, batch 32, "
        "10 epochs; Hessian top-10 eigenvalues, SLQ density (40 Lanczos steps, 3 starts), trace, gradient "
        "concentration in the top-10 subspace (--set probe_bn_mode=eval: the population-statistics Hessian; "
        "G19's own networks are CIFAR-10 and ImageNet sized: small = paper here, see ghorbani_vgg --size paper)",
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
        slq_starts=3,
    ),
    _preset(
        "ghorbani_vgg",
        "G19 on the narrow VGG (width 1/8) with and without BN on synthetic_cifar: SGD momentum 0.9 lr 0.02, "
        "batch 128, 200 steps; Hessian top-10, SLQ density (20 steps, 2 starts), trace, gradient concentration "
        "(paper: our choice of G19's scale, the full VGG on CIFAR-10 for 15,000 steps with 90 Lanczos steps)",
        sizes={"tiny": VGG_TINY | CURVATURE_TINY, "small": {},
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
        slq_starts=2,
    ),
    _preset(
        "edge_of_stability",
        "C21 Fig. 1 at CPU size: full-batch GD (plain SGD) on the first 256 digits, mlp with and without BN, "
        "lr 0.05, 600 steps; sharpness (top Hessian eigenvalue, 20 Lanczos steps) at 61 steps against 2/lr "
        "(sweep lr: normlab sweep edge_of_stability --grid lr=0.02,0.05,0.1; paper: C21's scale, 5,000 "
        "CIFAR-10 images and tanh, with our cross-entropy loss and 5,000 steps)",
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
        hessian_k=2,
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
