"""Sweep members in one compiled step: K seeds (and learning rates) of a dense group, vmapped.

A sweep over seeds runs one small program K times; on a CPU a small network's step is mostly
dispatch and per-operation overhead, not arithmetic, so K members stepped by one program go
much faster than K programs one after another (``bench/vectorized_seeds.py``).
``run_vectorized(configs, run_dirs)`` builds every member's group exactly as ``run_experiment``
does (``build.build_group`` from that member's own config: its seed, data seed and learning
rate), stacks the K groups' states along a new leading axis and trains them with ``jax.vmap`` of
the runner's own group step (``compiled.group_step_function``) over the stacked states, the K
stacked batches (each member's batch order from its own data seed) and the probes' step-0
setups. Evaluation is vmapped the same way (the test split shared, each member's own training
subset). Every member gets its normal run directory -- config, run.json (with ``step_seconds``
when ``step_cost_repeats`` > 0: each member's standalone plain step timed as ``run_experiment``
times it, before training), metrics.csv with train and eval rows, probes, checkpoints, start
views, status and final metrics -- read by ``load_run`` and ``normlab report`` like any run;
run.json adds ``vectorized`` = ``{"members": K, "member": k}``. Its checkpoints have the
standalone structure, so an interrupted member continues alone with ``resume_experiment``
(``normlab run --resume MEMBER``). ``normlab sweep --vectorize`` runs a sweep's members through
it (``experiments.sweep``).

What members may differ in: ``MEMBER_SETTINGS`` (seed, data_seed, lr); every other setting is
shared. A learning rate that differs between members enters the compiled step as a number: the
optimizer is rebuilt inside the trace around each member's traced rate
(``build.build_optimizer``); optax's sgd, momentum and adam keep no learning rate in their state,
so the optimizer state has the standalone structure. With one learning rate for all, it stays a
constant of the program, as in a standalone run.

Which models: the dense ones (``VECTORIZED_MODELS``), whose batched matmuls XLA's CPU backend
runs well; conv nets are refused (a 3x3 convolution's gradient vmapped over 8 weight variants
took 5-7x longer than 8 separate calls on narrow-VGG shapes: bench/vectorized_seeds.py). Which probes:
all but the curvature ones (their random vectors come from the seed, a static setting of the
step) and no ``probe_budget`` (its schedule is chosen from timings; use ``probe_every``).

Equality with separate runs: float-rounding identical, not bit-identical. vmap turns each
member's program into a batched one (dot products with a batch dimension, reductions over an
inner axis) that XLA compiles into different kernels and fusions, so float32 sums are
accumulated in a different order: the BN network's forward pass differs in the last bits (about
1e-7) at step 0 and the trajectories stay that close (tests/experiments/test_vectorized.py).
One visible consequence: a gradient that is exactly zero in exact arithmetic (BN's first layer,
for an input pixel constant over the batch) is rounding noise of about 1e-8 in both runs, and
the gradient probe's log-spaced bins near zero count that noise differently. Training amplifies
last-bit differences as it amplifies any perturbation: over quickstart's 440 steps the members'
losses end up to 1e-3 from the one-after-another runs (bench/vectorized_seeds.py; test accuracy
identical), and an ill-conditioned trajectory jumps sooner (the quickstart pair at width 1/4,
seed 4, lr 0.1: BN's loss 2e-4 apart at step 6, exactly as far as a 1e-7 relative change of its
initial weights moves the standalone run; the santurkar_dln baseline: 2.5e-3 at a loss spike).

Writing: the members' stores are flushed and checkpointed by a small thread pool (their fsyncs
wait on the disk, and K independent directories need not queue behind each other).

Divergence is per network, as in a standalone run: a member whose networks all diverged is
finished (status ``diverged``, nothing written for it afterwards) while the others train on.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from normlab.data import BatchIterator, Dataset
from normlab.errors import NormlabError, fault_point
from normlab.experiments.build import (
    batch_iterator,
    build_group,
    build_optimizer,
    build_probes,
    load_config_dataset,
    parameter_count,
    total_steps,
)
from normlab.experiments.checks import check_against_data, probe_schedule_note
from normlab.experiments.compiled import eval_group, evaluate, group_step_function
from normlab.experiments.config import Config, to_dict
from normlab.experiments.interrupts import RunInterrupted, StopRequests
from normlab.experiments.pending import PendingResults
from normlab.experiments.presets import PRESETS, preset_defaults
from normlab.experiments.progress import Progress
from normlab.experiments.runner import (
    METRIC_COLUMNS,
    RunResult,
    _train_eval_subset,
    _with_report,
    batch_arrays,
    evaluation_rows,
    final_metrics,
    network_step_seconds,
)
from normlab.experiments.start import write_start_views
from normlab.probes import BUNDLES, active_probes, expand_bundles, probe_meta, probe_names, probe_setups
from normlab.store import RunStore, check_output_root, collect_provenance
from normlab.train import NetworkSpec, training_loss_reduction
from normlab.train.compile_cache import (
    CacheEvents,
    active_compile_cache_dir,
    compile_cache_dir,
    configure_compile_cache,
)
from normlab.train.compile_time import CompileTimer

VECTORIZED_MODELS = ("mlp", "ioffe_mlp", "dln")  # dense nets: their weight variants vmap well on CPU
MEMBER_SETTINGS = ("seed", "data_seed", "lr")  # what vectorized members may differ in
UNVECTORIZED_PROBES = BUNDLES["curvature"]  # random vectors from the (static) seed setting
WRITER_THREADS = 8  # members whose run stores are written at the same time


def vectorized_probes() -> list[str]:
    """The probes a vectorized run can measure."""
    return [name for name in probe_names() if name not in UNVECTORIZED_PROBES]


class MembersInterrupted(RunInterrupted):
    """Vectorized members stopped by a signal; each holds a checkpoint at ``step`` and continues
    alone with ``resume_experiment``. ``path`` is the first member's, ``paths`` all of them."""

    def __init__(self, paths: list[Path], step: int):
        super().__init__(paths[0], step)
        self.paths = paths


