"""Studies: a preset plus a grid, variants and seeds, in three sizes, run into one sweep directory
and read in one report (``normlab run STUDY [--size S]``).

A study names a base preset, the settings it changes for every member (``settings``), what it
varies (``variants``: a list of setting dicts, e.g. the three bias placements of d2l exercise 1;
``grid``: settings crossed with them, e.g. learning rates) and over which ``seeds``. Each size
(``tiny``, ``small``, ``paper``) is the base preset at that size plus the study's own changes for
it (fewer grid values or seeds at small, a few steps at tiny). ``--set`` still applies to every
member, ``--seeds`` and ``--grid`` replace the study's. Every member of one seed shares its
initial weights and batches with the others of that seed, so the study's comparisons are paired.

What the report reads (recorded in sweep.json ``study``): the study's name and size, its
``baseline`` (a network and, when the variants are settings, the baseline's settings), the
``x_key`` of its main figure (learning-rate studies), the study ``figures`` it asks for and the
threshold of "trains" (``TRAINS_FACTOR`` x chance).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from normlab.errors import NormlabError, check_name
from normlab.experiments.config import SIZES, Config, apply_overrides, parse_value
from normlab.experiments.presets import PRESETS, get_preset
from normlab.experiments.runner import RunResult
from normlab.experiments.sweep import run_sweep
from normlab.report.figures.study import TRAINS_FACTOR

STUDY_FIGURES = ("accuracy_over_training", "activation_magnitude", "bn_parameters", "cost")


@dataclass(frozen=True)
class StudySize:
    """A study at one size: ``settings`` on top of the base preset at that size; ``grid`` entries
    replacing the study's (by key); ``variants``/``seeds`` replacing the study's when given."""

    settings: Mapping[str, Any] = field(default_factory=dict)
    grid: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    variants: tuple[Mapping[str, str], ...] | None = None
    seeds: tuple[int, ...] | None = None


@dataclass(frozen=True)
class StudyPlan:
    """What ``normlab run STUDY`` runs: the members' shared config, the grid, variants, seeds and
    the record the report reads."""

    config: Config
    grid: dict[str, list[str]]
    variants: list[dict[str, str]]
    seeds: list[int]
    record: dict

    @property
    def members(self) -> int:
        points = 1
        for values in self.grid.values():
            points *= len(values)
        return points * max(1, len(self.variants)) * len(self.seeds)


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    base: str  # the preset the members are made from
    reproduces: str  # what it reproduces, for `normlab list` and the README
    sizes: Mapping[str, StudySize]
    settings: Mapping[str, Any] = field(default_factory=dict)
    grid: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    variants: tuple[Mapping[str, str], ...] = ()
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    baseline_network: str | None = None  # None: each group's first network
    baseline_settings: Mapping[str, str] = field(default_factory=dict)  # the baseline variant's settings
    x_key: str | None = None
    figures: tuple[str, ...] = ()
    lr_factors: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # size -> multiples of the base lr
    base_choosable: bool = False  # lr_sweep: any preset as the base (--base)
    default_size: str = "small"

    def plan(self, size: str | None = None, *, base: str | None = None, overrides: list[str] | None = None,
             seeds: list[int] | None = None, grid: dict[str, list[str]] | None = None) -> StudyPlan:
        """The members of this study at ``size`` (None: its default size), with ``--set``
        ``overrides`` on every member, and ``seeds``/``grid`` replacing the study's."""
        size = self.default_size if size is None else size
        overrides = list(overrides or [])
        named = [item for item in overrides if item.partition("=")[0].strip() == "base"]
        if named and self.base_choosable:  # `--set base=PRESET`, as --base
            base = named[-1].partition("=")[2].strip()
            overrides = [item for item in overrides if item not in named]
        if size not in self.sizes:
            raise NormlabError(f"unknown size {size!r} for study {self.name!r}; allowed: {', '.join(self.sizes)}")
        if base is not None and not self.base_choosable:
            raise NormlabError(f"study {self.name!r} has the fixed base preset {self.base!r}; --base is for lr_sweep")
        base_name = check_name("preset", base, PRESETS) if base is not None else self.base
        at_size = self.sizes[size]
        config = get_preset(base_name).at_size(size)
        config = replace(config, **{**self.settings, **at_size.settings})
        config = apply_overrides(config, overrides)
        study_grid = {key: list(values) for key, values in self.grid.items()}
        study_grid.update({key: list(values) for key, values in at_size.grid.items()})
        if size in self.lr_factors:
            study_grid["lr"] = [f"{config.lr * factor:.3g}" for factor in self.lr_factors[size]]
        if grid:
            study_grid.update(grid)
        for key, values in study_grid.items():
            for value in values:
                parse_value(key, value)
        variants = [dict(v) for v in (at_size.variants if at_size.variants is not None else self.variants)]
        chosen_seeds = list(seeds if seeds is not None else (at_size.seeds or self.seeds))
        if not chosen_seeds:
            raise NormlabError("a study needs at least one seed")
        baseline_network = self.baseline_network or config.networks[0]
        if baseline_network not in config.networks:
            raise NormlabError(f"study {self.name!r} compares with the network {baseline_network!r}, which "
                               f"--set networks= left out ({', '.join(config.networks)})")
        record = {
            "name": self.name, "description": self.description, "size": size, "base": base_name,
            "reproduces": self.reproduces,
            "baseline": {"network": baseline_network, "settings": dict(self.baseline_settings)},
            "variant_keys": sorted({key for variant in variants for key in variant}),
            "x_key": self.x_key, "figures": list(self.figures), "trains_factor": TRAINS_FACTOR,
        }
        return StudyPlan(config, study_grid, variants, chosen_seeds, record)


