"""Sweep members trained in one vmapped step against the same configs run one after another.

The reference is ``run_experiment`` on each member's config, the path every run takes. The
vectorized members must write the same run directory: the same config, the same start (the
step-0 weights' SHA-256 fingerprints are bit-identical: each member is built exactly as a
standalone run), the same rows, steps, statuses, divergence steps and checkpoints, and values
equal to float32 rounding. Not bit-identical: vmap makes XLA compile a batched program (dot
products with a batch dimension, reductions over an inner axis) whose float32 sums are
accumulated in another order; the BN network's forward pass differs by ~1e-7 at step 0 (see
``normlab.experiments.vectorized``). Measured over these 20 steps: losses and accuracies at most
5e-7 apart (2e-7 relative), probe values within 1e-5 relative or 5.2e-7 absolute (the BN layers'
per-unit means, 0 up to rounding); the tolerances below are about 10x that.

The module's runs share one throw-away compilation cache: the standalone runs compile the same
programs, so only the first of them compiles each.
"""

from __future__ import annotations

import json
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import compile_cache_fixture
from normlab.errors import NormlabError
from normlab.experiments import apply_overrides, get_preset, resume_experiment, run_experiment, vectorized
from normlab.experiments.build import build_group, load_config_dataset
from normlab.experiments.config import from_dict
from normlab.experiments.vectorized import (
    MembersInterrupted,
    check_members,
    make_member_eval,
    make_member_step,
    run_vectorized,
)
from normlab.store import load_run

# The quickstart pair on digits at width 1/4 (64-64-32-16-10), 20 steps of batch 32.
# Probes at every step: one compiled step per network (compiling is most of these tests' time).
SMALL = ["width=0.25", "steps=20", "eval_every=10", "log_every=4", "probe_every=1", "train_eval_size=360",
         "report=false", "probes=cheap"]
# Float32 rounding accumulated over 20 steps: relative, and absolute for the values that are 0 up to
# rounding (a BN layer's per-unit mean activation sums 32 O(1) values: measured up to 5.2e-7 apart).
RTOL, ATOL = 1e-5, 5e-6
# Gradient entries that are exactly 0 in exact arithmetic (BN's first layer, pixels constant over
# the batch) are rounding noise of ~1e-8 in both runs: the log bins inside +-1e-7 count noise.
NOISE_FLOOR = 1e-7


def small_config(*extra: str):
    return apply_overrides(get_preset("quickstart").config, SMALL + list(extra))


def members(base, seeds, lrs=None):
    lrs = lrs or [base.lr] * len(seeds)
    return [replace(base, seed=seed, data_seed=seed, lr=lr) for seed, lr in zip(seeds, lrs)]


def close(actual, expected, what: str) -> None:
    """Equal to float32 rounding: |a - e| <= RTOL |e| + ATOL (NaN where NaN)."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, what
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=what)
    finite = np.isfinite(expected)
    np.testing.assert_allclose(actual[finite], expected[finite], rtol=RTOL, atol=ATOL, err_msg=what)


def counts_close(actual, expected, edges, what: str) -> None:
    """Histogram counts (T, bins): at most one value moved per measurement (a value within
    rounding of a bin edge), beside the bins inside +-NOISE_FLOOR, which count rounding noise."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, what
    edges = np.asarray(edges)
    noise = np.maximum(np.abs(edges[:-1]), np.abs(edges[1:])) <= NOISE_FLOOR
    np.testing.assert_array_equal(actual.sum(axis=-1), expected.sum(axis=-1), err_msg=what)
    assert (np.abs(actual - expected)[..., ~noise].sum(axis=-1) <= 2).all(), what


