"""Run an experiment: build the group of networks, train them side by side, probe, store.

All networks of a group are built from one seed (every shared parameter identical at step 0),
see the identical batch sequence, and are stepped by *one* compiled function per step. The host
reads metrics back only every ``log_every`` steps; batches are gathered while the previous step
runs (JAX dispatch is asynchronous). Everything a run knows is written to its run directory
through ``normlab.store``; a run can be resumed from its last checkpoint to the same result.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from normlab.data import BatchIterator, Dataset, augment_cifar, load_dataset
from normlab.errors import NormlabError
from normlab.experiments.config import Config, from_dict, to_dict
from normlab.experiments.pending import PendingResults
from normlab.experiments.presets import PRESETS
from normlab.models import build_model
from normlab.norms import norm_options as accepted_norm_options
from normlab.probes import (ProbeContext, SharedPieces, active_probes, at_steps, every, expand_bundles, make_probe,
                            probe_meta, probe_setups)
from normlab.store import RunStore, collect_provenance, load_run, new_run_dir
from normlab.train.compile_time import CompileTimer
from normlab.train import NetworkSpec, NetworkState, evaluate_batch, make_network, make_optimizer, train_step

TRAIN_COLUMNS = ["loss", "accuracy", "lr"]  # kind "train": the step's batch, before its update
EVAL_COLUMNS = ["test_loss", "test_accuracy", "train_eval_loss", "train_eval_accuracy"]  # kind "eval"
METRIC_COLUMNS = TRAIN_COLUMNS + EVAL_COLUMNS
EVAL_CHUNK = 500

# ------------------------------------------------------------------------------------- building


def total_steps(config: Config, dataset: Dataset) -> int:
    """Steps of the run: ``steps`` if set, else ``epochs`` passes over the training split."""
    if config.steps > 0:
        return config.steps
    if config.full_batch:
        return config.epochs
    return config.epochs * batch_iterator(config, dataset).steps_per_epoch


def batch_iterator(config: Config, dataset: Dataset) -> BatchIterator:
    n = len(dataset.x_train)
    batch_size = n if config.full_batch else min(config.batch_size, n)
    return BatchIterator(n, batch_size, seed=config.data_seed, shuffle=not config.full_batch, drop_last=True)


def norm_options(config: Config, norm: str) -> dict:
    """The running-statistics settings of ``config``, for the norms that keep running statistics."""
    wanted = {"momentum": config.bn_momentum, "running_var": config.bn_running_var}
    accepted = accepted_norm_options(norm)
    return {key: value for key, value in wanted.items() if key in accepted}


def build_network_model(config: Config, dataset: Dataset, norm: str) -> nnx.Module:
    """One network of the group; the same seed for every network (the pairing)."""
    rngs = nnx.Rngs(params=config.seed, dropout=config.seed + 1, noise=config.seed + 2)
    options = dict(
        input_shape=dataset.input_shape,
        num_classes=dataset.num_classes,
        norm=norm,
        norm_options=norm_options(config, norm),
        rngs=rngs,
        width=config.width,
        bias_before_norm=config.bias_before_norm,
        norm_exclude=config.norm_exclude,
        norm_position=config.norm_position,
        dropout=config.dropout,
        conv_path=config.conv_path,
    )
    if config.activation:
        options["activation"] = config.activation
    return build_model(config.model, **options)


def build_group(config: Config, dataset: Dataset) -> tuple[tuple[NetworkSpec, ...], tuple[NetworkState, ...]]:
    steps = total_steps(config, dataset)
    specs, states = [], []
    for norm in config.networks:
        model = build_network_model(config, dataset, norm)
        tx, schedule = make_optimizer(
            config.optimizer,
            config.lr,
            total_steps=steps,
            momentum=config.momentum,
            schedule=config.lr_schedule,
            weight_decay=config.weight_decay,
        )
        spec, state = make_network(norm, model, tx, schedule, task=dataset.task)
        specs.append(spec)
        states.append(state)
    return tuple(specs), tuple(states)


def parameter_count(state: NetworkState) -> int:
    """Trainable parameters (``nnx.Param`` entries) of a network."""
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(state.params)))


_WALK = ("landscape", "predictiveness", "beta_smoothness")

# Which setting reaches which probe field: setting -> {probe: field} (a tuple field unpacks a pair).
# landscape, predictiveness and beta_smoothness read the same grid settings: one grid is what lets
# them share a single gradient walk inside the compiled step. Checked against every probe's
# fields by tests/experiments/test_runner.py; a probe not named here gets only its schedule.
PROBE_SETTINGS: dict[str, dict[str, str | tuple[str, str]]] = {
    "probe_bn_mode": {name: "bn_mode" for name in ("activations", "ics", *_WALK, "divergence")},
    "hist_bins": {"activations": "bins"},
    "hist_range": {"activations": "value_range"},
    "tracked_layer": {"activations": "tracked_layer"},
    "tracked_unit": {"activations": "tracked_unit"},
    "tracked_param_layer": {"gradients": "tracked_layer"},
    "tracked_param_index": {"gradients": "tracked_index"},
    "ics_strategy": {"ics": "strategy"},
    "landscape_points": {name: "points" for name in _WALK},
    "landscape_range": {name: ("low", "high") for name in _WALK},
    "landscape_spacing": {name: "spacing" for name in _WALK},
    "landscape_batching": {name: "batching" for name in _WALK},
    "divergence_points": {"divergence": "points"},
    "divergence_range": {"divergence": ("low", "high")},
}


def probe_settings(config: Config, name: str) -> dict:
    """The options of probe ``name`` from ``config`` (``PROBE_SETTINGS``), with its schedule:
    ``every(probe_every)``, divergence (B18) at ``divergence_steps``."""
    if name == "divergence":
        options = {"schedule": at_steps(*config.divergence_steps), "spacing": "log"}
    else:
        options = {"schedule": every(config.probe_every)}
    for setting, targets in PROBE_SETTINGS.items():
        target = targets.get(name)
        value = getattr(config, setting)
        if isinstance(target, tuple):
            options.update(zip(target, value))
        elif target is not None:
            options[target] = value
    return options


def build_probes(config: Config) -> tuple:
    """The probe bundle of ``config``; bundle names (cheap, standard, full) expand to their members."""
    return tuple(make_probe(name, **probe_settings(config, name)) for name in expand_bundles(config.probes))


# ------------------------------------------------------------------------------ compiled steps


def make_group_step(specs: tuple[NetworkSpec, ...], probes: tuple) -> Callable:
    """One jitted function stepping every network of the group (and measuring ``probes``).

    ``(states, x, y, step, setups) -> (new_states, metrics (networks, 2), probe_outputs)``;
    ``metrics[i] = (loss, accuracy)`` of network i on this batch before its update; ``setups``
    from ``probe_setups``. Each network's probes share one ``SharedPieces``, created here inside
    the trace: a piece several probes need is computed once per network and step.
    """

    def group_step(states, x, y, step, setups):
        new_states, metrics, outputs = [], [], []
        for spec, state, setup in zip(specs, states, setups):
            new_state, result = train_step(spec, state, x, y)
            new_states.append(new_state)
            metrics.append(jnp.stack([result.loss, result.accuracy.astype(result.loss.dtype)]))
            if probes:
                context = ProbeContext(
                    spec=spec,
                    state=state,
                    x=x,
                    y=y,
                    loss=result.loss,
                    grads=result.grads,
                    activations=result.intermediates,
                    learning_rate=spec.learning_rate(step),
                    step=step,
                    setup=setup,
                    shared=SharedPieces(),
                )
                outputs.append({probe.name: probe.measure(context) for probe in probes})
        return tuple(new_states), jnp.stack(metrics), tuple(outputs)

    return jax.jit(group_step, donate_argnums=(0,))


def make_group_eval(specs: tuple[NetworkSpec, ...]) -> Callable:
    """Jitted ``(states, x, y, mask) -> (networks, 2)`` summed loss and correct count, eval mode."""

    def group_eval(states, x, y, mask):
        return jnp.stack([jnp.stack(evaluate_batch(spec, state, x, y, mask)) for spec, state in zip(specs, states)])

    return jax.jit(group_eval)


def evaluate(group_eval, states, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean loss and accuracy of every network over ``(x, y)``: shape (networks, 2)."""
    n = len(x)
    totals = None
    for start in range(0, n, EVAL_CHUNK):
        xb, yb = x[start : start + EVAL_CHUNK], y[start : start + EVAL_CHUNK]
        mask = np.ones(len(xb), np.float32)
        if len(xb) < EVAL_CHUNK and n > EVAL_CHUNK:  # pad to one compiled shape
            pad = EVAL_CHUNK - len(xb)
            xb = np.concatenate([xb, np.zeros((pad,) + xb.shape[1:], xb.dtype)])
            yb = np.concatenate([yb, np.zeros((pad,) + yb.shape[1:], yb.dtype)])
            mask = np.concatenate([mask, np.zeros(pad, np.float32)])
        part = group_eval(states, xb, yb, mask)
        totals = part if totals is None else totals + part
    return np.asarray(totals) / n


