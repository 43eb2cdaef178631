"""The probe protocol, schedules and bundles.

A probe is a named measurement with a schedule and a pure, jittable ``measure``:

- ``schedule(step) -> bool`` is checked in Python *before* any jitted call, so a probe that is
  off costs nothing and never triggers a recompilation;
- ``measure(ctx) -> dict[str, Array]`` runs inside the same compiled function as the training
  step, on the state *before* the update of that step, and returns fixed-shape arrays;
- ``meta(spec) -> dict`` is the JSON-able description written once per network into the run
  store: which BN mode was used, layer names, histogram edges, the formula and paper figure;
- ``needs: tuple[str, ...]`` names the shared pieces it reads through ``ctx.piece`` (see
  :mod:`normlab.probes.shared`); ``()`` for most probes;
- optionally ``setup(spec, state) -> pytree``: what the probe keeps from the network at step 0
  (the distance probe: the initial weights), computed once when the group is built (and again,
  identically, on resume) and read back as ``ctx.setup[probe.name]``.

Bundles compose probes like ``optax.chain`` composes transformations: a bundle is a tuple of
probes and ``active_probes(bundle, step)`` selects the ones due at a step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from normlab.probes.shared import SharedPieces
from normlab.train import NetworkSpec, NetworkState

Array = jax.Array
Schedule = Callable[[int], bool]

BN_MODES = ("train", "eval")


class ProbeContext(NamedTuple):
    """Everything a probe may read about one network at one step (all before the update).

    ``grads``, ``loss`` and ``activations`` come from the training step itself (train mode,
    batch statistics), so probes that need them add no forward or backward pass. ``setup`` maps
    probe names to what their ``setup`` kept from step 0; ``shared`` is the step's
    :class:`~normlab.probes.shared.SharedPieces` (None outside the group step: no sharing).
    """

    spec: NetworkSpec
    state: NetworkState
    x: Array
    y: Array
    loss: Array
    grads: Any
    activations: tuple
    learning_rate: Array
    step: Array
    setup: Any = None
    shared: SharedPieces | None = None

    def piece(self, name: str, key, compute):
        """``compute()`` once per (name, key) in this context's step (see ``SharedPieces``)."""
        return compute() if self.shared is None else self.shared.get(name, key, compute)


@runtime_checkable
class Probe(Protocol):
    # Read-only members: probes are frozen dataclasses.
    @property
    def name(self) -> str: ...

    @property
    def schedule(self) -> Schedule: ...

    @property
    def bn_mode(self) -> str: ...

    def meta(self, spec: NetworkSpec) -> dict: ...

    def measure(self, ctx: ProbeContext) -> dict[str, Array]: ...


# ------------------------------------------------------------------------------------ schedules


@dataclass(frozen=True)
class Every:
    """Due at ``start, start + n, start + 2n, ...`` (and never before ``start``)."""

    n: int
    start: int = 0

    def __call__(self, step: int) -> bool:
        return step >= self.start and (step - self.start) % self.n == 0


@dataclass(frozen=True)
class AtSteps:
    """Due at the listed steps only (e.g. the first few mini-batches, B18)."""

    steps: frozenset[int]

    def __call__(self, step: int) -> bool:
        return step in self.steps


@dataclass(frozen=True)
class AnyOf:
    """Due when any of the schedules is due."""

    schedules: tuple[Schedule, ...]

    def __call__(self, step: int) -> bool:
        return any(schedule(step) for schedule in self.schedules)


def every(n: int, *, start: int = 0) -> Schedule:
    return Every(n, start) if n > 0 else AtSteps(frozenset())


def at_steps(*steps: int) -> Schedule:
    return AtSteps(frozenset(steps))


def never() -> Schedule:
    return AtSteps(frozenset())


PROBE_SPACINGS = ("linear", "log")  # the choices of Config.probe_spacing