def assert_same_run(vectorized_path, alone_path, *, extra_checkpoint: int | None = None) -> None:
    """The member's run directory says what the standalone run's says, to float32 rounding
    (``extra_checkpoint``: the step of the checkpoint an interruption added)."""
    mine, alone = load_run(vectorized_path), load_run(alone_path)
    assert mine.config == alone.config
    assert mine.status == alone.status
    for key in ("diverged", "steps_done", "total_steps", "param_counts"):
        assert mine.info[key] == alone.info[key], key
    assert json.loads(mine.read_text("start/start.json")) == json.loads(alone.read_text("start/start.json"))
    ours, theirs = mine.metrics, alone.metrics
    assert ours[["step", "network", "kind"]].equals(theirs[["step", "network", "kind"]])
    for column in ours.columns.drop(["step", "network", "kind"]):
        close(ours[column], theirs[column], f"metrics {column}")
    assert mine.probe_names == alone.probe_names
    for probe in alone.probe_names:
        assert mine.probe_meta(probe) == alone.probe_meta(probe)
        assert mine.networks(probe) == alone.networks(probe)
        for network in alone.networks(probe):
            ours_probe, theirs_probe = mine.probe(probe, network), alone.probe(probe, network)
            assert ours_probe.keys() == theirs_probe.keys()
            np.testing.assert_array_equal(ours_probe["step"], theirs_probe["step"])
            for key, expected in theirs_probe.items():
                what = f"{probe} {network} {key}"
                if key.endswith(".hist"):
                    counts_close(ours_probe[key], expected, mine.probe_meta(probe)["networks"][network]["edges"], what)
                elif np.issubdtype(expected.dtype, np.integer):
                    assert (np.abs(ours_probe[key] - expected) <= 1).all(), what
                else:
                    close(ours_probe[key], expected, what)
    added = [] if extra_checkpoint is None else [extra_checkpoint]
    assert mine.checkpoint_steps == sorted(alone.checkpoint_steps + added)
    config = from_dict(alone.config)
    _specs, target = build_group(config, load_config_dataset(config))  # what resume_experiment restores into
    for step in alone.checkpoint_steps:
        assert mine.checkpoint_extra(step) == alone.checkpoint_extra(step)
        ours_state = mine.restore_checkpoint(target, step=step)[1]
        theirs_state = alone.restore_checkpoint(target, step=step)[1]
        for (path, ours_leaf), theirs_leaf in zip(jax.tree_util.tree_flatten_with_path(ours_state)[0],
                                                  jax.tree.leaves(theirs_state)):
            close(ours_leaf, theirs_leaf, f"checkpoint {step} {jax.tree_util.keystr(path)}")


SEEDS = (0, 1, 2)


shared_compile_cache = compile_cache_fixture.shared_compile_cache("module")


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    """The members' configs run one after another by ``run_experiment``: seed -> RunResult."""
    out = tmp_path_factory.mktemp("alone")
    return {config.seed: run_experiment(config, run_dir=out / f"seed{config.seed}", quiet=True)
            for config in members(small_config(), SEEDS)}


def test_three_seeds_in_one_step_write_the_runs_they_would_write_alone(tmp_path, alone):
    configs = members(small_config(), SEEDS)
    results = run_vectorized(configs, [tmp_path / f"member{k}" for k in range(3)], quiet=True)
    for k, (seed, result) in enumerate(zip(SEEDS, results)):
        assert result.path == tmp_path / f"member{k}" and result.status == "completed" and result.steps == 20
        assert load_run(result.path).info["vectorized"] == {"members": 3, "member": k}
        assert_same_run(result.path, alone[seed].path)
        for network, final in alone[seed].final.items():
            assert result.final[network].keys() == final.keys()
            for key, value in final.items():
                close(result.final[network][key], value, f"final {network} {key}")
    # The members really are different runs (own seeds, own batches), not one run three times.
    assert len({load_run(result.path).training("batch").loss.iloc[0] for result in results}) == 3


def test_an_interrupted_member_resumes_alone_to_the_uninterrupted_result(tmp_path, alone, monkeypatch):
    passed = []

    def interrupt_at_step_12(phase):  # as Ctrl-C between two steps: the loop checks before each
        passed.append(phase)
        if passed.count("training") == 13:
            raise KeyboardInterrupt

    monkeypatch.setattr(vectorized, "fault_point", interrupt_at_step_12)
    paths = [tmp_path / f"member{k}" for k in range(3)]
    with pytest.raises(MembersInterrupted) as stopped:
        run_vectorized(members(small_config(), SEEDS), paths, quiet=True)
    assert stopped.value.step == 12 and stopped.value.paths == paths
    for seed, path in zip(SEEDS, paths):
        run = load_run(path)
        assert run.status == "interrupted" and run.info["steps_done"] == 12 and run.checkpoint_steps == [10, 12]
        result = resume_experiment(path, quiet=True)  # alone, by the standalone runner
        assert result.status == "completed"
        assert_same_run(path, alone[seed].path, extra_checkpoint=12)