def check_members(configs: Sequence[Config]) -> None:
    """Refuse, with one line naming the setting, members that cannot train in one vmapped step."""
    if not configs:
        raise NormlabError("vectorized training needs at least one member config")
    first = configs[0]
    if first.model not in VECTORIZED_MODELS:
        raise NormlabError(f"setting 'model' is {first.model!r}, which cannot train vectorized; allowed: "
                           f"{', '.join(VECTORIZED_MODELS)} (dense nets; conv nets vmap badly on CPU: run them one "
                           "after another)")
    for index, config in enumerate(configs[1:], 1):
        for setting in fields(Config):
            mine, theirs = getattr(config, setting.name), getattr(first, setting.name)
            if setting.name not in MEMBER_SETTINGS and mine != theirs:
                raise NormlabError(f"vectorized members may differ only in {', '.join(MEMBER_SETTINGS)}; member "
                                   f"{index} has {setting.name}={mine!r}, member 0 {setting.name}={theirs!r}")
    if first.probe_budget > 0:
        raise NormlabError("setting 'probe_budget' must be 0 for vectorized members (one fixed schedule for all: "
                           "use probe_every)")
    refused = [name for name in expand_bundles(first.probes) if name in UNVECTORIZED_PROBES]
    if refused:
        raise NormlabError(f"setting 'probes': {', '.join(refused)} cannot run vectorized; allowed: "
                           f"{', '.join(vectorized_probes())} and the bundles cheap, standard, full")


@dataclass
class _Member:
    """One member's side of the loop: its run store, batches, training subset and bookkeeping."""

    config: Config
    store: RunStore
    batches: BatchIterator
    pending: PendingResults
    train_eval: tuple[np.ndarray, np.ndarray]
    finished: bool = False
    status: str = "running"
    steps_done: int = 0

    @property
    def diverged(self) -> dict[str, int]:
        return self.pending.diverged


