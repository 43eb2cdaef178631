"""A writer killed with SIGKILL at an arbitrary moment leaves a store holding every flushed row."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from normlab.store import RunStore, load_run

ROWS_PER_FLUSH = 200  # several pages per append, so a kill can land inside a write
# The writer prints each step once its flush returned; the values are a function of the step.
WRITER = textwrap.dedent(
    f"""
    import sys, time
    import numpy as np
    from normlab.store import RunStore

    store = RunStore.create(sys.argv[1], config={{}}, provenance={{}}, metric_columns=["value", "square"])
    deadline = time.monotonic() + 20  # never outlive a test that failed to kill us
    step = 0
    while time.monotonic() < deadline:
        store.append_metrics(
            [{{"step": step, "network": f"net{{row}}", "value": step + row / 1000, "square": step**2}}
             for row in range({ROWS_PER_FLUSH})]
        )
        store.append_probe("activations", "bn", step, {{"hist": np.full(64, step, dtype=np.int64)}})
        store.flush()
        if step % 7 == 0:
            store.set_status("running", last_flushed=step)
        print(step, flush=True)
        step += 1
    """
)


def run_writer_until_killed(run_dir: Path, *, min_flushes: int, seed: int) -> list[int]:
    """Start the writer, SIGKILL it after ``min_flushes`` flushes plus a random delay."""
    source_dir = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": str(source_dir)}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(run_dir)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        flushed = [int(writer.stdout.readline()) for _ in range(min_flushes)]
        time.sleep(random.Random(seed).uniform(0, 0.05))
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        remaining, _ = writer.communicate(timeout=10)
    assert writer.returncode == -signal.SIGKILL
    return flushed + [int(line) for line in remaining.split()]


@pytest.mark.parametrize("seed", [0, 1])
def test_sigkill_leaves_every_flushed_row_readable(tmp_path, seed):
    run_dir = tmp_path / "run"
    flushed = run_writer_until_killed(run_dir, min_flushes=3, seed=seed)

    run = load_run(run_dir)
    frame = run.metrics
    steps = sorted(set(frame["step"]))
    assert steps == list(range(len(steps))) and len(steps) >= len(flushed)  # a prefix, nothing missing
    # Every flush but the last is whole; a kill inside the last write may leave some of its rows
    # (complete lines only), in order.
    row = frame["network"].str.removeprefix("net").astype(int)
    assert (frame.groupby("step").size()[:-1] == ROWS_PER_FLUSH).all()
    np.testing.assert_array_equal(row.groupby(frame["step"]).cumcount(), row)
    np.testing.assert_array_equal(frame["value"], frame["step"] + row / 1000)
    np.testing.assert_array_equal(frame["square"], frame["step"] ** 2)

    probe = run.probe("activations", "bn")
    assert probe["step"].tolist()[: len(flushed)] == flushed
    np.testing.assert_array_equal(probe["hist"], np.repeat(probe["step"][:, None], 64, axis=1))
    assert run.status == "running"  # a killed run stays as it was written

    # The killed run can be reopened and continued.
    store = RunStore.open(run_dir)
    next_step = int(frame["step"].max()) + 1
    store.truncate_after(next_step - 1)
    store.append_metrics([{"step": next_step, "network": "net0", "value": 1.0}])
    store.flush()
    assert load_run(run_dir).metrics["step"].iloc[-1] == next_step
