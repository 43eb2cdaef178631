"""The training loop's bookkeeping between host syncs: results waiting on the device, divergence,
and the state the loop carries from step to step.

The loop queues each step's device arrays (``add``) and reads them back every ``log_every``
steps (``read_back``), the only host syncs of training. Reading back turns them into metric rows
and probe entries and records divergence: a network whose loss is not finite at step ``s`` has
diverged at ``s`` (its first such step); nothing of it after ``s`` is kept. ``LoopState`` holds
what changes as the loop runs (the states, the step, the pending results) and moves them to the
store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclass
class ReadBack:
    """``rows`` for ``append_metrics``, ``probes`` as ``(probe, network, step, arrays)`` for
    ``append_probe``, ``losses`` (networks,) of the last step read (None if nothing was pending)."""

    rows: list[dict]
    probes: list[tuple[str, str, int, dict]]
    losses: np.ndarray | None


@dataclass
class PendingResults:
    """``names``: the networks; ``learning_rates[s]``: the rate of step ``s``; ``diverged``:
    network -> divergence step (carried over a resume)."""

    names: tuple[str, ...]
    learning_rates: np.ndarray
    diverged: dict[str, int] = field(default_factory=dict)
    _metrics: list = field(default_factory=list)
    _probes: list = field(default_factory=list)

    def add(self, step: int, metrics, outputs=None) -> None:
        """Queue step ``step``'s metrics (networks, 2) = (loss, accuracy) and probe outputs
        (per network, ``{probe: {key: array}}``; None when no probe was due)."""
        self._metrics.append((step, metrics))
        if outputs is not None:
            self._probes.append((step, outputs))

    def _stopped(self, name: str, step: int) -> bool:
        return name in self.diverged and step > self.diverged[name]

    def read_back(self) -> ReadBack:
        """Move everything queued to the host (one sync) and empty the queue."""
        if not self._metrics:
            return ReadBack([], [], None)
        values = np.asarray(jax.device_get(jnp.stack([m for _, m in self._metrics])))
        rows = []
        for (step, _), per_network in zip(self._metrics, values):
            for name, (loss, accuracy) in zip(self.names, per_network):
                if self._stopped(name, step):
                    continue  # a diverged network stopped: no rows after its divergence step
                if not math.isfinite(loss) and name not in self.diverged:
                    self.diverged[name] = step
                rows.append({"step": step, "network": name, "kind": "train", "loss": float(loss),
                             "accuracy": float(accuracy), "lr": float(self.learning_rates[step])})
        probes = []
        for step, outputs in self._probes:
            for name, per_probe in zip(self.names, jax.device_get(outputs)):
                if self._stopped(name, step):
                    continue
                for probe_name, arrays in per_probe.items():
                    if arrays:
                        probes.append((probe_name, name, step, {k: np.asarray(v) for k, v in arrays.items()}))
        self._metrics.clear()
        self._probes.clear()
        return ReadBack(rows, probes, values[-1, :, 0])

    @property
    def all_diverged(self) -> bool:
        return len(self.diverged) == len(self.names)


@dataclass
class LoopState:
    """What the training loop changes as it runs: the networks' ``states`` (each step returns new
    ones and donates its inputs), the next ``step`` to train, and the ``pending`` results of the
    steps taken since the last read-back. ``store`` receives everything (a ``RunStore``)."""

    states: tuple
    step: int
    pending: PendingResults
    store: Any

    @property
    def diverged(self) -> dict[str, int]:
        """Network -> divergence step (the same dict as ``pending.diverged``)."""
        return self.pending.diverged

    def advance(self, states: tuple, metrics, outputs=None) -> None:
        """Record the step just taken: its new states, its results queued (``outputs`` None when no
        probe was due)."""
        self.pending.add(self.step, metrics, outputs)
        self.states = states
        self.step += 1

    def read_back(self) -> np.ndarray | None:
        """Move the pending results to the store (the loop's only host syncs); the losses of the
        last step read, None if nothing was pending."""
        result = self.pending.read_back()
        if result.losses is None:
            return None
        self.store.append_metrics(result.rows)
        for probe_name, network, step, arrays in result.probes:
            self.store.append_probe(probe_name, network, step, arrays)
        return result.losses

    def checkpoint(self) -> None:
        """Flush the store and checkpoint the states at ``step`` with the divergences so far."""
        self.store.flush()
        self.store.save_checkpoint(self.step, self.states, extra={"diverged": self.diverged})