def run_vectorized(configs: Sequence[Config], run_dirs: Sequence[str | Path], *, quiet: bool = False,
                   report: bool | None = None) -> list[RunResult]:
    """Train every member of ``configs`` in one compiled step, each into its run directory.

    Everything is checked (``check_members``, each member's group against the data) before
    anything is written. Returns one ``RunResult`` per member, in order; each member's report is
    written at the end when ``report`` is true, or, if it is None, when its ``config.report`` is.
    """
    configs = list(configs)
    paths = [Path(directory) for directory in run_dirs]
    check_members(configs)
    if len(paths) != len(configs) or len({path.resolve() for path in paths}) != len(paths):
        raise NormlabError(f"vectorized training needs one distinct run directory per member: {len(configs)} "
                           f"members, {len(set(paths))} directories")
    configure_compile_cache(compile_cache_dir())
    for path in paths:
        check_output_root(path.parent)
    dataset = load_config_dataset(configs[0])  # one data setting for all (check_members)
    groups = []
    for config in configs:  # build.prepare, once per member, on the shared data
        specs, states = build_group(config, dataset)
        check_against_data(config, dataset, specs, states)
        groups.append((specs, states))
    probes = build_probes(configs[0], total_steps(configs[0], dataset))
    note = probe_schedule_note(configs[0], total_steps(configs[0], dataset))
    if note:
        print(f"normlab: warning: {note}", file=sys.stderr, flush=True)
    setups = [probe_setups(probes, specs, states) for specs, states in groups]
    # Each member's standalone step, timed as run_experiment times it (on copies of its states).
    step_seconds = [network_step_seconds(config, dataset, specs, states) if config.step_cost_repeats > 0 else None
                    for config, (specs, states) in zip(configs, groups)]
    with ThreadPoolExecutor(max_workers=min(len(configs), WRITER_THREADS)) as pool:
        arguments = [(index, len(configs), config, path, dataset, specs, states, probes, seconds)
                     for index, (config, path, (specs, states), seconds)
                     in enumerate(zip(configs, paths, groups, step_seconds))]
        members = _each(pool, lambda member_arguments: _create_member(*member_arguments), arguments)
        # Traced with member 0's specs: the members share every static setting, and a learning
        # rate that differs between them is passed in as a number.
        specs = groups[0][0]
        stacked = _stack([states for _specs, states in groups])
        del groups, arguments  # the members' own states: the stacked copy is what trains
        results = _train(members, dataset, specs, stacked, _stack(setups), probes, pool, quiet=quiet)
    return [_with_report(result, config.report if report is None else report)
            for result, config in zip(results, configs)]


def _create_member(index: int, count: int, config: Config, path: Path, dataset: Dataset, specs, states,
                   probes, step_seconds: dict[str, float] | None) -> _Member:
    """The member's run store as ``run_experiment`` creates it (config, provenance, step
    seconds, probe meta, sizes, start views), plus ``vectorized`` in run.json."""
    store = RunStore.create(
        path,
        config=to_dict(config),
        provenance=collect_provenance(seeds={"seed": config.seed, "data_seed": config.data_seed}),
        metric_columns=METRIC_COLUMNS,
    )
    if step_seconds is not None:
        store.update_info(step_seconds=step_seconds)
    for probe in probes:
        store.set_probe_meta(probe.name, {"networks": {spec.name: probe_meta(probe, spec) for spec in specs}})
    total = total_steps(config, dataset)
    store.update_info(
        preset_defaults=to_dict(preset_defaults(config)) if config.preset in PRESETS else None,
        loss_reduction={"train": training_loss_reduction(specs[0]), "eval": "mean"},
        param_counts={spec.name: parameter_count(state) for spec, state in zip(specs, states)},
        total_steps=total,
        vectorized={"members": count, "member": index},
    )
    write_start_views(store, config, dataset, specs, states)
    learning_rates = np.asarray(jax.vmap(specs[0].learning_rate)(jnp.arange(total + 1)))
    return _Member(config, store, batch_iterator(config, dataset),
                   PendingResults(tuple(spec.name for spec in specs), learning_rates),
                   _train_eval_subset(config, dataset))


def _each(pool: ThreadPoolExecutor, function: Callable, items) -> list:
    """``[function(item) for item in items]`` in the pool's threads; the first error is raised.

    The members' stores are independent directories, and their writes wait mostly on fsync (the
    disk, not the CPU): K members' flushes and checkpoints overlap instead of queueing.
    """
    return list(pool.map(function, items))


def _stack(trees: list):
    """The members' pytrees stacked along a new leading axis (typed PRNG keys included)."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _to_host(leaf):
    return leaf if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key) else np.asarray(leaf)


def _member_trees(tree, count: int) -> list:
    """Member k's part of a stacked pytree, for each k: one device-to-host copy per leaf."""
    host = jax.tree.map(_to_host, tree)
    return [jax.tree.map(lambda leaf, k=k: leaf[k], host) for k in range(count)]