def run_study(study: Study, plan: StudyPlan, *, out: str | Path = "runs", quiet: bool = False,
              executor: str = "local", jobs: int | None = None, threads_per_member: int = 1,
              address: str | None = None) -> tuple[Path, list[RunResult]]:
    """Run every member of ``plan`` into one sweep directory ``<out>/<time>-study-<name>``."""
    return run_sweep(plan.config, plan.grid, plan.seeds, out=out, quiet=quiet, executor=executor, jobs=jobs,
                     threads_per_member=threads_per_member, address=address, variants=plan.variants,
                     label=f"study-{study.name}", extra={"study": plan.record})


# ----------------------------------------------------------------------------------- the studies

# tiny: the base preset's tiny size (3 steps on generated data), two seeds (a paired interval
# needs two), at most a few grid values or variants.
TINY_SEEDS = (0, 1)
# d2l tried 4, 2, 1, 0.5, 0.1, 0.05; 8 and 16 find where the plain network stops training (measured at small)
D2L_LR_GRID = ("0.05", "0.1", "0.5", "1", "2", "4", "8", "16")
NO_PROBES: dict[str, Any] = {"probes": ()}


def _sizes(tiny: StudySize | None = None, small: StudySize | None = None, paper: StudySize | None = None
           ) -> dict[str, StudySize]:
    return {"tiny": tiny or StudySize(seeds=TINY_SEEDS), "small": small or StudySize(seeds=(0, 1, 2)),
            "paper": paper or StudySize()}


# The VGG studies paired against BN over seeds (noisy_bn, lp_norm): tiny without probes (their figures
# need only the accuracies; the VGG probes' compilation is most of a tiny run's time), two seeds at small.
VGG_BN_SIZES = _sizes(tiny=StudySize(settings=NO_PROBES, seeds=TINY_SEEDS), small=StudySize(seeds=(0, 1)))

