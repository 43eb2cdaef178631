"""normlab's probes inside a training loop the user wrote: their Flax NNX model, their optax
optimizer, their jitted step; normlab measures on a schedule and writes a normal run directory
(``normlab report``, ``normlab export tensorboard`` and ``load_run`` read it as any other run).

Two levels:

- ``Monitor``: give it the models (one per network, e.g. a pair with and without batch norm
  built from one seed), the optimizer and the probes; ``monitor.wrap(train_step)`` returns a step
  ``(x, y) -> {network: loss}`` that measures the due probes on the state *before* the update
  (as normlab's runner does), calls the user's ``train_step(model, optimizer, x, y)`` for every
  network and logs its loss (and accuracy). ``monitor.evaluate(x, y)`` logs test metrics.
- ``measure(probes, spec, state, x, y, step, setup)``: the pure function behind it, to call
  inside one's own ``jax.jit``; ``split_network`` gives the ``(spec, state)`` it needs and
  ``Monitor.record`` stores what it returned.

The model contract is normlab's (docs/INTERFACES.md): ``__call__(x, *, train)``,
``weight_layers`` (the submodules holding a ``kernel``, in forward order), optionally sown
``nnx.Intermediate`` ``activations`` with ``activation_names``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from normlab.errors import NormlabError
from normlab.experiments.build import parameter_count
from normlab.experiments.compiled import evaluate, make_group_eval
from normlab.experiments.runner import METRIC_COLUMNS
from normlab.experiments.start import write_start_views
from normlab.probes import (
    ProbeContext,
    SharedPieces,
    active_probes,
    every,
    expand_bundles,
    make_probe,
    probe_meta,
    probe_setups,
)
from normlab.store import RunStore, collect_provenance, new_run_dir
from normlab.train import NetworkSpec, NetworkState, loss_fn, make_network


def split_network(name: str, model: nnx.Module, tx: optax.GradientTransformation, learning_rate=0.0, *,
                  task: str = "classification") -> tuple[NetworkSpec, NetworkState]:
    """``(spec, state)`` of a user's model: the static half probes read, and its current state.

    ``learning_rate`` is a number or a schedule ``step -> eta`` (probes that step along the
    gradient, such as landscape, use it); ``task`` "classification" or "regression".
    """
    schedule = learning_rate if callable(learning_rate) else optax.constant_schedule(float(learning_rate))
    return make_network(name, model, tx, schedule, task=task)


def current_state(spec: NetworkSpec, model: nnx.Module, optimizer=None) -> NetworkState:
    """The ``NetworkState`` of ``model`` now; the optimizer state from ``optimizer`` (an
    ``nnx.Optimizer``) when given, else a fresh ``spec.tx.init`` (what the ICS probe's
    look-ahead update then uses: exact for plain SGD, which keeps no state)."""
    _graphdef, params, rest = nnx.split(model, nnx.Param, ...)  # type: ignore[misc]  # flax types the split as a variable-length tuple
    fresh = jax.eval_shape(spec.tx.init, params)
    if optimizer is None:
        opt_state = spec.tx.init(params)
    else:  # nnx.Optimizer wraps each leaf in an OptVariable; same leaf order as tx.init's tree
        leaves = [leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf
                  for leaf in jax.tree.leaves(optimizer.opt_state, is_leaf=lambda v: isinstance(v, nnx.Variable))]
        opt_state = jax.tree.unflatten(jax.tree.structure(fresh), leaves)
    return NetworkState(params, rest, opt_state, jnp.asarray(True))


def measure(probes, spec: NetworkSpec, state: NetworkState, x, y, step, setup: dict) -> dict[str, dict]:
    """Every probe of ``probes`` on the network ``state`` and batch ``(x, y)``: pure, jittable.

    The training loss, gradient and activations are computed here in train mode, at ``state``
    (without updating it), exactly as the training step computes them before its update; the
    probes share one ``SharedPieces``. Returns ``{probe.name: {key: array}}``. ``setup`` is this
    network's entry of ``probe_setups`` (taken from the step-0 network).
    """
    (loss, (_accuracy, _rest, activations)), grads = jax.value_and_grad(loss_fn, argnums=1, has_aux=True)(
        spec, state.params, state.rest, x, y
    )
    step = jnp.asarray(step, jnp.int32)
    context = ProbeContext(spec=spec, state=state, x=x, y=y, loss=loss, grads=grads, activations=activations,
                           learning_rate=spec.learning_rate(step), step=step, setup=setup, shared=SharedPieces())
    return {probe.name: probe.measure(context) for probe in probes}


def make_probes(probes, probe_every: int) -> tuple:
    """Probe objects from names, bundle names (cheap, standard, full) or probe objects; names
    get the schedule ``every(probe_every)``, probe objects keep their own."""
    built, names = [], []
    for entry in probes:
        members = [make_probe(n, schedule=every(probe_every)) for n in expand_bundles([entry])] \
            if isinstance(entry, str) else [entry]
        for probe in members:
            if probe.name not in names:
                names.append(probe.name)
                built.append(probe)
    return tuple(built)


class Monitor:
    """Measure normlab probes in one's own loop and write a normlab run directory.

    ``models``: ``{network: nnx.Module}`` (the networks of the group, e.g. ``{"bn": ..., "plain":
    ...}``); ``optimizers``: ``{network: nnx.Optimizer}`` handed to the user's step (and read for
    the ICS probe's look-ahead); ``tx``: the optax transformation they use; ``learning_rate`` a
    number or schedule. ``probes``: names, bundles or probe objects, names measured every
    ``probe_every`` steps. ``settings``: anything to record in the run's config (dataset, model,
    seed, ...), shown by the report. The run directory is ``run_dir`` or a new one under ``out``.
    ``dataset``: the normlab ``Dataset`` trained on, if it is one; then the run also stores the
    start views a ``normlab run`` stores (examples, input histograms, step-0 weights).
    """

    def __init__(self, models: dict, tx: optax.GradientTransformation, *, optimizers: dict | None = None,
                 learning_rate=0.0, probes=("cheap",), probe_every: int = 10, task: str = "classification",
                 out: str | Path = "runs", run_dir: str | Path | None = None, name: str = "own_loop",
                 settings: dict | None = None, total_steps: int | None = None, dataset=None):
        if not models:
            raise NormlabError("Monitor needs at least one model: models={'network name': nnx.Module}")
        if probe_every < 1:
            raise NormlabError(f"probe_every must be a positive number of steps; got {probe_every}")
        self.models = dict(models)
        self.optimizers = dict(optimizers or {})
        unknown = sorted(set(self.optimizers) - set(self.models))
        if unknown:
            raise NormlabError(f"optimizers for unknown network(s) {unknown}; networks: {sorted(self.models)}")
        self.names = tuple(self.models)
        self.probes = make_probes(probes, probe_every)
        pairs = [split_network(n, m, tx, learning_rate, task=task) for n, m in self.models.items()]
        self.specs = tuple(spec for spec, _ in pairs)
        self.setups = probe_setups(self.probes, self.specs, tuple(state for _, state in pairs))
        config = {"preset": name, "networks": list(self.names), "model": type(next(iter(models.values()))).__name__,
                  "probes": [p.name for p in self.probes], "probe_every": probe_every, **(settings or {})}
        path = Path(run_dir) if run_dir is not None else new_run_dir(Path(out), name)
        self.store = RunStore.create(path, config=config, provenance=collect_provenance(
            seeds={k: config[k] for k in ("seed", "data_seed") if k in config}), metric_columns=METRIC_COLUMNS)
        for probe in self.probes:
            self.store.set_probe_meta(probe.name, {"networks": {s.name: probe_meta(probe, s) for s in self.specs}})
        self.store.update_info(param_counts={s.name: parameter_count(st) for s, st in pairs}, total_steps=total_steps)
        if dataset is not None:  # the start views read only the dataset's name and the data seed
            start = SimpleNamespace(dataset=dataset.name, data_seed=int(config.get("data_seed", 0)))
            write_start_views(self.store, start, dataset, self.specs, tuple(state for _, state in pairs))
        self.step = 0
        self._compiled: dict[frozenset, Callable] = {}
        self._group_eval = make_group_eval(self.specs)
        self._started = time.perf_counter()

    @property
    def path(self) -> Path:
        return self.store.path

    def states(self) -> tuple[NetworkState, ...]:
        return tuple(current_state(spec, self.models[spec.name], self.optimizers.get(spec.name))
                     for spec in self.specs)

    def observe(self, x, y, step: int | None = None) -> dict:
        """Measure the probes due at ``step`` (default: the monitor's step counter) on the
        models as they are now and store them; returns ``{network: {probe: {key: array}}}``."""
        step = self.step if step is None else step
        due = active_probes(self.probes, step)
        if not due:
            return {}
        key = frozenset(p.name for p in due)
        if key not in self._compiled:
            self._compiled[key] = jax.jit(lambda states, x, y, s, setups: tuple(
                measure(due, spec, state, x, y, s, setup) for spec, state, setup in zip(self.specs, states, setups)))
        outputs = self._compiled[key](self.states(), jnp.asarray(x), jnp.asarray(y), jnp.asarray(step, jnp.int32),
                                      self.setups)
        result = dict(zip(self.names, outputs))
        self.record(step, result)
        return result

    def record(self, step: int, outputs: dict) -> None:
        """Store ``{network: {probe: {key: array}}}`` measured at ``step`` (e.g. by ``measure``
        inside one's own jit)."""
        for network, by_probe in outputs.items():
            for probe_name, arrays in by_probe.items():
                self.store.append_probe(probe_name, network, step, {k: np.asarray(v) for k, v in arrays.items()})

    def log(self, step: int, network: str, **metrics) -> None:
        """A training row (``loss``, ``accuracy``, ``lr``) of ``network`` at ``step``."""
        self.store.append_metrics([{"step": step, "network": network, "kind": "train",
                                    **{k: float(v) for k, v in metrics.items()}}])

    def evaluate(self, x, y, step: int | None = None, *, prefix: str = "test") -> dict[str, tuple[float, float]]:
        """Mean loss and accuracy of every network on ``(x, y)`` in eval mode, logged as
        ``<prefix>_loss`` / ``<prefix>_accuracy`` (prefix "test" or "train_eval")."""
        if prefix not in ("test", "train_eval"):
            raise NormlabError(f"evaluate prefix must be 'test' or 'train_eval'; got {prefix!r}")
        step = self.step if step is None else step
        values = evaluate(self._group_eval, self.states(), np.asarray(x), np.asarray(y))
        rows = []
        for name, (loss, accuracy) in zip(self.names, values):
            row = {"step": step, "network": name, "kind": "eval", f"{prefix}_loss": float(loss)}
            if self.specs[0].task == "classification":
                row[f"{prefix}_accuracy"] = float(accuracy)
            rows.append(row)
        self.store.append_metrics(rows)
        return {name: (float(v[0]), float(v[1])) for name, v in zip(self.names, values)}

    def wrap(self, train_step: Callable) -> Callable:
        """``train_step(model, optimizer, x, y) -> loss | (loss, accuracy) | {"loss": ..., ...}``
        (the user's own, jitted as they like) as a step ``(x, y) -> {network: loss}`` of the
        whole group: probes first (state before the update), then each network's step, logged."""

        def step(x, y):
            self.observe(x, y)
            losses = {}
            for spec in self.specs:
                name = spec.name
                metrics = _as_metrics(train_step(self.models[name], self.optimizers.get(name), x, y))
                metrics["lr"] = float(spec.learning_rate(self.step))
                self.log(self.step, name, **metrics)
                losses[name] = metrics["loss"]
            self.step += 1
            return losses

        return step

    def save_checkpoint(self, step: int | None = None, *, keep: int = 2) -> None:
        """The networks' states in normlab's checkpoint format (``restore_model`` reads them)."""
        self.store.save_checkpoint(self.step if step is None else step, self.states(), keep=keep)

    def close(self, status: str = "completed") -> Path:
        """Flush everything and mark the run ``status``; returns the run directory."""
        self.store.flush()
        self.store.set_status(status, steps_done=self.step, train_seconds=time.perf_counter() - self._started,
                              diverged={})
        return self.path

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, exc_type, *rest) -> None:
        self.close("completed" if exc_type is None else ("interrupted" if exc_type is KeyboardInterrupt else "failed"))


def _as_metrics(result) -> dict[str, float]:
    """The user's step result as ``{"loss": ..., ["accuracy": ...]}``."""
    if isinstance(result, dict):
        if "loss" not in result:
            raise NormlabError(f"the training step returned a dict without 'loss': keys {sorted(result)}")
        return {k: float(v) for k, v in result.items() if k in ("loss", "accuracy")}
    if isinstance(result, tuple):
        return {"loss": float(result[0]), "accuracy": float(result[1])}
    return {"loss": float(result)}


def restore_model(model: nnx.Module, run_dir: str | Path, *, network: str | None = None,
                  step: int | None = None) -> int:
    """Load network ``network``'s parameters and state (BN running statistics, rng counters) of
    checkpoint ``step`` (default: the latest) of a normlab run into ``model``, in place; returns
    the checkpoint's step.

    ``model`` must have the same structure as the network that was trained (e.g. your own NNX
    class with the same layers, or ``normlab.build_model`` with the run's settings); a mismatch is
    a ``NormlabError`` naming the first path that differs. ``network`` defaults to the run's only
    network; a group's checkpoint holds one ``NetworkState`` per network, in config order.
    """
    from normlab.store import load_run

    run = load_run(run_dir)
    names = list(run.config.get("networks") or [])
    if network is None:
        if len(names) != 1:
            raise NormlabError(f"run {run.path} has networks {names}: pass network=<one of them>")
        network = names[0]
    if network not in names:
        raise NormlabError(f"network {network!r} is not in run {run.path}; networks: {names}")
    index = names.index(network)
    _graphdef, params, rest = nnx.split(model, nnx.Param, ...)  # type: ignore[misc]  # flax types the split as a variable-length tuple
    step, params = run.restore_checkpoint(params, step=step, prefix=f"[{index}].params")
    _, rest = run.restore_checkpoint(rest, step=step, prefix=f"[{index}].rest")
    nnx.update(model, jax.tree.map(jnp.asarray, params), jax.tree.map(jnp.asarray, rest))
    return step