def make_member_step(specs: tuple[NetworkSpec, ...], probes: tuple, *, fused: bool, shared_batch: bool,
                     lr_config: Config | None = None, steps: int = 0) -> Callable:
    """The group step vmapped over members: ``(states, x, y, step, setups, lrs) -> (states,
    metrics (K, networks, 2), outputs)`` with every leaf of ``states``, ``setups`` and
    ``outputs`` stacked over the K members, ``x``/``y`` (K, batch, ...) (or one batch for all
    when ``shared_batch``), ``lrs`` (K,).

    ``lr_config``: when given, each member's optimizer and schedule are rebuilt from it around
    its traced rate ``lrs[k]``; otherwise ``lrs`` is ignored and the rate is the specs' constant.
    Like ``make_group_step``, one jitted function per network unless ``fused``.
    """
    batch_axis = None if shared_batch else 0

    def vmapped(group_specs):
        def member(states, x, y, step, setups, lr):
            if lr_config is not None:
                tx, schedule = build_optimizer(lr_config, steps, lr)
                own = tuple(replace(spec, tx=tx, learning_rate=schedule) for spec in group_specs)
                return group_step_function(own, probes)(states, x, y, step, setups)
            return group_step_function(group_specs, probes)(states, x, y, step, setups)

        return jax.jit(jax.vmap(member, in_axes=(0, batch_axis, batch_axis, None, 0, 0)), donate_argnums=(0,))

    if fused:
        return vmapped(specs)
    singles = [vmapped((spec,)) for spec in specs]

    def isolated_step(states, x, y, step, setups, lrs):
        results = [single((state,), x, y, step, (setup,), lrs) for single, state, setup in zip(singles, states, setups)]
        new_states = tuple(state for result in results for state in result[0])
        outputs = tuple(output for result in results for output in result[2])
        return new_states, jnp.concatenate([result[1] for result in results], axis=1), outputs

    return isolated_step


def make_member_eval(specs: tuple[NetworkSpec, ...], *, fused: bool, example_axis_first: bool) -> Callable:
    """``(states, x, y, mask) -> (K, networks, 2)`` summed loss and correct count per member, eval
    mode. ``x``/``y``: one set for all members, or (with ``example_axis_first``) (n, K, ...)
    holding each member's own examples, so that ``evaluate`` chunks along the examples."""
    data_axis = 1 if example_axis_first else None

    def vmapped(group_specs):
        return jax.jit(jax.vmap(partial(eval_group, group_specs), in_axes=(0, data_axis, data_axis, None)))

    if fused:
        return vmapped(specs)
    singles = [vmapped((spec,)) for spec in specs]
    return lambda states, x, y, mask: jnp.concatenate(
        [single((state,), x, y, mask) for single, state in zip(singles, states)], axis=1)


