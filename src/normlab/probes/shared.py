"""What several probes compute from the same network at the same step, computed once.

Two kinds of sharing, both explicit:

- **Pieces** (:class:`SharedPieces`): the group step creates one ``SharedPieces`` per network
  per step, inside the trace, and hands it to every probe through ``ProbeContext.shared``. A
  probe asks for a piece with ``ctx.piece(name, key, compute)``: the first probe computes it,
  later ones with the same ``(name, key)`` read the traced values. The cache never outlives
  the trace of one step. Every probe declares the piece names it reads in ``needs`` (checked by
  the probe contract test), e.g. landscape, predictiveness and beta_smoothness read one
  ``"gradient_walk"``.
- **Helpers** used by several probe modules (:func:`mode_loss`, :func:`global_norm`) live here.

Why not leave the sharing to XLA: common-subexpression elimination merges identical unrolled or
vmapped walks, but not two identical ``lax.map`` loops (measured with ``cost_analysis``: two walks
cost the sum).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from functools import partial
from typing import TypeVar, cast

import jax
import jax.numpy as jnp

from normlab.train import NetworkSpec, loss_fn

T = TypeVar("T")


class SharedPieces:
    """A per-step, per-network cache of traced values: ``get(name, key, compute)``.

    ``computed[name]`` counts how often a piece was actually computed (once per distinct key);
    ``used`` is the set of piece names asked for (to check probes' ``needs``).
    """

    def __init__(self):
        self._values: dict[tuple[str, Hashable], object] = {}
        self.computed: dict[str, int] = {}
        self.used: set[str] = set()

    def get(self, name: str, key: Hashable, compute: Callable[[], T]) -> T:
        self.used.add(name)
        if (name, key) not in self._values:
            self._values[(name, key)] = compute()
            self.computed[name] = self.computed.get(name, 0) + 1
        return cast(T, self._values[(name, key)])  # stored by ``compute`` for this same (name, key)


@partial(jax.jit, static_argnames="train")
def mode_loss(spec: NetworkSpec, params, rest, x, y, train: bool):
    """The loss in one BN mode; the advanced running statistics are dropped (probes are pure).

    Jitted on its own although it is always called inside a larger jit: JAX then traces the
    model once per parameter shape and reuses that jaxpr for every variant (layer, step size),
    instead of re-tracing the Python model each time. That keeps tracing linear in the number
    of variants (flax's BN running-stat write inspects each tracer's origin, which costs time
    proportional to the enclosing jaxpr: quadratic when every variant is traced inline).
    """
    loss, _aux = loss_fn(spec, params, rest, x, y, train=train)
    return loss


def global_norm(tree):
    """``sqrt(sum_leaves sum(leaf^2))``: the L2 norm of all entries of a pytree."""
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(tree)))