# ------------------------------------------------------------------------------------ the loop


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by a signal; its store holds a checkpoint at the step it stopped."""

    def __init__(self, path: Path, step: int):
        super().__init__(f"interrupted at step {step}")
        self.path, self.step = path, step


@dataclass
class RunResult:
    path: Path
    status: str
    steps: int
    diverged: dict[str, int]
    final: dict[str, dict[str, float]] = field(default_factory=dict)
    report: Path | None = None  # the report.html written at the end (Config.report), if any


@dataclass
class _Progress:
    """A rich progress bar with the losses of every network; silent when ``quiet``."""

    total: int
    names: tuple[str, ...]
    quiet: bool
    start: int = 0

    def __enter__(self):
        self._bar = None
        if not self.quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[losses]}"),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("train", total=self.total, completed=self.start, losses="")
        return self

    def update(self, step: int, losses: np.ndarray) -> None:
        if self._bar is not None:
            text = "  ".join(f"{name} {loss:.4g}" for name, loss in zip(self.names, losses))
            self._bar.update(self._task, completed=step, losses=text)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()


class _StopRequests:
    """Turns SIGINT/SIGTERM into a request the loop honours between steps.

    Stopping between steps keeps the state, the step counter and the pending metrics consistent,
    so the checkpoint written on the way out resumes exactly. A second signal stops at once.
    """

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: signals stay with their owner
                pass
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def run_experiment(config: Config, *, out: str | Path = "runs", quiet: bool = False, run_dir: str | Path | None = None,
                   report: bool | None = None) -> RunResult:
    """Run ``config`` into a new run directory under ``out`` (or exactly ``run_dir``).

    The report (figures and ``report.html`` under ``<run>/report``) is written at the end when
    ``report`` is true, or, if it is None, when ``config.report`` is (sweeps report their members
    together, so they pass False).
    """
    dataset = load_dataset(config.dataset, normalize=config.input_normalization or None)
    specs, states = build_group(config, dataset)  # builds and validates before anything is written
    probes = build_probes(config)
    path = Path(run_dir) if run_dir is not None else new_run_dir(Path(out), config.preset)
    store = RunStore.create(
        path,
        config=to_dict(config),
        provenance=collect_provenance(seeds={"seed": config.seed, "data_seed": config.data_seed}),
        metric_columns=METRIC_COLUMNS,
    )
    for probe in probes:
        store.set_probe_meta(probe.name, {"networks": {spec.name: probe_meta(probe, spec) for spec in specs}})
    store.update_info(
        preset_defaults=to_dict(PRESETS[config.preset].config) if config.preset in PRESETS else None,
        param_counts={spec.name: parameter_count(state) for spec, state in zip(specs, states)},
        total_steps=total_steps(config, dataset),
    )
    result = _train(config, dataset, specs, states, probe_setups(probes, specs, states), probes, store, start=0,
                    quiet=quiet)
    return _with_report(result, config.report if report is None else report)


def resume_experiment(path: str | Path, *, quiet: bool = False) -> RunResult:
    """Continue an interrupted run from its last checkpoint; same result as an uninterrupted run."""
    run = load_run(path)
    if run.status == "completed":
        raise NormlabError(f"run {path} is already completed; nothing to resume")
    config = from_dict(run.config)
    dataset = load_dataset(config.dataset, normalize=config.input_normalization or None)
    specs, states = build_group(config, dataset)
    probes = build_probes(config)
    setups = probe_setups(probes, specs, states)  # from the step-0 networks, as in the first run
    store = RunStore.open(path)
    start, diverged = 0, {}
    if store.latest_checkpoint_step() is not None:
        start, restored = store.restore_checkpoint(states)
        states = jax.tree.map(jnp.asarray, restored)
        diverged = dict(store.checkpoint_extra(start).get("diverged", {}))
    # Rows of step `start` on are measured again, identically; the checkpoint itself stays.
    store.truncate_after(start - 1, keep_checkpoints=True)
    store.set_status("running", resumed_from=start, diverged=diverged)
    result = _train(config, dataset, specs, states, setups, probes, store, start=start, quiet=quiet,
                    diverged=diverged)
    return _with_report(result, config.report)


def _with_report(result: RunResult, wanted: bool) -> RunResult:
    """``result`` with the run's report written (the report stage is optional for a bare install)."""
    if not wanted:
        return result
    try:
        from normlab.report import write_report
    except ImportError:
        return result
    return replace(result, report=write_report([result.path], out=result.path / "report"))