def _train(members: list[_Member], dataset: Dataset, specs, states, setups, probes, pool: ThreadPoolExecutor, *,
           quiet: bool) -> list[RunResult]:
    """The runner's loop (``runner._train``) over K members at once."""
    config = members[0].config  # every setting but MEMBER_SETTINGS is shared
    names = tuple(spec.name for spec in specs)
    total = total_steps(config, dataset)
    eval_every = config.eval_every or (total if config.full_batch else members[0].batches.steps_per_epoch)
    checkpoint_every = config.checkpoint_every or eval_every
    fused = config.group_step == "fused"
    learning_rates = [member.config.lr for member in members]
    lr_config = config if len(set(learning_rates)) > 1 else None
    lrs = jnp.asarray(learning_rates, jnp.float32)
    test_eval = make_member_eval(specs, fused=fused, example_axis_first=False)
    subset_eval = make_member_eval(specs, fused=fused, example_axis_first=True)
    subset_x = np.stack([member.train_eval[0] for member in members], axis=1)  # (n, K, ...)
    subset_y = np.stack([member.train_eval[1] for member in members], axis=1)
    full_batch = (jnp.asarray(dataset.x_train), jnp.asarray(dataset.y_train)) if config.full_batch else None
    compiled: dict[frozenset, Callable] = {}
    queued: list[tuple[int, jax.Array, tuple | None]] = []
    step = 0
    started = time.perf_counter()
    stop = None

    def active() -> list[_Member]:
        return [member for member in members if not member.finished]

    def should_stop():
        return stop is not None and stop.requested

    def finish(member: _Member, status: str) -> None:
        member.store.flush()
        member.store.set_status(status, diverged=member.diverged, steps_done=step,
                                train_seconds=time.perf_counter() - started, compile_seconds=compile_timer.seconds,
                                compilations=compile_timer.compilations,
                                compile_cache=cache_events.summary(active_compile_cache_dir()))
        member.finished, member.status, member.steps_done = True, status, step

    def read_back() -> np.ndarray | None:
        """Move the queued device results to each running member's store (one host sync); a
        member whose networks have all diverged is finished as ``diverged``. Returns the last
        step's losses per network, averaged over the members that report one."""
        if not queued:
            return None
        steps = [s for s, _, _ in queued]
        metrics = np.asarray(jax.device_get(jnp.stack([m for _, m, _ in queued])))  # (T, K, networks, 2)
        outputs = [_member_trees(o, len(members)) if o is not None else None for _, _, o in queued]
        queued.clear()
        losses = []
        for k, member in enumerate(members):
            if member.finished:
                continue
            for t, s in enumerate(steps):
                per_member = outputs[t]
                member.pending.add(s, metrics[t, k], None if per_member is None else per_member[k])
            known = len(member.diverged)
            result = member.pending.read_back()
            member.store.append_metrics(result.rows)
            for probe_name, network, s, arrays in result.probes:
                member.store.append_probe(probe_name, network, s, arrays)
            losses.append(result.losses)
            if len(member.diverged) != known:
                member.store.update_info(diverged=member.diverged)
            if member.pending.all_diverged:
                finish(member, "diverged")
        return _mean_losses(losses, len(names))

    def run_evaluation(s: int) -> None:
        test = evaluate(test_eval, states, dataset.x_test, dataset.y_test, should_stop)  # (K, networks, 2)
        subset = evaluate(subset_eval, states, subset_x, subset_y, should_stop)
        for k, member in enumerate(members):
            if not member.finished:
                member.store.append_metrics(evaluation_rows(s, names, member.diverged, test[k], subset[k],
                                                            dataset.task))

    def save(s: int) -> None:
        def save_member(pair):
            member, member_states = pair
            member.store.save_checkpoint(s, member_states, extra={"diverged": member.diverged})  # flushes first

        _each(pool, save_member, [pair for pair in zip(members, _member_trees(states, len(members)))
                                  if not pair[0].finished])

    def flush() -> None:
        _each(pool, lambda member: member.store.flush(), active())

    try:
        with (
            CompileTimer() as compile_timer,
            CacheEvents() as cache_events,
            StopRequests() as stop,
            Progress(total, tuple(f"{name} (mean of {len(members)})" for name in names), quiet) as progress,
        ):
            run_evaluation(0)
            flush()
            while step < total:
                fault_point("training")
                if stop.requested:
                    raise KeyboardInterrupt
                if full_batch is not None:
                    x, y = full_batch
                else:
                    batches = [batch_arrays(m.config, dataset, m.batches, step) for m in members]
                    x = jnp.asarray(np.stack([batch[0] for batch in batches]))
                    y = jnp.asarray(np.stack([batch[1] for batch in batches]))
                due = active_probes(probes, step)
                key = frozenset(p.name for p in due)
                if key not in compiled:
                    compiled[key] = make_member_step(specs, due, fused=fused, shared_batch=config.full_batch,
                                                     lr_config=lr_config, steps=total)
                states, metrics, outputs = compiled[key](states, x, y, jnp.asarray(step, jnp.int32), setups, lrs)
                queued.append((step, metrics, outputs if due else None))
                step += 1
                at_eval = step % eval_every == 0 or step == total
                if step % config.log_every == 0 or at_eval:
                    losses = read_back()
                    if losses is not None:
                        progress.update(step, losses)
                    if not active():
                        break
                if at_eval:
                    run_evaluation(step)
                    flush()
                if step % checkpoint_every == 0 and step < total:
                    save(step)
            read_back()
            _each(pool, lambda member: finish(member, "diverged" if member.pending.all_diverged else "completed"),
                  active())
    except KeyboardInterrupt:
        running = active()
        checkpointed = {id(member): step for member in running}
        try:
            read_back()
            save(step)
        except BaseException:  # a second signal (or one inside a compiled call, whose donated inputs are gone)
            for member in running:
                checkpointed[id(member)] = member.store.latest_checkpoint_step() or 0
                member.store.truncate_after(checkpointed[id(member)] - 1, keep_checkpoints=True)
        for member in running:
            member.store.set_status("interrupted", diverged=member.diverged, steps_done=checkpointed[id(member)])
        raise MembersInterrupted([member.store.path for member in running] or [members[0].store.path],
                                 step) from None
    except Exception as error:
        for member in active():
            try:  # what can still be written is: a full disk may refuse these too
                member.store.flush()
                member.store.set_status("failed", error=f"{type(error).__name__}: {error}", steps_done=step)
            except OSError:
                pass
        raise
    return [RunResult(path=member.store.path, status=member.status, steps=member.steps_done,
                      diverged=dict(member.diverged), final=final_metrics(member.store.path)) for member in members]


def _mean_losses(losses: list, networks: int) -> np.ndarray:
    """Per network, the mean of the finite losses over members (NaN if none is finite)."""
    values = np.array([np.asarray(loss, np.float64) for loss in losses if loss is not None]).reshape(-1, networks)
    finite = np.isfinite(values)
    counts = finite.sum(axis=0)
    sums = np.where(finite, values, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