def spaced_steps(total_steps: int, points: int, spacing: str = "linear") -> tuple[int, ...]:
    """``points`` distinct measurement steps of a run of ``total_steps`` steps (0 .. T-1), always
    with step 0 and the last step T-1; every step when ``points >= T``.

    Targets, k = 0 .. n-1 (n = points, rounding half up):

    - ``linear``: ``t_k = round(k (T - 1) / (n - 1))``, evenly spaced;
    - ``log``: ``t_k = round(T ** (k / (n - 1))) - 1``, evenly spaced in ``log(step + 1)``: denser
      early, where training changes fastest (T = 1000, n = 5: 0, 5, 31, 177, 999).

    Targets that round onto one step (log's first few) are moved to the next free step, and, where
    that would run past the end, back to the previous free one, so exactly ``min(n, T)`` strictly
    increasing steps come out. Probes measure on the state *before* a step's update, so step T-1
    is the last state a probe can see.
    """
    if total_steps < 1 or points < 0:
        raise ValueError(f"need total_steps >= 1 and points >= 0; got {total_steps}, {points}")
    if spacing not in PROBE_SPACINGS:
        raise ValueError(f"spacing must be one of {', '.join(PROBE_SPACINGS)}; got {spacing!r}")
    last = total_steps - 1
    if points >= total_steps:
        return tuple(range(total_steps))
    if points <= 1:
        return (0,)[:points]
    fractions = [k / (points - 1) for k in range(points)]
    if spacing == "linear":
        targets = [math.floor(f * last + 0.5) for f in fractions]
    else:
        targets = [math.floor(total_steps ** f + 0.5) - 1 for f in fractions]
    steps = list(targets)
    for k in range(1, points):  # forward: never on or before the previous step
        steps[k] = max(steps[k], steps[k - 1] + 1)
    steps[-1] = last
    for k in range(points - 2, -1, -1):  # backward: leave room for the steps after
        steps[k] = min(steps[k], steps[k + 1] - 1)
    return tuple(steps)


def active_probes(bundle: tuple[Probe, ...], step: int) -> tuple[Probe, ...]:
    """The probes of ``bundle`` due at ``step`` (a Python check: no tracing, no device work)."""
    return tuple(probe for probe in bundle if probe.schedule(step))


def probe_setups(probes, specs, states) -> tuple[dict, ...]:
    """Per network, ``{probe.name: probe.setup(spec, state)}`` for the probes that have a setup.

    Leaves are copied: the training step donates (and so invalidates) the states it is given.
    """
    return tuple(
        {probe.name: jax.tree.map(jnp.copy, probe.setup(spec, state)) for probe in probes if hasattr(probe, "setup")}
        for spec, state in zip(specs, states)
    )


class OptionError(ValueError):
    """A probe option outside what the probe accepts: ``option`` names the field, ``requirement``
    says what is allowed and what was given (``normlab.experiments.config`` turns it into the
    one-line error of the setting ``<probe>.<option>``)."""

    def __init__(self, option: str, requirement: str):
        super().__init__(f"{option} {requirement}")
        self.option, self.requirement = option, requirement


def require(accepted: bool, option: str, allowed: str, value) -> None:
    """Raise ``OptionError`` ("<option> must be <allowed>; got <value>") unless ``accepted``."""
    if not accepted:
        raise OptionError(option, f"must be {allowed}; got {value!r}")


def check_bn_mode(mode: str) -> str:
    require(mode in BN_MODES, "bn_mode", "'train' (batch statistics) or 'eval' (running averages)", mode)
    return mode


def check_positive(probe, *options: str) -> None:
    """Each of ``options`` (integer fields of ``probe``) is at least 1."""
    for option in options:
        require(getattr(probe, option) >= 1, option, ">= 1", getattr(probe, option))


def check_finite_positive(probe, *options: str) -> None:
    """Each of ``options`` (number fields of ``probe``) is a finite number > 0."""
    for option in options:
        value = getattr(probe, option)
        require(math.isfinite(value) and value > 0, option, "a finite number > 0", value)


# ------------------------------------------------------------------------------ declared outputs


@dataclass(frozen=True)
class Output:
    """One output array a probe declares.

    ``key``: the array's name; ``{layer}`` expands to one key per name in the meta's ``layers``.
    ``shape``: per entry an int or a dimension name: ``layers``, ``points`` (step sizes), ``bins``
    (histogram bins), ``percentiles`` are sized by the meta (:func:`dimension_sizes`); any other
    name (``units``) is free. ``meaning``: what the value is, with its formula or unit.
    """

    key: str
    shape: tuple = ()
    meaning: str = ""