def _train(config, dataset, specs, states, setups, probes, store, *, start: int, quiet: bool,
           diverged=None) -> RunResult:
    names = tuple(spec.name for spec in specs)
    total = total_steps(config, dataset)
    batches = batch_iterator(config, dataset)
    eval_every = config.eval_every or (total if config.full_batch else batches.steps_per_epoch)
    checkpoint_every = config.checkpoint_every or eval_every
    group_eval = make_group_eval(specs)
    compiled: dict[frozenset, Callable] = {}
    train_eval_x, train_eval_y = _train_eval_subset(config, dataset)
    full_batch = (jnp.asarray(dataset.x_train), jnp.asarray(dataset.y_train)) if config.full_batch else None

    learning_rates = np.asarray(jax.vmap(specs[0].learning_rate)(jnp.arange(total + 1)))
    pending = PendingResults(names, learning_rates, dict(diverged or {}))
    diverged = pending.diverged  # the same dict: updated by read_back
    status = "running"
    step = start

    def read_back():
        """Move the pending device results to the store (the only host syncs of the loop)."""
        result = pending.read_back()
        if result.losses is None:
            return None
        store.append_metrics(result.rows)
        for probe_name, network, s, arrays in result.probes:
            store.append_probe(probe_name, network, s, arrays)
        return result.losses

    def run_evaluation(s):
        rows = []
        test = evaluate(group_eval, states, dataset.x_test, dataset.y_test)
        train_part = evaluate(group_eval, states, train_eval_x, train_eval_y)
        for i, name in enumerate(names):
            if name in diverged:
                continue
            row = {"step": s, "network": name, "kind": "eval", "test_loss": float(test[i, 0]),
                   "train_eval_loss": float(train_part[i, 0])}
            if dataset.task == "classification":
                row |= {"test_accuracy": float(test[i, 1]), "train_eval_accuracy": float(train_part[i, 1])}
            rows.append(row)
        store.append_metrics(rows)

    def save(s):
        store.flush()
        store.save_checkpoint(s, states, extra={"diverged": diverged})

    started = time.perf_counter()
    try:
        with CompileTimer() as compile_timer, _StopRequests() as stop, _Progress(total, names, quiet, start) as progress:
            if start % eval_every == 0:  # step 0, or a resumed run whose checkpoint sits on an evaluation
                run_evaluation(start)
                store.flush()
            while step < total:
                if stop.requested:
                    raise KeyboardInterrupt
                x, y = full_batch if full_batch is not None else _batch(config, dataset, batches, step)
                due = active_probes(probes, step)
                key = frozenset(p.name for p in due)
                if key not in compiled:
                    compiled[key] = make_group_step(specs, due)
                states, metrics, outputs = compiled[key](states, x, y, jnp.asarray(step, jnp.int32), setups)
                pending.add(step, metrics, outputs if due else None)
                step += 1
                at_eval = step % eval_every == 0 or step == total
                if step % config.log_every == 0 or at_eval:
                    known = len(diverged)
                    losses = read_back()
                    progress.update(step, losses)
                    if len(diverged) != known:
                        store.update_info(diverged=diverged)
                    if pending.all_diverged:
                        break
                if at_eval:
                    run_evaluation(step)
                    store.flush()
                if step % checkpoint_every == 0 and step < total:
                    save(step)
        read_back()
        status = "diverged" if pending.all_diverged else "completed"
        store.flush()
        store.set_status(status, diverged=diverged, steps_done=step, train_seconds=time.perf_counter() - started,
                         compile_seconds=compile_timer.seconds, compilations=compile_timer.compilations)
    except KeyboardInterrupt:
        checkpointed = step
        try:
            read_back()
            save(step)
        except Exception:  # a second signal inside a compiled call: its donated inputs are gone
            checkpointed = store.latest_checkpoint_step() or 0
            store.truncate_after(checkpointed - 1, keep_checkpoints=True)
        store.set_status("interrupted", diverged=diverged, steps_done=checkpointed)
        raise RunInterrupted(store.path, checkpointed) from None
    except Exception as error:
        store.flush()
        store.set_status("failed", error=f"{type(error).__name__}: {error}", steps_done=step)
        raise
    return RunResult(path=store.path, status=status, steps=step, diverged=dict(diverged), final=final_metrics(store.path))


def _batch(config: Config, dataset: Dataset, batches: BatchIterator, step: int):
    indices = batches.indices_at(step)
    x = dataset.x_train[indices]
    if config.augment:
        x = augment_cifar(x, seed=config.data_seed, step=step)
    return jnp.asarray(x), jnp.asarray(dataset.y_train[indices])


def _train_eval_subset(config: Config, dataset: Dataset):
    """A fixed subset of the training split, evaluated in eval mode like the test split."""
    n = min(config.train_eval_size, len(dataset.x_train))
    order = np.random.default_rng(config.data_seed).permutation(len(dataset.x_train))[:n]
    order.sort()
    return dataset.x_train[order], dataset.y_train[order]


def final_metrics(path: str | Path) -> dict[str, dict[str, float]]:
    """Final and best evaluation metrics of every network of a stored run (``Run.final_metrics``)."""
    return load_run(path).final_metrics(columns=EVAL_COLUMNS, best=("test_accuracy",))
