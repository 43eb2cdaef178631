"""Probes: measurements on a schedule, pure and jittable, composed into bundles.

``PROBES_REGISTRY`` maps each name to its class and a one-line description;
``make_probe(name, **options)`` builds one (options: the probe's dataclass fields).
"""

from __future__ import annotations

from normlab.errors import check_name
from normlab.probes.activations import ActivationsProbe
from normlab.probes.base import (
    PROBE_SPACINGS,
    AnyOf,
    AtSteps,
    Every,
    Headline,
    Output,
    Probe,
    ProbeContext,
    Schedule,
    active_probes,
    at_steps,
    declared_keys,
    every,
    headline_series,
    headline_value,
    never,
    probe_meta,
    probe_setups,
    spaced_steps,
)
from normlab.probes.bn_parameters import BNParametersProbe
from normlab.probes.curvature import (
    GradientConcentrationProbe,
    HessianDensityProbe,
    HessianTopProbe,
    HessianTraceProbe,
)
from normlab.probes.distance import DistanceProbe
from normlab.probes.gradients import GradientsProbe
from normlab.probes.ics import ICSProbe
from normlab.probes.landscape import BetaSmoothnessProbe, DivergenceProbe, LandscapeProbe, PredictivenessProbe
from normlab.probes.shared import SharedPieces
from normlab.registry import Registry

PROBES_REGISTRY: Registry[Probe] = Registry("probe", {
    "activations": (ActivationsProbe, "per-layer activation histograms, mean/std, per-unit moments, tracked unit's "
                    "15/50/85th percentiles"),
    "gradients": (GradientsProbe, "per-layer gradient mean/std/norm and histograms, one tracked parameter's gradient"),
    "distance": (DistanceProbe, "per-layer distance of the weights from their initialization (S18 Lemma 4.5)"),
    "bn_parameters": (BNParametersProbe, "per norm layer: learned gamma and beta, histograms of gamma - 1 and beta, "
                      "mean, std, mean deviation from the defaults (d2l ex. 5)"),
    "ics": (ICSProbe, "per-layer gradient ICS ||G - G'|| and cos(G, G') after the real update of earlier layers "
            "(S18 Fig. 3)"),
    "landscape": (LandscapeProbe, "loss L(theta - eta g) at K step sizes along the gradient, min-max band "
                  "(S18 Fig. 4a)"),
    "predictiveness": (PredictivenessProbe, "gradient change ||g(theta) - g(theta - eta g)|| at K step sizes "
                       "(S18 Fig. 4b)"),
    "beta_smoothness": (BetaSmoothnessProbe, "effective beta-smoothness max_eta ||g(theta) - g(theta - eta g)|| / "
                        "||eta g|| (S18 Fig. 4c)"),
    "divergence": (DivergenceProbe, "relative loss L(theta - eta g) / L(theta) on a log grid of step sizes (B18)"),
    "hessian_top": (HessianTopProbe, "k largest Hessian eigenvalues by Lanczos (or power iteration) with Ritz "
                    "residuals; sharpness vs 2/lr (C21)"),
    "hessian_trace": (HessianTraceProbe, "Hessian trace by Hutchinson with Rademacher vectors, with its standard "
                      "error"),
    "hessian_density": (HessianDensityProbe, "Hessian spectral density by stochastic Lanczos quadrature: Ritz values "
                        "and weights (G19)"),
    "gradient_concentration": (GradientConcentrationProbe, "fraction of ||g||^2 in the span of the top-k Hessian "
                               "Ritz vectors (G19 Sec. 4)"),
}, common=("name",))  # a probe's options are its dataclass fields

# Bundles by cost (cockpit's economy / business / full): what a probe step adds to a training step.
BUNDLES: dict[str, tuple[str, ...]] = {
    # reductions of what the training step computes anyway: a few percent of a step
    "cheap": ("activations", "gradients", "distance"),
    # plus one gradient per weight layer (ICS, prefix shared) and K forward passes (landscape)
    "standard": ("activations", "gradients", "distance", "ics", "landscape"),
    # plus K gradient evaluations along the gradient (predictiveness and beta share them)
    "full": ("activations", "gradients", "distance", "ics", "landscape", "predictiveness", "beta_smoothness"),
    # Hessian probes: lanczos_steps HVPs (shared) + hessian_trace.vectors + (hessian_density.starts - 1) * steps
    "curvature": ("hessian_top", "hessian_trace", "hessian_density", "gradient_concentration"),
}


def expand_bundles(names) -> tuple[str, ...]:
    """Probe names with bundle names replaced by their members (order kept, no repeats)."""
    expanded: list[str] = []
    for name in names:
        check_name("probe or bundle", name, [*PROBES_REGISTRY, *BUNDLES])
        for member in BUNDLES.get(name, (name,)):
            if member not in expanded:
                expanded.append(member)
    return tuple(expanded)


def probe_names() -> list[str]:
    return list(PROBES_REGISTRY.names())


def probe_descriptions() -> dict[str, str]:
    return PROBES_REGISTRY.descriptions()


def probe_options(name: str) -> dict:
    """The options (dataclass fields) of probe ``name`` and their defaults."""
    return PROBES_REGISTRY.options(name)


def make_probe(name: str, **options) -> Probe:
    """Build the probe ``name`` with ``options`` (its dataclass fields)."""
    return PROBES_REGISTRY.build(name, **options)


__all__ = [
    "BUNDLES",
    "expand_bundles",
    "ActivationsProbe",
    "AnyOf",
    "AtSteps",
    "BetaSmoothnessProbe",
    "BNParametersProbe",
    "DistanceProbe",
    "DivergenceProbe",
    "Every",
    "GradientConcentrationProbe",
    "GradientsProbe",
    "HessianDensityProbe",
    "HessianTopProbe",
    "HessianTraceProbe",
    "ICSProbe",
    "LandscapeProbe",
    "PredictivenessProbe",
    "Probe",
    "ProbeContext",
    "Schedule",
    "SharedPieces",
    "probe_setups",
    "Headline",
    "Output",
    "declared_keys",
    "headline_series",
    "headline_value",
    "probe_meta",
    "active_probes",
    "PROBE_SPACINGS",
    "spaced_steps",
    "at_steps",
    "every",
    "make_probe",
    "never",
    "probe_descriptions",
    "probe_names",
    "probe_options",
    "PROBES_REGISTRY",
]
