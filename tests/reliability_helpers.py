"""What the reliability tests share: a tiny run's settings and the comparison of two stores."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from normlab.experiments import apply_overrides, get_preset
from normlab.store import load_run

SOURCE = Path(__file__).resolve().parents[1] / "src"
NORMLAB = Path(sys.executable).parent / "normlab"
# 24 steps, an evaluation and a checkpoint every 8, probes every 4: every phase occurs, in seconds.
TINY = ["dataset=synthetic", "model=mlp", "width=0.25", "batch_size=32", "steps=24", "eval_every=8",
        "log_every=4", "probe_every=4", "probes=activations,distance", "report=false", "train_eval_size=64"]


def tiny_config(*extra: str):
    """The config of ``normlab run quickstart --set TINY... extra...``."""
    return apply_overrides(get_preset("quickstart").config, TINY + list(extra))


def subprocess_env(**extra: str) -> dict:
    """The environment of a normlab subprocess: this source tree, the CPU, and the tests' shared
    ``NORMLAB_COMPILE_CACHE`` (the processes of one test compile the same functions: only the
    first pays)."""
    return {**os.environ, "PYTHONPATH": str(SOURCE), "JAX_PLATFORMS": "cpu", **extra}


def assert_same_run(a_path, b_path) -> None:
    """Identical metrics (every column, every row) and probe arrays."""
    a, b = load_run(a_path), load_run(b_path)
    pd.testing.assert_frame_equal(a.metrics.reset_index(drop=True), b.metrics.reset_index(drop=True))
    assert a.probe_names == b.probe_names
    for probe in a.probe_names:
        assert a.networks(probe) == b.networks(probe)
        for network in a.networks(probe):
            left, right = a.probe(probe, network), b.probe(probe, network)
            assert left.keys() == right.keys()
            for key in left:
                np.testing.assert_array_equal(left[key], right[key], err_msg=f"{probe}/{network}/{key}")
