"""A network's trajectory does not depend on which networks share its group (bit-identical on CPU).

The networks are built and stepped by the runner's own functions (``experiments.build`` and
``experiments.compiled``, as ``normlab run`` does) on tiny data: the BN network trains alone, in a
group of two and in a group of three, and its per-step loss and accuracy, activation histograms,
evaluation and final parameters must agree bit for bit under the default ``group_step=isolated``.
(With ``group_step=fused`` XLA compiles the group as one program and may round a network's
arithmetic differently depending on its companions: the README's Guarantees give the measured case.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from normlab.data import load_dataset
from normlab.experiments import apply_overrides, get_preset
from normlab.experiments.build import build_group, build_probes
from normlab.experiments.compiled import evaluate, make_group_eval, make_group_step
from normlab.probes import probe_setups

GROUPS = ("batch", "none,batch", "none,batch,layer")
STEPS, BATCH = 6, 8
# A small conv net (LeNet at width 1/2: 3 and 8 channels of 5x5 convs, on 16x16 synthetic images)
# and a small mlp with its activation histograms; model -> (preset, settings, dataset options).
MODELS = {
    "conv": ("quickstart", ["model=lenet", "width=0.5", "probes="], {"image_size": 16}),
    "mlp": ("quickstart", ["model=mlp", "width=0.25", "probes=activations"], {}),
}


def batch_network_trajectory(model: str, networks: str, group_step: str = "isolated") -> dict[str, np.ndarray]:
    """Everything the BN network of group ``networks`` measured over ``STEPS`` steps of batch 8."""
    preset, settings, dataset_options = MODELS[model]
    config = apply_overrides(get_preset(preset).config, settings + [
        f"networks={networks}", f"group_step={group_step}", f"steps={STEPS}", f"batch_size={BATCH}",
        "probe_every=1"])
    dataset = load_dataset("synthetic", num_train=STEPS * BATCH, num_test=16, **dataset_options)
    specs, states = build_group(config, dataset)
    probes = build_probes(config)
    setups = probe_setups(probes, specs, states)
    fused = group_step == "fused"
    step_fn, eval_fn = make_group_step(specs, probes, fused=fused), make_group_eval(specs, fused=fused)
    index = config.networks.index("batch")
    recorded: dict[str, list] = {"metrics": [], "histograms": []}
    for step in range(STEPS):
        rows = slice(step * BATCH, (step + 1) * BATCH)
        x, y = jnp.asarray(dataset.x_train[rows]), jnp.asarray(dataset.y_train[rows])
        states, metrics, outputs = step_fn(states, x, y, jnp.asarray(step, jnp.int32), setups)
        recorded["metrics"].append(np.asarray(metrics[index]))
        if probes:
            recorded["histograms"].append(jax.tree.map(np.asarray, outputs[index]))
    leaves = jax.tree.leaves(states[index].params)
    return {
        "metrics": np.stack(recorded["metrics"]),
        "histograms": jax.tree.map(lambda *a: np.stack(a), *recorded["histograms"]) if probes else {},
        "evaluation": evaluate(eval_fn, states, dataset.x_test, dataset.y_test)[index],
        "params": np.concatenate([np.ravel(leaf) for leaf in leaves]),
    }


def assert_bit_identical(a: dict, b: dict, what: str) -> None:
    paths_a, tree_a = jax.tree_util.tree_flatten_with_path(a)
    paths_b, tree_b = jax.tree_util.tree_flatten_with_path(b)
    assert tree_a == tree_b, what
    for (path, left), (_, right) in zip(paths_a, paths_b):
        np.testing.assert_array_equal(left, right, err_msg=f"{what}: {jax.tree_util.keystr(path)}")


@pytest.mark.parametrize("model", MODELS)
def test_a_network_trains_bit_identically_alone_and_in_groups_of_two_and_three(model):
    alone = batch_network_trajectory(model, GROUPS[0])
    assert np.isfinite(alone["metrics"]).all() and len(np.unique(alone["metrics"][:, 0])) == STEPS, \
        "the network trains (a loss per step, all different)"
    for networks in GROUPS[1:]:
        assert_bit_identical(alone, batch_network_trajectory(model, networks), f"{model}: batch alone vs in {networks}")
