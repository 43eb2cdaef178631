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

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

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
    name: str
    schedule: Schedule
    bn_mode: str

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


def check_bn_mode(mode: str) -> str:
    if mode not in BN_MODES:
        raise ValueError(f"bn_mode must be 'train' (batch statistics) or 'eval' (running averages); got {mode!r}")
    return mode
