"""Named presets: each a ``replace(default_config(), ...)`` with a one-line description.

Where a paper leaves a choice open the preset records ours in its description; every run writes
its resolved config, so the choice is never silent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from normlab.errors import check_name
from normlab.experiments.config import Config, default_config, validate

PART1_PROBES = ("activations", "gradients", "distance")
SANTURKAR_PROBES = ("ics", "landscape", "predictiveness", "beta_smoothness", "activations", "distance")


# The seed notebook's Part 1 study (SCIENCE.md section 4); quickstart is its digits-sized twin.
PART1 = dict(
    dataset="mnist",
    input_normalization="standardize_max1",
    model="mlp",
    optimizer="adam",
    lr=1e-3,
    batch_size=32,
    epochs=20,
    probe_every=375,
    log_every=125,
    hist_range=6.0,
    train_eval_size=10000,
)

# S18's VGG setting (Fig. 1-6): CIFAR-10 without augmentation, SGD lr 0.1, batch 128, 15k steps.
S18_VGG = dict(
    dataset="cifar10",
    model="vgg",
    optimizer="sgd",
    lr=0.1,
    batch_size=128,
    steps=15_000,
    eval_every=500,
    probe_every=100,
    log_every=50,
)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    config: Config


def _preset(name: str, description: str, **settings) -> Preset:
    return Preset(name, description, validate(replace(default_config(), preset=name, **settings)))


_PRESETS = [
    _preset(
        "quickstart",
        "Part 1 study on the embedded digits data: mlp with and without BN, plain SGD lr 0.03 (with Part 1's "
        "Adam 1e-3 both nets learn digits equally fast), batch 32, 10 epochs, well under a minute on 2 CPU cores",
        **PART1
        | dict(dataset="digits", input_normalization="", optimizer="sgd", lr=0.03, epochs=10, eval_every=22,
               probe_every=11, log_every=44, train_eval_size=1437),
    ),
    _preset(
        "part1",
        "seed notebook Part 1: mlp with/without BN on MNIST, Adam 1e-3, batch 32, 20 epochs, "
        "inputs standardized then scaled to max 1",
        **PART1,
    ),
    _preset(
        "part2",
        "seed notebook Part 2: vgg with/without BN on CIFAR-10, SGD momentum 0.9, lr 0.035, batch 128, "
        "39 epochs, no augmentation (GPU-sized; use --set width=0.125 steps=... on CPU)",
        dataset="cifar10",
        model="vgg",
        optimizer="momentum",
        lr=0.035,
        momentum=0.9,
        batch_size=128,
        epochs=39,
        probe_every=390,
        log_every=50,
        probes=("activations", "gradients", "distance"),
    ),
    _preset(
        "ioffe_mnist",
        "BN15 Fig. 1: ioffe_mlp (3x100 sigmoid) on MNIST, batch 60, 50,000 steps; SGD lr 0.1 is our "
        "choice (BN15 does not state it); tracks a last-hidden-layer unit's 15/50/85th percentiles",
        dataset="mnist",
        input_normalization="unit",
        model="ioffe_mlp",
        optimizer="sgd",
        lr=0.1,
        batch_size=60,
        steps=50_000,
        eval_every=1000,
        probe_every=1000,
        log_every=250,
        tracked_layer=-1,
        hist_range=8.0,
    ),
    _preset(
        "d2l_lenet",
        "d2l BNLeNet on Fashion-MNIST: lenet with/without BN, SGD lr 0.1, batch 128, 10 epochs",
        dataset="fashion_mnist",
        model="lenet",
        optimizer="sgd",
        lr=0.1,
        batch_size=128,
        epochs=10,
        probe_every=235,
        log_every=47,
    ),
    _preset(
        "santurkar_vgg",
        "S18 Fig. 3/4: vgg on CIFAR-10, no augmentation, batch 128, SGD lr 0.1, 15,000 steps, the "
        "Santurkar probes (GPU-sized; on CPU: --set width=0.125 steps=200)",
        **S18_VGG,
        probes=SANTURKAR_PROBES,
    ),
    _preset(
        "santurkar_dln",
        "S18 Fig. 3/4 deep linear network: dln k=25 on 1000 Gaussian samples, full-batch GD, lr 1e-3 on the "
        "per-sample mean loss (= S18's lr 1e-6 on the loss summed over the 1000 samples), 10,000 steps, "
        "landscape over [0.01, 30] x lr",
        dataset="dln_gaussian",
        model="dln",
        optimizer="sgd",
        lr=1e-3,
        full_batch=True,
        steps=10_000,
        eval_every=500,
        probe_every=100,
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
        "batch 128, 15,000 steps; activation moments for the drift figure (CPU: --set width=0.125 steps=300)",
        **S18_VGG,
        networks=("none", "batch", "noisy"),
        probes=("activations", "distance"),
    ),
    _preset(
        "santurkar_lp",
        "S18 Fig. 5/6: vgg on CIFAR-10 with BN and l1, l2, linf normalization, SGD lr 0.1, batch 128, "
        "15,000 steps (CPU: --set width=0.125 steps=300)",
        **S18_VGG,
        networks=("batch", "l1", "l2", "linf"),
        probes=("activations", "landscape", "predictiveness", "beta_smoothness"),
    ),
    _preset(
        "d2l_variants",
        "d2l exercises 4-5: BNLeNet on Fashion-MNIST with BN, mean-only, variance-only and no-affine "
        "normalization against no norm, SGD lr 0.1, batch 128, 10 epochs",
        dataset="fashion_mnist",
        model="lenet",
        networks=("none", "batch", "mean_only", "var_only", "no_affine"),
        optimizer="sgd",
        lr=0.1,
        batch_size=128,
        epochs=10,
        probe_every=235,
        log_every=47,
    ),
]

# G19 / C21: the Hessian probes. Ghorbani et al. (G19) train with SGD + momentum and watch the
# spectrum's outliers (about one per class) and the gradient's concentration in their span.
CURVATURE_PROBES = ("hessian_top", "hessian_density", "hessian_trace", "gradient_concentration")
G19 = dict(optimizer="momentum", momentum=0.9, probes=CURVATURE_PROBES, hessian_k=10, concentration_k=10)

_PRESETS += [
    _preset(
        "ghorbani_outliers",
        "G19 Fig. 2-6 at CPU size: mlp with and without BN on digits, SGD momentum 0.9 lr 0.02, batch 32, "
        "10 epochs; Hessian top-10 eigenvalues, SLQ density (40 Lanczos steps, 3 starts), trace, gradient "
        "concentration in the top-10 subspace (--set probe_bn_mode=eval: the population-statistics Hessian)",
        **G19,
        dataset="digits",
        model="mlp",
        lr=0.02,
        batch_size=32,
        epochs=10,
        probe_every=90,
        log_every=45,
        lanczos_steps=40,
        slq_starts=3,
    ),
    _preset(
        "ghorbani_vgg",
        "G19 on the narrow VGG (width 1/8) with and without BN on synthetic_cifar: SGD momentum 0.9 lr 0.02, "
        "batch 128, 200 steps; Hessian top-10, SLQ density (20 steps, 2 starts), trace, gradient concentration",
        **G19,
        dataset="synthetic_cifar",
        model="vgg",
        width=0.125,
        lr=0.02,
        batch_size=128,
        steps=200,
        eval_every=100,
        probe_every=50,
        log_every=25,
        lanczos_steps=20,
        slq_starts=2,
    ),
    _preset(
        "edge_of_stability",
        "C21 Fig. 1 at CPU size: full-batch GD (plain SGD) on the first 256 digits, mlp with and without BN, "
        "lr 0.05, 600 steps; sharpness (top Hessian eigenvalue, 20 Lanczos steps) every 10 steps against 2/lr "
        "(sweep lr: normlab sweep edge_of_stability --grid lr=0.02,0.05,0.1)",
        dataset="digits",
        model="mlp",
        optimizer="sgd",
        lr=0.05,
        full_batch=True,
        train_subset=256,
        steps=600,
        eval_every=100,
        probe_every=10,
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
