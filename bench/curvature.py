"""Cost of the Hessian probes, in training steps, against a naive loop and the dense Hessian.

For each model (mlp on 28x28 inputs batch 32, narrow VGG width 1/8, the 25-layer DLN), with BN,
timed side by side (interleaved repeats, medians; ``timing.py``):

- ``step``: one jitted training step (forward + backward + update) -- the unit;
- ``hvp``: one jitted Hessian-vector product (forward-over-reverse);
- ``probe``: ``hessian_top`` with ``m`` Lanczos steps (one jitted call, full reorthogonalization
  in a ``fori_loop``), and the target: within 1.3x of ``m`` HVPs;
- ``naive``: the same Lanczos written in Python with NumPy reorthogonalization, calling a
  separately jitted HVP once per iteration (what a PyHessian port to JAX does); target: the
  probe at least 2x faster;
- ``dense``: ``jax.hessian`` of the flattened loss and ``eigvalsh`` where n <= ``--dense-max``.

Both Lanczos versions start from the same vector; their top eigenvalues are printed to show they
agree. Usage: ``python bench/curvature.py [--steps 20] [--reps 3] [--models mlp,vgg,dln]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from timing import interleaved_medians, print_table  # noqa: E402

from normlab.probes import ProbeContext, SharedPieces  # noqa: E402
from normlab.probes.curvature import HessianTopProbe, flat_hvp  # noqa: E402
from normlab.probes.shared import mode_loss  # noqa: E402
from normlab.train import gradient, train_step  # noqa: E402
from probes import batch, network, setting  # noqa: E402


def naive_lanczos(hvp, v0: np.ndarray, m: int) -> float:
    """Python-side Lanczos with full reorthogonalization; one jitted HVP call per iteration."""
    basis = [v0 / np.linalg.norm(v0)]
    alphas, betas = [], []
    for j in range(m):
        w = np.asarray(hvp(jnp.asarray(basis[j])), dtype=np.float64)
        alphas.append(float(w @ basis[j]))
        stacked = np.stack(basis)
        for _ in range(2):
            w = w - stacked.T @ (stacked @ w)
        betas.append(float(np.linalg.norm(w)))
        if j + 1 < m:
            basis.append(w / betas[-1])
    t = np.diag(alphas) + np.diag(betas[:-1], 1) + np.diag(betas[:-1], -1)
    return float(np.linalg.eigvalsh(t)[-1])


def bench_model(name: str, steps: int, reps: int, vgg_batch: int, dense_max: int) -> dict:
    options, size, lr = setting(name, vgg_batch)
    model, _tx, spec, state = network(name, "batch", options, lr)
    x, y = batch(options, size, model.task == "regression")
    loss, grads = jax.jit(lambda s: gradient(spec, s.params, s.rest, x, y))(state)
    ctx = ProbeContext(spec=spec, state=state, x=x, y=y, loss=loss, grads=grads, activations=(),
                       learning_rate=jnp.asarray(lr, jnp.float32), step=jnp.asarray(0))
    probe = HessianTopProbe(lanczos_steps=steps)
    measure = jax.jit(lambda c: probe.measure(c._replace(shared=SharedPieces())))
    step = jax.jit(lambda s: train_step(spec, s, x, y))
    hvp_jit = jax.jit(lambda s, v: flat_hvp(spec, s.params, s.rest, x, y, train=True)[0](v))
    n = int(sum(np.size(leaf) for leaf in jax.tree.leaves(state.params)))
    v = jax.random.normal(jax.random.key(0), (n,), jnp.float32)
    start = time.perf_counter()
    top = float(measure(ctx)["top"])
    compile_probe = time.perf_counter() - start
    # the probe's start vector, so that both Lanczos runs see the same Krylov space
    from normlab.probes.curvature import _LANCZOS_START, probe_key
    v0 = np.asarray(jax.random.normal(probe_key(0, jnp.asarray(0), _LANCZOS_START), (n,), jnp.float32), np.float64)
    hvp_state = lambda u: hvp_jit(state, u)  # noqa: E731
    naive_top = naive_lanczos(hvp_state, v0, steps)
    candidates = {
        "step": lambda: step(state),
        "hvp": lambda: hvp_jit(state, v),
        "probe": lambda: measure(ctx),
        "naive": lambda: naive_lanczos(hvp_state, v0, steps),
    }
    dense_seconds = None
    if n <= dense_max:
        theta, unravel = jax.flatten_util.ravel_pytree(state.params)
        dense = jax.jit(lambda t: jnp.linalg.eigvalsh(jax.hessian(
            lambda p: mode_loss(spec, unravel(p), state.rest, x, y, train=True))(t)))
        candidates["dense"] = lambda: dense(theta)
    median = interleaved_medians(candidates, repeats=reps)
    if "dense" in median:
        dense_seconds = median["dense"]
    return {"model": name, "n": n, "median": median, "top": top, "naive_top": naive_top, "compile": compile_probe,
            "dense": dense_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="Lanczos steps m")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--models", default="mlp,vgg,dln")
    parser.add_argument("--vgg-batch", type=int, default=128)
    parser.add_argument("--dense-max", type=int, default=6000, help="largest n for the dense Hessian")
    args = parser.parse_args()
    rows = []
    for name in args.models.split(","):
        r = bench_model(name, args.steps, args.reps, args.vgg_batch, args.dense_max)
        t = r["median"]
        rows.append((
            r["model"], r["n"], f"{t['step'] * 1e3:.1f}", f"{t['hvp'] / t['step']:.2f}",
            f"{t['probe'] / t['step']:.1f}", f"{t['probe'] / (args.steps * t['hvp']):.2f}",
            f"{t['naive'] / t['probe']:.2f}",
            "-" if r["dense"] is None else f"{r['dense'] / t['probe']:.1f}",
            f"{r['top']:.4g} / {r['naive_top']:.4g}", f"{r['compile']:.1f}",
        ))
    print_table(
        f"hessian_top, m = {args.steps} Lanczos steps, BN train mode (medians of {args.reps} interleaved repeats)",
        rows,
        ("model", "params", "step ms", "hvp/step", "probe/step", "probe/(m hvp)", "naive/probe", "dense/probe",
         "top: probe / naive", "probe compile s"),
    )
    print("targets: probe/(m hvp) <= 1.3, naive/probe >= 2")


if __name__ == "__main__":
    main()
