"""The compiled functions of a run: the group step (train every network, measure the due probes)
and the group evaluation. By default (``group_step=isolated``) each is one ``jax.jit`` per
network, so a network's compiled arithmetic never depends on its companions; ``fused`` makes each
a single ``jax.jit`` over the whole group (faster for small networks, see bench/paired.py)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from normlab.errors import fault_point
from normlab.probes import ProbeContext, SharedPieces
from normlab.train import NetworkSpec, evaluate_batch, train_step

EVAL_CHUNK = 500
GROUP_STEPS = ("isolated", "fused")  # the choices of Config.group_step
# Config.fast_compile: XLA's CPU backend without its LLVM optimizations: the group step compiles
# faster and runs slower, which only a short run does not feel (one tiny-run timing of a narrow VGG
# with the Santurkar probes; no bench/ script measures it yet).
FAST_COMPILE_OPTIONS = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _jit(function, *, fast_compile: bool, **options):
    """``jax.jit`` with the fast-compile options when asked for."""
    if fast_compile:
        options["compiler_options"] = FAST_COMPILE_OPTIONS
    return jax.jit(function, **options)


def make_group_step(specs: tuple[NetworkSpec, ...], probes: tuple, *, fused: bool = False,
                    fast_compile: bool = False) -> Callable:
    """A function stepping every network of the group (and measuring ``probes``).

    ``(states, x, y, step, setups) -> (new_states, metrics (networks, 2), probe_outputs)``;
    ``metrics[i] = (loss, accuracy)`` of network i on this batch before its update; ``setups``
    from ``probe_setups``. Each network's probes share one ``SharedPieces``, created here inside
    the trace: a piece several probes need is computed once per network and step.
    ``fused``: one jitted function for the group; else (the default) one per network, so that a
    network's compiled arithmetic, and hence its trajectory, never depends on its companions.
    ``fast_compile``: ``FAST_COMPILE_OPTIONS`` (Config.fast_compile).
    """
    if fused:
        return _jitted_group_step(specs, probes, fast_compile)
    singles = [_jitted_group_step((spec,), probes, fast_compile) for spec in specs]

    def isolated_step(states, x, y, step, setups):
        results = [single((state,), x, y, step, (setup,)) for single, state, setup in zip(singles, states, setups)]
        new_states = tuple(state for result in results for state in result[0])
        outputs = tuple(output for result in results for output in result[2])
        return new_states, jnp.concatenate([result[1] for result in results]), outputs

    return isolated_step


def _jitted_group_step(specs: tuple[NetworkSpec, ...], probes: tuple, fast_compile: bool = False) -> Callable:
    """One jitted function stepping the networks of ``specs`` (see ``make_group_step``)."""
    return _jit(group_step_function(specs, probes), fast_compile=fast_compile, donate_argnums=(0,))


def group_step_function(specs: tuple[NetworkSpec, ...], probes: tuple) -> Callable:
    """The pure, unjitted group step of ``make_group_step`` (vmapped over sweep members by
    ``experiments.vectorized``)."""

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

    return group_step


def make_group_eval(specs: tuple[NetworkSpec, ...], *, fused: bool = False, fast_compile: bool = False) -> Callable:
    """``(states, x, y, mask) -> (networks, 2)`` summed loss and correct count, eval mode; jitted
    for the whole group if ``fused``, else per network (as ``make_group_step``)."""
    if fused:
        return _jit(partial(eval_group, specs), fast_compile=fast_compile)
    singles = [_jit(partial(eval_group, (spec,)), fast_compile=fast_compile) for spec in specs]
    return lambda states, x, y, mask: jnp.concatenate(
        [single((state,), x, y, mask) for single, state in zip(singles, states)])


def eval_group(specs: tuple[NetworkSpec, ...], states, x, y, mask):
    """The pure, unjitted group evaluation of ``make_group_eval``: (networks, 2)."""
    return jnp.stack([jnp.stack(evaluate_batch(spec, state, x, y, mask)) for spec, state in zip(specs, states)])


def evaluate(group_eval, states, x: np.ndarray, y: np.ndarray, should_stop=lambda: False) -> np.ndarray:
    """Mean loss and accuracy of every network over ``(x, y)``: shape (networks, 2).

    ``should_stop()`` is asked between chunks: a long evaluation honours Ctrl-C within a chunk.
    """
    n = len(x)
    totals = None
    for start in range(0, n, EVAL_CHUNK):
        fault_point("evaluation")
        if should_stop():
            raise KeyboardInterrupt
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
