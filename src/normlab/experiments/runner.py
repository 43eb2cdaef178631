"""Run an experiment: the training loop over the group (built in ``experiments.build``, stepped by
the functions of ``experiments.compiled``) and the store; its pending-results bookkeeping is
``experiments.pending``, the progress line ``experiments.progress``, signals
``experiments.interrupts``.

All networks of a group are built from one seed (every shared parameter identical at step 0),
see the identical batch sequence, and are stepped together at every step (by one compiled
function per network, or one for the group with ``group_step=fused``). The host
reads metrics back only every ``log_every`` steps; batches are gathered while the previous step
runs (JAX dispatch is asynchronous). Everything a run knows is written to its run directory
through ``normlab.store``; a run can be resumed from its last checkpoint to the same result.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from normlab.data import BatchIterator, Dataset, augment_cifar
from normlab.errors import NormlabError, fault_point
from normlab.experiments.build import (  # noqa: F401 (re-exported: the runner's building API)
    batch_iterator,
    build_group,
    build_network_model,
    build_probes,
    load_config_dataset,
    norm_options,
    parameter_count,
    prepare,
    probe_settings,
    total_steps,
)
from normlab.experiments.checks import probe_schedule_note
from normlab.experiments.compiled import EVAL_CHUNK, evaluate, make_group_eval, make_group_step  # noqa: F401
from normlab.experiments.config import Config, from_dict, to_dict
from normlab.experiments.interrupts import ReportInterrupted, RunInterrupted, StopRequests
from normlab.experiments.pending import LoopState, PendingResults
from normlab.experiments.presets import PRESETS, preset_defaults
from normlab.experiments.progress import Progress
from normlab.experiments.start import write_start_views
from normlab.probes import active_probes, at_steps, probe_meta, probe_setups
from normlab.probes.budget import budget_schedules, measured_costs
from normlab.store import RunStore, check_output_root, collect_provenance, load_run, new_run_dir
from normlab.train import training_loss_reduction
from normlab.train.compile_cache import (
    CacheEvents,
    active_compile_cache_dir,
    compile_cache_dir,
    configure_compile_cache,
)
from normlab.train.compile_time import CompileTimer

TRAIN_COLUMNS = ["loss", "accuracy", "lr"]  # kind "train": the step's batch, before its update
EVAL_COLUMNS = ["test_loss", "test_accuracy", "train_eval_loss", "train_eval_accuracy"]  # kind "eval"
METRIC_COLUMNS = TRAIN_COLUMNS + EVAL_COLUMNS

# ------------------------------------------------------------------------------------ the loop


@dataclass
class RunResult:
    path: Path
    status: str
    steps: int
    diverged: dict[str, int]
    final: dict[str, dict[str, float]] = field(default_factory=dict)
    report: Path | None = None  # the report.html written at the end (Config.report), if any


def run_experiment(config: Config, *, out: str | Path = "runs", quiet: bool = False, run_dir: str | Path | None = None,
                   report: bool | None = None, on_progress: Callable[[int, int], None] | None = None) -> RunResult:
    """Run ``config`` into a new run directory under ``out`` (or exactly ``run_dir``).

    The report (figures and ``report.html`` under ``<run>/report``) is written at the end when
    ``report`` is true, or, if it is None, when ``config.report`` is (sweeps report their members
    together, so they pass False). ``on_progress(step, total)`` is called whenever the progress
    bar would move (every ``log_every`` steps and at evaluations), also when ``quiet``; an
    exception it raises stops the run as Ctrl-C does (a ``KeyboardInterrupt`` checkpoints first).
    """
    configure_compile_cache(compile_cache_dir())
    check_output_root(Path(run_dir).parent if run_dir is not None else out)
    dataset, specs, states = prepare(config)  # builds and validates before anything is written
    probes = build_probes(config, total_steps(config, dataset))
    note = probe_schedule_note(config, total_steps(config, dataset))
    if note:
        print(f"normlab: warning: {note}", file=sys.stderr, flush=True)
    path = Path(run_dir) if run_dir is not None else new_run_dir(Path(out), config.preset)
    store = RunStore.create(
        path,
        config=to_dict(config),
        provenance=collect_provenance(seeds={"seed": config.seed, "data_seed": config.data_seed}),
        metric_columns=METRIC_COLUMNS,
    )
    compiled: dict[frozenset, Callable] = {}
    if config.step_cost_repeats > 0:
        store.update_info(step_seconds=network_step_seconds(config, dataset, specs, states))
    if config.probe_budget > 0:
        probe_schedule = choose_probe_schedule(config, dataset, specs, states, probes, compiled)
        store.update_info(probe_schedule=probe_schedule)
        probes = scheduled_probes(probes, probe_schedule)
    for probe in probes:
        meta = {"networks": {spec.name: probe_meta(probe, spec) for spec in specs}}
        if config.probe_budget > 0 and probe.name in probe_schedule["steps"]:
            meta["steps"] = probe_schedule["steps"][probe.name]
        store.set_probe_meta(probe.name, meta)
    store.update_info(
        preset_defaults=to_dict(preset_defaults(config)) if config.preset in PRESETS else None,
        param_counts={spec.name: parameter_count(state) for spec, state in zip(specs, states)},
        total_steps=total_steps(config, dataset),
        # How the losses reduce over examples, so every figure and table can say which it shows.
        loss_reduction={"train": training_loss_reduction(specs[0]), "eval": "mean"},
    )
    write_start_views(store, config, dataset, specs, states)  # before training donates the states
    result = _train(config, dataset, specs, states, probe_setups(probes, specs, states), probes, store, start=0,
                    quiet=quiet, compiled=compiled, on_progress=on_progress)
    return _with_report(result, config.report if report is None else report)


def resume_experiment(path: str | Path, *, quiet: bool = False,
                      on_progress: Callable[[int, int], None] | None = None) -> RunResult:
    """Continue an interrupted run from its last checkpoint; same result as an uninterrupted run
    (``on_progress`` as for ``run_experiment``)."""
    configure_compile_cache(compile_cache_dir())
    run = load_run(path)
    if run.status in ("completed", "diverged"):
        hint = f"; rebuild its report with `normlab report {path}`" if run.info.get("report") == "interrupted" else ""
        raise NormlabError(f"run {path} is already finished (status {run.status}); nothing to resume{hint}")
    config = from_dict(run.config)
    dataset, specs, states = prepare(config)
    probes = build_probes(config, total_steps(config, dataset))
    setups = probe_setups(probes, specs, states)  # from the step-0 networks, as in the first run
    if "probe_schedule" in run.info:  # the steps the run chose at its start, never re-measured
        probes = scheduled_probes(probes, run.info["probe_schedule"])
    store = RunStore.open(path)
    start, diverged = 0, {}
    valid, damaged = store.newest_valid_checkpoint()
    if damaged and valid is None:
        listed = "; ".join(f"{path} ({reason})" for path, reason in damaged)
        raise NormlabError(f"no valid checkpoint to resume {path} from: {listed}")
    for damaged_path, reason in damaged:
        print(f"normlab: warning: checkpoint {damaged_path} is damaged ({reason}); resuming from step {valid}",
              file=sys.stderr, flush=True)
    if valid is not None:
        start, restored = store.restore_checkpoint(states, step=valid)
        states = jax.tree.map(jnp.asarray, restored)
        diverged = dict(store.checkpoint_extra(start).get("diverged", {}))
    # Rows of step `start` on are measured again, identically; the checkpoint itself stays, the
    # damaged later ones go.
    store.truncate_after(start)
    store.truncate_after(start - 1, keep_checkpoints=True)
    store.set_status("running", resumed_from=start, diverged=diverged)
    result = _train(config, dataset, specs, states, setups, probes, store, start=start, quiet=quiet,
                    diverged=diverged, on_progress=on_progress)
    return _with_report(result, config.report)


def _with_report(result: RunResult, wanted: bool) -> RunResult:
    """``result`` with the run's report written (the report stage is optional for a bare install).

    Its progress is recorded in run.json (``report``: writing, written, skipped, interrupted), so
    a run killed or interrupted while its report was drawn says so and what rebuilds it.
    """
    if not wanted:
        return result
    store = RunStore.open(result.path)
    try:
        from normlab.report import write_report
    except ImportError:
        store.update_info(report="skipped")
        return result
    store.update_info(report="writing")  # what a SIGKILL during the report leaves: honest
    try:
        report = write_report([result.path], out=result.path / "report")
    except KeyboardInterrupt:
        store.update_info(report="interrupted")
        raise ReportInterrupted(result.path) from None
    store.update_info(report="written")
    return replace(result, report=report)


def choose_probe_schedule(config, dataset, specs, states, probes, compiled) -> dict:
    """Under ``probe_budget``: time blocks of loop steps whose first step runs one probe against
    blocks of plain steps, on the first batch (copies of the states, results dropped), then choose
    each probe's steps (``probes/budget.py``: ``measured_costs``, ``budget_schedules``).

    Returns what ``run.json`` records as ``probe_schedule``: budget, measured costs (plain
    steps), steps per probe. The divergence probe keeps its fixed ``divergence_steps``.
    """
    budgeted = tuple(p for p in probes if p.name != "divergence")
    x, y = first_batch(config, dataset)
    setups = probe_setups(probes, specs, states)

    def step_function(due):
        key = frozenset(p.name for p in due)
        if key not in compiled:
            compiled[key] = make_group_step(specs, due, fused=config.group_step == "fused",
                                            fast_compile=config.fast_compile)
        return compiled[key]

    def block_seconds(due, steps):
        return _timed_block(step_function(due), step_function(()), states, x, y, setups, steps)

    costs = measured_costs(block_seconds, budgeted)
    total = total_steps(config, dataset)
    steps = budget_schedules(total, config.probe_budget, costs)
    return {"budget": config.probe_budget, "costs": costs,
            "steps": {name: list(s) for name, s in steps.items()}}


def network_step_seconds(config, dataset, specs, states) -> dict[str, float]:
    """Each network's plain training step (no probe) timed alone on the first batch: one
    compiling call, then ``config.step_cost_repeats`` rounds in which the networks take turns
    (so machine noise hits them alike); the median wall time per network, in seconds. On copies
    of the states (a step donates its input), so training starts from the states as built."""
    x, y = first_batch(config, dataset)
    steps = [make_group_step((spec,), ()) for spec in specs]

    def seconds(index: int) -> float:
        return _timed_block(steps[index], steps[index], (states[index],), x, y, ({},), 1)

    for index in range(len(specs)):
        seconds(index)  # compiles
    samples: list[list[float]] = [[] for _ in specs]
    for _ in range(config.step_cost_repeats):
        for index in range(len(specs)):
            samples[index].append(seconds(index))
    return {spec.name: float(np.median(times)) for spec, times in zip(specs, samples)}


def first_batch(config: Config, dataset: Dataset):
    """The batch of step 0 on the device (the whole training split under ``full_batch``)."""
    if config.full_batch:
        return jnp.asarray(dataset.x_train), jnp.asarray(dataset.y_train)
    return _batch(config, dataset, batch_iterator(config, dataset), 0)


def _timed_block(first, plain, states, x, y, setups, steps: int) -> float:
    """Wall seconds of ``steps`` training steps run as the loop runs them: ``first`` at step 0 and
    ``plain`` after it, dispatched back to back on copies of ``states`` (a step donates its
    inputs), waited for at the end, the first step's outputs read back to the host as the loop's
    ``read_back`` does; results dropped."""
    current = jax.tree.map(jnp.copy, states)
    jax.block_until_ready(current)
    begin = time.perf_counter()
    current, _metrics, outputs = first(current, x, y, jnp.asarray(0, jnp.int32), setups)
    for step in range(1, steps):
        current, _metrics, _outputs = plain(current, x, y, jnp.asarray(step, jnp.int32), setups)
    jax.device_get(outputs)
    jax.block_until_ready(current)
    return time.perf_counter() - begin


def scheduled_probes(probes: tuple, probe_schedule: dict) -> tuple:
    """``probes`` with each budgeted probe measuring at its recorded steps."""
    steps = probe_schedule["steps"]
    return tuple(replace(p, schedule=at_steps(*steps[p.name])) if p.name in steps else p for p in probes)


def _train(config, dataset, specs, states, setups, probes, store, *, start: int, quiet: bool,
           diverged=None, compiled=None, on_progress=None) -> RunResult:
    names = tuple(spec.name for spec in specs)
    total = total_steps(config, dataset)
    batches = batch_iterator(config, dataset)
    eval_every = config.eval_every or (total if config.full_batch else batches.steps_per_epoch)
    checkpoint_every = config.checkpoint_every or eval_every
    fused = config.group_step == "fused"
    evaluation = GroupEvaluation(make_group_eval(specs, fused=fused, fast_compile=config.fast_compile), names,
                                 (dataset.x_test, dataset.y_test), _train_eval_subset(config, dataset), dataset.task)
    compiled = {} if compiled is None else compiled
    full_batch = (jnp.asarray(dataset.x_train), jnp.asarray(dataset.y_train)) if config.full_batch else None

    learning_rates = np.asarray(jax.vmap(specs[0].learning_rate)(jnp.arange(total + 1)))
    loop = LoopState(states, start, PendingResults(names, learning_rates, dict(diverged or {})), store)
    stop = StopRequests()
    status = "running"
    started = time.perf_counter()
    try:
        with (
            CompileTimer() as compile_timer,
            CacheEvents() as cache_events,
            stop,
            Progress(total, names, quiet, start, on_progress) as progress,
        ):
            if start % eval_every == 0:  # step 0, or a resumed run whose checkpoint sits on an evaluation
                _store_evaluation(loop, evaluation, stop)
            while loop.step < total:
                fault_point("training")
                if stop.requested:
                    raise KeyboardInterrupt
                step = loop.step
                x, y = full_batch if full_batch is not None else _batch(config, dataset, batches, step)
                due = active_probes(probes, step)
                key = frozenset(p.name for p in due)
                if key not in compiled:
                    compiled[key] = make_group_step(specs, due, fused=fused, fast_compile=config.fast_compile)
                states, metrics, outputs = compiled[key](loop.states, x, y, jnp.asarray(step, jnp.int32), setups)
                loop.advance(states, metrics, outputs if due else None)
                at_eval = loop.step % eval_every == 0 or loop.step == total
                if loop.step % config.log_every == 0 or at_eval:
                    known = len(loop.diverged)
                    progress.update(loop.step, loop.read_back())
                    if len(loop.diverged) != known:
                        store.update_info(diverged=loop.diverged)
                    if loop.pending.all_diverged:
                        break
                if at_eval:
                    _store_evaluation(loop, evaluation, stop)
                if loop.step % checkpoint_every == 0 and loop.step < total:
                    loop.checkpoint()
        loop.read_back()
        status = "diverged" if loop.pending.all_diverged else "completed"
        store.flush()
        store.set_status(status, diverged=loop.diverged, steps_done=loop.step,
                         train_seconds=time.perf_counter() - started, compile_seconds=compile_timer.seconds,
                         compilations=compile_timer.compilations,
                         compile_cache=cache_events.summary(active_compile_cache_dir()))
    except KeyboardInterrupt:
        checkpointed = loop.step
        try:
            loop.read_back()
            loop.checkpoint()
        except BaseException:  # a second signal (or one inside a compiled call, whose donated inputs are gone)
            checkpointed = store.latest_checkpoint_step() or 0
            store.truncate_after(checkpointed - 1, keep_checkpoints=True)
        store.set_status("interrupted", diverged=loop.diverged, steps_done=checkpointed)
        raise RunInterrupted(store.path, checkpointed) from None
    except Exception as error:
        try:  # what can still be written is: a full disk may refuse these too
            store.flush()
        except OSError:
            pass
        try:
            store.set_status("failed", error=f"{type(error).__name__}: {error}", steps_done=loop.step)
        except OSError:
            pass
        raise
    return RunResult(path=store.path, status=status, steps=loop.step, diverged=dict(loop.diverged),
                     final=final_metrics(store.path))


def _store_evaluation(loop: LoopState, evaluation: GroupEvaluation, stop: StopRequests) -> None:
    """Evaluate the loop's states after ``loop.step`` steps into its store (flushed); a stop request
    ends the evaluation between chunks."""
    loop.store.append_metrics(evaluation.rows(loop.states, loop.step, loop.diverged, lambda: stop.requested))
    loop.store.flush()


@dataclass(frozen=True)
class GroupEvaluation:
    """The group's evaluation: its compiled function (``make_group_eval``), the networks' names,
    the test split and the fixed training subset (``x``, ``y`` each) and the task."""

    group_eval: Callable
    names: tuple[str, ...]
    test: tuple[np.ndarray, np.ndarray]
    train_part: tuple[np.ndarray, np.ndarray]
    task: str

    def rows(self, states, step: int, diverged, should_stop) -> list[dict]:
        """The "eval" rows of ``states`` after ``step`` steps (``evaluation_rows``); ``should_stop()``
        is asked between chunks."""
        test = evaluate(self.group_eval, states, *self.test, should_stop)
        train_part = evaluate(self.group_eval, states, *self.train_part, should_stop)
        return evaluation_rows(step, self.names, diverged, test, train_part, self.task)


def evaluation_rows(step: int, names, diverged, test: np.ndarray, train_part: np.ndarray, task: str) -> list[dict]:
    """The "eval" metric rows of step ``step``: ``test`` and ``train_part`` are (networks, 2) mean
    loss and accuracy (``evaluate``); a diverged network gets none."""
    rows = []
    for i, name in enumerate(names):
        if name in diverged:
            continue
        row = {"step": step, "network": name, "kind": "eval", "test_loss": float(test[i, 0]),
               "train_eval_loss": float(train_part[i, 0])}
        if task == "classification":
            row |= {"test_accuracy": float(test[i, 1]), "train_eval_accuracy": float(train_part[i, 1])}
        rows.append(row)
    return rows


def _batch(config: Config, dataset: Dataset, batches: BatchIterator, step: int):
    x, y = batch_arrays(config, dataset, batches, step)
    return jnp.asarray(x), jnp.asarray(y)


def batch_arrays(config: Config, dataset: Dataset, batches: BatchIterator, step: int) -> tuple[np.ndarray, np.ndarray]:
    """The training batch of ``step`` as NumPy arrays (augmented when ``config.augment``)."""
    indices = batches.indices_at(step)
    x = dataset.x_train[indices]
    if config.augment:
        x = augment_cifar(x, seed=config.data_seed, step=step)
    return x, dataset.y_train[indices]


def _train_eval_subset(config: Config, dataset: Dataset):
    """A fixed subset of the training split, evaluated in eval mode like the test split."""
    n = min(config.train_eval_size, len(dataset.x_train))
    order = np.random.default_rng(config.data_seed).permutation(len(dataset.x_train))[:n]
    order.sort()
    return dataset.x_train[order], dataset.y_train[order]


def final_metrics(path: str | Path) -> dict[str, dict[str, float]]:
    """Final and best evaluation metrics of every network of a stored run (``Run.final_metrics``)."""
    return load_run(path).final_metrics(columns=EVAL_COLUMNS, best=("test_accuracy",))
