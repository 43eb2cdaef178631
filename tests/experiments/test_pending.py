"""The loop's bookkeeping: rows and probe entries read back in step order, divergence recorded once."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from normlab.experiments.pending import LoopState, PendingResults

NAN = float("nan")


def _metrics(*pairs):
    return jnp.asarray(pairs, jnp.float32)  # (networks, 2): loss, accuracy


def test_rows_carry_the_step_learning_rate_and_kind():
    pending = PendingResults(("none", "batch"), np.array([0.1, 0.05, 0.025]))
    pending.add(0, _metrics((2.0, 0.1), (1.5, 0.25)))
    pending.add(1, _metrics((1.0, 0.5), (0.5, 0.75)))
    result = pending.read_back()
    assert [(r["step"], r["network"], r["loss"], r["lr"]) for r in result.rows] == [
        (0, "none", 2.0, 0.1), (0, "batch", 1.5, 0.1), (1, "none", 1.0, 0.05), (1, "batch", 0.5, 0.05)]
    assert all(r["kind"] == "train" for r in result.rows)
    np.testing.assert_array_equal(result.losses, [1.0, 0.5])
    assert pending.read_back().losses is None  # the queue is empty after a read


def test_a_network_diverges_at_its_first_non_finite_loss_and_stops_there():
    pending = PendingResults(("none", "batch"), np.full(5, 0.1), {})
    probe = lambda value: ({"p": {"x": jnp.asarray(value)}}, {"p": {"x": jnp.asarray(-value)}})  # noqa: E731
    pending.add(0, _metrics((1.0, 0.0), (1.0, 0.0)), probe(0.0))
    pending.add(1, _metrics((NAN, 0.0), (0.9, 0.0)), probe(1.0))
    pending.add(2, _metrics((NAN, 0.0), (0.8, 0.0)), probe(2.0))
    result = pending.read_back()
    assert pending.diverged == {"none": 1} and not pending.all_diverged
    # the divergence step itself is kept (with its NaN loss); nothing of that network after it
    assert [(r["step"], r["network"]) for r in result.rows] == [
        (0, "none"), (0, "batch"), (1, "none"), (1, "batch"), (2, "batch")]
    assert [(p, n, s) for p, n, s, _ in result.probes] == [
        ("p", "none", 0), ("p", "batch", 0), ("p", "none", 1), ("p", "batch", 1), ("p", "batch", 2)]
    pending.add(3, _metrics((NAN, 0.0), (float("inf"), 0.0)))
    pending.read_back()
    assert pending.diverged == {"none": 1, "batch": 3} and pending.all_diverged


def test_a_resumed_run_keeps_its_divergence_steps():
    pending = PendingResults(("none", "batch"), np.full(10, 0.1), {"none": 4})
    pending.add(6, _metrics((NAN, 0.0), (0.5, 0.0)))
    assert [r["network"] for r in pending.read_back().rows] == ["batch"]
    assert pending.diverged == {"none": 4}


class _RecordingStore:
    """The part of ``RunStore`` the loop writes to, recording each call."""

    def __init__(self):
        self.calls = []

    def append_metrics(self, rows):
        self.calls.append(("metrics", [(r["step"], r["network"]) for r in rows]))

    def append_probe(self, probe, network, step, arrays):
        self.calls.append(("probe", probe, network, step, sorted(arrays)))

    def flush(self):
        self.calls.append(("flush",))

    def save_checkpoint(self, step, states, extra):
        self.calls.append(("checkpoint", step, states, extra))


def test_the_loop_state_advances_one_step_per_result_and_moves_them_to_the_store():
    store = _RecordingStore()
    loop = LoopState(("s0",), 3, PendingResults(("none", "batch"), np.full(6, 0.1), {"batch": 1}), store)
    assert loop.read_back() is None and store.calls == []  # nothing pending: nothing written
    loop.advance(("s1",), _metrics((1.0, 0.5), (0.5, 0.75)), ({"p": {"x": jnp.ones(2)}}, {"p": {"x": jnp.ones(2)}}))
    loop.advance(("s2",), _metrics((0.75, 0.5), (0.25, 0.75)))  # no probe due
    assert (loop.states, loop.step) == (("s2",), 5)
    np.testing.assert_array_equal(loop.read_back(), [0.75, 0.25])
    # the diverged network (at step 1, carried over a resume) writes nothing after its divergence
    assert store.calls == [("metrics", [(3, "none"), (4, "none")]), ("probe", "p", "none", 3, ["x"])]
    store.calls.clear()
    loop.checkpoint()
    assert store.calls == [("flush",), ("checkpoint", 5, ("s2",), {"diverged": {"batch": 1}})]
    assert loop.diverged is loop.pending.diverged


def test_the_loop_state_records_a_divergence_when_it_reads_it_back():
    loop = LoopState((), 0, PendingResults(("none",), np.full(3, 0.1)), _RecordingStore())
    loop.advance((), _metrics((NAN, 0.0)))
    assert loop.diverged == {}  # known only once read back from the device
    loop.read_back()
    assert loop.diverged == {"none": 0} and loop.pending.all_diverged