HEADLINE_REDUCTIONS = ("last", "median", "std")


@dataclass(frozen=True)
class Headline:
    """The one number per network the summary prints for a probe.

    ``key`` names an output (``{layer}`` -> the meta's ``layers[layer]``); ``reduction`` over the
    run: "last" (the final measurement), "median" (median over steps; single measurements of
    landscape-type probes fluctuate), "std" (standard deviation over steps); an array-valued
    key is first averaged over its own axes. ``label`` says it in words.
    """

    key: str
    reduction: str
    label: str
    layer: int = -1

    def __post_init__(self):
        if self.reduction not in HEADLINE_REDUCTIONS:
            raise ValueError(f"headline reduction must be one of {HEADLINE_REDUCTIONS}; got {self.reduction!r}")

    def resolved_key(self, layers) -> str | None:
        if "{layer}" not in self.key:
            return self.key
        return self.key.format(layer=layers[self.layer]) if layers else None

    def to_json(self) -> dict:
        return {"key": self.key, "reduction": self.reduction, "label": self.label, "layer": self.layer}

    @classmethod
    def from_json(cls, value) -> Headline | None:
        """From meta.json; runs written before headlines were declared stored only the key (median)."""
        if isinstance(value, str):
            return cls(value, "median", f"median over the run of {value} (mean over layers/points)")
        return cls(**value) if isinstance(value, dict) else None


def dimension_sizes(meta: dict) -> dict[str, int]:
    """The sizes of the named dimensions that a probe's meta fixes."""
    sizes = {}
    if "layers" in meta:
        sizes["layers"] = len(meta["layers"])
    if "step_sizes" in meta:
        sizes["points"] = len(meta["step_sizes"])
    if "edges" in meta:
        sizes["bins"] = len(meta["edges"]) - 1
    if "percentiles" in meta:
        sizes["percentiles"] = len(meta["percentiles"])
    return sizes


def declared_keys(outputs, meta: dict) -> dict[str, tuple]:
    """``{key: shape}`` of the declared ``outputs`` for one network's meta, patterns expanded.

    Shapes keep their free dimension names; a probe that is not available (``meta["available"]``
    false, e.g. activations of a model that sows none) declares nothing.
    """
    if meta.get("available") is False:
        return {}
    sizes = dimension_sizes(meta)
    shape_of = lambda output: tuple(sizes.get(d, d) if isinstance(d, str) else d for d in output.shape)  # noqa: E731
    keys = {}
    for output in outputs:
        if "{layer}" in output.key:
            for layer in meta.get("layers", ()):
                keys[output.key.format(layer=layer)] = shape_of(output)
        else:
            keys[output.key] = shape_of(output)
    return keys


def probe_meta(probe, spec: NetworkSpec) -> dict:
    """``probe.meta(spec)`` plus the probe's declared ``outputs`` and ``headline`` (JSON), as stored."""
    meta = dict(probe.meta(spec))
    if getattr(probe, "outputs", None):
        meta["outputs"] = [{"key": o.key, "shape": list(o.shape), "meaning": o.meaning} for o in probe.outputs]
    if getattr(probe, "headline", None) is not None:
        meta["headline"] = probe.headline.to_json()
    return meta


def headline_series(headline: Headline, arrays: dict, layers) -> np.ndarray | None:
    """The headline's output at each stored step (an array key averaged over its own axes):
    shape (T,), aligned with ``arrays["step"]``; None if the run has no such output."""
    key = headline.resolved_key(layers or [])
    if key is None or key not in arrays or len(arrays[key]) == 0:
        return None
    values = np.asarray(arrays[key], dtype=np.float64)
    return values.reshape(len(values), -1).mean(axis=1)


def headline_value(headline: Headline, arrays: dict, layers) -> float | None:
    """The headline number of one network's stored arrays (each stacked over steps), or None."""
    per_step = headline_series(headline, arrays, layers)
    if per_step is None:
        return None
    values = np.asarray(arrays[headline.resolved_key(layers or [])], dtype=np.float64)
    if headline.reduction == "last":
        return float(per_step[-1])
    if headline.reduction == "median":
        return float(np.nanmedian(per_step))
    return float(np.nanstd(values))