def test_learning_rates_as_numbers_and_members_that_diverge(tmp_path):
    # lr 1e6: both networks of those members overflow within a few steps; the others train on and
    # match their standalone runs (seeds 3 and 5 at lr 0.03 keep rounding at rounding size over
    # the 20 steps; seed 4 at lr 0.1 does not: a 1e-7 relative change of its initial weights alone
    # moves its BN loss by 2e-4 at step 6, run by hand). The lr 0.03 references load the
    # programs the module's first standalone run compiled.
    base = small_config()
    configs = members(base, [3, 5, 3, 5], lrs=[0.03, 0.03, 1e6, 1e6])
    results = run_vectorized(configs, [tmp_path / f"member{k}" for k in range(4)], quiet=True)
    assert [result.status for result in results] == ["completed", "completed", "diverged", "diverged"]
    for k, (config, result) in enumerate(zip(configs, results)):
        run = load_run(result.path)
        assert run.info["vectorized"]["members"] == 4 and run.config["lr"] == config.lr
        if result.status == "completed":
            reference = run_experiment(config, run_dir=tmp_path / f"alone{k}", quiet=True)
            assert_same_run(result.path, reference.path)
            continue
        # Diverged as a standalone run records it: each network at its first non-finite loss, no
        # rows of it afterwards, the run stopped at the first read-back with both networks gone.
        assert set(result.diverged) == {"none", "batch"} and run.info["diverged"] == result.diverged
        assert run.status == "diverged" and run.info["steps_done"] == result.steps < 20
        assert result.steps % 4 == 0 and result.steps > max(result.diverged.values())  # read back every 4 steps
        for network, step in result.diverged.items():
            losses = run.training(network).set_index("step").loss
            assert losses.index.max() == step and np.isnan(losses[step]) and np.isfinite(losses.loc[: step - 1]).all()
        assert run.evaluations().step.max() < result.steps


def test_the_fused_member_step_matches_the_isolated_one():
    # group_step=fused: one vmapped program for the pair instead of one per network
    configs = members(small_config("probes="), SEEDS)
    dataset = load_config_dataset(configs[0])
    groups = [build_group(config, dataset) for config in configs]
    specs = groups[0][0]
    x = jnp.asarray(np.stack([dataset.x_train[32 * k: 32 * (k + 1)] for k in range(3)]))
    y = jnp.asarray(np.stack([dataset.y_train[32 * k: 32 * (k + 1)] for k in range(3)]))
    lrs = jnp.full(3, configs[0].lr)
    trajectories = {}
    for fused in (False, True):
        step = make_member_step(specs, (), fused=fused, shared_batch=False)
        states = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[group_states for _, group_states in groups])
        losses = []
        for index in range(3):
            states, metrics, _ = step(states, x, y, jnp.asarray(index, jnp.int32), ({}, {}), lrs)
            losses.append(np.asarray(metrics))
        evaluation = make_member_eval(specs, fused=fused, example_axis_first=False)
        trajectories[fused] = (np.stack(losses), np.asarray(evaluation(states, x[0], y[0], jnp.ones(32))),
                               jax.tree.map(np.asarray, states[1].params))
    assert trajectories[False][0].shape == (3, 3, 2, 2) and trajectories[False][1].shape == (3, 2, 2)
    for isolated, fused in zip(jax.tree.leaves(trajectories[False]), jax.tree.leaves(trajectories[True])):
        close(fused, isolated, "fused vs isolated member step")


@pytest.mark.parametrize("change, message", [
    (["model=lenet"], "setting 'model' is 'lenet', which cannot train vectorized; allowed: mlp, ioffe_mlp, dln"),
    (["probes=hessian_top"], "setting 'probes': hessian_top cannot run vectorized"),
    (["probe_budget=0.1"], "setting 'probe_budget' must be 0 for vectorized members"),
])
def test_members_that_cannot_train_vectorized_are_refused_before_anything_is_written(tmp_path, change, message):
    configs = members(small_config(*change), [0, 1])
    with pytest.raises(NormlabError, match=message.replace("(", r"\(")):
        run_vectorized(configs, [tmp_path / "a" / "m0", tmp_path / "a" / "m1"], quiet=True)
    assert not (tmp_path / "a").exists()


def test_members_may_differ_only_in_seed_data_seed_and_lr(tmp_path):
    configs = [small_config(), small_config("width=0.5")]
    check_members([replace(configs[0], seed=4, data_seed=5, lr=0.5), configs[0]])  # allowed
    with pytest.raises(NormlabError, match=r"may differ only in seed, data_seed, lr; member 1 has width=0.5, "
                                           r"member 0 width=0.25"):
        run_vectorized(configs, [tmp_path / "m0", tmp_path / "m1"], quiet=True)
    with pytest.raises(NormlabError, match="one distinct run directory per member"):
        run_vectorized(members(configs[0], [0, 1]), [tmp_path / "m0", tmp_path / "m0"], quiet=True)
    assert not any(tmp_path.iterdir())
    assert jax.default_backend() == "cpu"