_STUDIES = [
    Study(
        "d2l_bias",
        "d2l ex. 1: BNLeNet with the bias before each BN kept, removed in the dense layers, removed in the conv "
        "layers; paired against the bias kept",
        base="d2l_lenet", reproduces="d2l ex. 1 (bias before BN: no change expected)",
        settings={"networks": ("batch",), **NO_PROBES},
        variants=({"bias_before_norm": "true"}, {"bias_before_norm": "false", "bias_removed_from": "dense"},
                  {"bias_before_norm": "false", "bias_removed_from": "conv"}),
        baseline_settings={"bias_before_norm": "true"},
        figures=("accuracy_over_training",),
        sizes=_sizes(),
    ),
    Study(
        "d2l_lr",
        "d2l ex. 2: BNLeNet with and without BN over a log grid of learning rates (d2l: 0.05 to 4), over seeds; "
        "test accuracy per epoch for each lr, final accuracy against lr, the largest lr that still trains",
        base="d2l_lenet", reproduces="d2l ex. 2; B18 (BN permits larger learning rates)",
        settings=dict(NO_PROBES), grid={"lr": D2L_LR_GRID}, x_key="lr",
        sizes=_sizes(tiny=StudySize(grid={"lr": ("0.1", "4")}, seeds=TINY_SEEDS),
                     small=StudySize(grid={"lr": ("0.05", "0.25", "1", "4", "16")}, seeds=(0, 1, 2))),
    ),
    Study(
        "d2l_layers",
        "d2l ex. 3: BNLeNet with each BN layer removed in turn (none removed = the baseline), at several training "
        "lengths, over seeds; accuracy per removed position and the activation magnitude (mean of squares) after "
        "each norm position",
        base="d2l_lenet", reproduces="d2l ex. 3 (which BN layers matter; activation magnitudes)",
        settings={"networks": ("batch",), "probes": ("activations",)},
        variants=tuple({"norm_exclude": value} for value in ("", "0", "1", "2", "3")),
        grid={"epochs": ("2", "4", "8")},
        baseline_settings={"norm_exclude": ""}, x_key="norm_exclude",
        figures=("activation_magnitude",),
        sizes=_sizes(tiny=StudySize(variants=({"norm_exclude": ""}, {"norm_exclude": "0"}),
                                    grid={"epochs": ("1",)}, seeds=TINY_SEEDS),
                     # small: two training lengths on the first 20,000 training images (156 steps an epoch)
                     small=StudySize(settings={"train_subset": 20_000}, grid={"epochs": ("1", "2")},
                                     seeds=(0, 1))),
    ),
    Study(
        "d2l_lite",
        "d2l ex. 4: BN lite: mean_only and var_only (really removing only the mean or only the variance), and what "
        "the d2l write-up did instead (frozen_gamma, frozen_beta), against BN and no norm; paired against BN",
        base="d2l_lenet", reproduces="d2l ex. 4 (mean-only / variance-only normalization)",
        settings={"networks": ("batch", "none", "mean_only", "var_only", "frozen_gamma", "frozen_beta"), **NO_PROBES},
        baseline_network="batch", figures=("accuracy_over_training",),
        sizes=_sizes(),
    ),
    Study(
        "d2l_affine",
        "d2l ex. 5: BN with fixed gamma = 1, beta = 0 (no_affine) against BN over seeds; accuracy with bands and "
        "the learned gamma and beta of every BN layer against their defaults",
        base="d2l_lenet", reproduces="d2l ex. 5 (fixed gamma and beta; the learned ones)",
        settings={"networks": ("batch", "no_affine"), "probes": ("bn_parameters",)},
        baseline_network="batch", figures=("accuracy_over_training", "bn_parameters"),
        sizes=_sizes(),
    ),
    Study(
        "d2l_dropout",
        "d2l ex. 6: dropout only, BN only, both, neither (dropout 0.5 after each hidden activation); paired "
        "against neither",
        base="d2l_lenet", reproduces="d2l ex. 6 (BN and dropout)",
        settings={"networks": ("none", "batch"), **NO_PROBES},
        variants=({"dropout": "0"}, {"dropout": "0.5"}),
        baseline_settings={"dropout": "0"},
        figures=("accuracy_over_training",),
        sizes=_sizes(),
    ),
    Study(
        "d2l_research",
        "d2l ex. 7: research ideas, decorrelated BN (zca: ZCA whitening) and the probability integral transform "
        "(pit), against BN, with each one's cost per training step (timed before training)",
        base="d2l_lenet", reproduces="d2l ex. 7 (whitening and PIT normalization, and their cost)",
        settings={"networks": ("batch", "zca", "pit"), "step_cost_repeats": 5, **NO_PROBES},
        baseline_network="batch", figures=("accuracy_over_training", "cost"),
        sizes=_sizes(tiny=StudySize(settings={"step_cost_repeats": 1}, seeds=TINY_SEEDS)),
    ),
    Study(
        "noisy_bn",
        "S18 Fig. 2/8 over seeds: vgg without norm, with BN and with noisy BN (S18 Alg. 1); paired against BN, "
        "activation moments for the drift figure",
        base="santurkar_noisy", reproduces="S18 Fig. 2 and 8 (noisy BN trains about as well as BN)",
        baseline_network="batch", figures=("accuracy_over_training",), seeds=(0, 1, 2), sizes=VGG_BN_SIZES,
    ),
    Study(
        "lp_norm",
        "S18 Fig. 5/6 over seeds: vgg with BN and with l1, l2, linf normalization; paired against BN",
        base="santurkar_lp", reproduces="S18 Fig. 5 and 6 (lp normalizations comparable to BN)",
        baseline_network="batch", figures=("accuracy_over_training",), seeds=(0, 1, 2), sizes=VGG_BN_SIZES,
    ),
    Study(
        "lr_sweep",
        "B18: any preset's group (--base PRESET; default d2l_lenet) over a log grid of learning rates around the "
        "preset's own (x1/30 to x30), over seeds; figures and table as for d2l_lr",
        base="d2l_lenet", reproduces="B18 (BN's gain is the larger learning rates it permits)",
        settings=dict(NO_PROBES), x_key="lr", base_choosable=True,
        lr_factors={"tiny": (1.0, 10.0), "small": (0.1, 1.0, 10.0, 30.0),
                    "paper": (1 / 30, 0.1, 1 / 3, 1.0, 3.0, 10.0, 30.0)},
        sizes=_sizes(),
    ),
]

STUDIES: dict[str, Study] = {study.name: study for study in _STUDIES}


def get_study(name: str) -> Study:
    return STUDIES[check_name("study", name, STUDIES)]


def _check_studies() -> None:
    """Every study names a real base preset, every size, known figures, and no preset's name."""
    for study in _STUDIES:
        if study.name in PRESETS:
            raise NormlabError(f"study {study.name!r} has the name of a preset")
        if set(study.sizes) != set(SIZES):
            raise NormlabError(f"study {study.name!r} must define exactly the sizes {', '.join(SIZES)}")
        unknown = set(study.figures) - set(STUDY_FIGURES)
        if unknown:
            raise NormlabError(f"study {study.name!r} asks for unknown figures {sorted(unknown)}")
        get_preset(study.base)


_check_studies()
