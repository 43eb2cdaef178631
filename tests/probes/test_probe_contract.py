"""The contract every registered probe meets (runs over ``probe_names()``: a new probe is checked).

Declared output keys and shapes are exactly what ``measure`` returns, the values are finite for
two steps on a tiny net, the stored meta is JSON, the headline names a declared output and the
shared pieces a probe reads are the ones it declares in ``needs``.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from normlab.models import build_model
from normlab.probes import (
    ProbeContext,
    SharedPieces,
    declared_keys,
    headline_value,
    make_probe,
    probe_meta,
    probe_names,
    probe_setups,
)
from normlab.train import make_network, make_optimizer, train_step


def _network():
    model = build_model("mlp", input_shape=(6, 6, 1), num_classes=10, width=0.125, norm="batch",
                        rngs=nnx.Rngs(params=0, noise=1, dropout=2))
    tx, schedule = make_optimizer("momentum", 0.05, total_steps=10)
    spec, state = make_network("batch", model, tx, schedule, task=model.task)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(16, 6, 6, 1)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, 16), jnp.int32)
    return spec, state, x, y


def _matches(shape, declared) -> bool:
    """Ints must be equal; a free dimension name matches any size."""
    return len(shape) == len(declared) and all(isinstance(d, str) or d == n for n, d in zip(shape, declared))


@pytest.mark.parametrize("name", probe_names())
def test_a_probe_returns_what_it_declares(name):
    probe = make_probe(name)
    spec, state, x, y = _network()
    meta = probe_meta(probe, spec)
    assert json.loads(json.dumps(meta)) == meta
    declared = declared_keys(probe.outputs, meta)
    assert declared, "a probe declares its outputs"
    assert probe.headline.resolved_key(meta.get("layers", [])) in declared
    setup = probe_setups((probe,), (spec,), (state,))[0]
    used = []

    def step(state, index):
        new_state, out = train_step(spec, state, x, y)
        shared = SharedPieces()
        ctx = ProbeContext(spec=spec, state=state, x=x, y=y, loss=out.loss, grads=out.grads,
                           activations=out.intermediates, learning_rate=spec.learning_rate(index), step=index,
                           setup=setup, shared=shared)
        result = probe.measure(ctx)
        used.append(set(shared.used))
        return new_state, result

    step = jax.jit(step)
    history = []
    for index in range(2):
        state, result = step(state, jnp.int32(index))
        result = {key: np.asarray(value) for key, value in result.items()}
        assert set(result) == set(declared)
        for key, value in result.items():
            assert _matches(value.shape, declared[key]), (key, value.shape, declared[key])
            assert np.all(np.isfinite(value)), key
        history.append(result)
    assert used and all(names <= set(getattr(probe, "needs", ())) for names in used)
    stacked = {key: np.stack([h[key] for h in history]) for key in history[0]}
    assert np.isfinite(headline_value(probe.headline, stacked, meta.get("layers")))


def test_bundles_expand_in_order_without_repeats_and_unknown_names_list_the_valid_ones():
    from normlab.errors import UnknownNameError
    from normlab.probes import BUNDLES, expand_bundles, probe_names

    assert expand_bundles(["ics", "cheap", "gradients"]) == ("ics", "activations", "gradients", "distance")
    assert expand_bundles(["standard", "full"]) == BUNDLES["full"]
    assert expand_bundles([]) == ()
    with pytest.raises(UnknownNameError) as error:
        expand_bundles(["cheap", "hessain_top"])
    valid = ", ".join(sorted([*probe_names(), *BUNDLES]))
    assert str(error.value) == f"unknown probe or bundle 'hessain_top'; valid: {valid}"
