"""The persistent compilation cache: where it lives, that repeats hit it, that corruption is harmless."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pooch

from normlab.experiments import apply_overrides, default_config, run_experiment
from normlab.store import load_run
from normlab.train.compile_cache import CacheEvents, compile_cache_dir, configure_compile_cache

TINY = ["dataset=synthetic", "model=mlp", "width=0.25", "batch_size=32", "steps=6", "eval_every=3",
        "log_every=3", "probe_every=2", "report=false", "train_eval_size=64"]


def test_the_cache_directory_defaults_to_the_user_cache_and_the_variable_moves_or_disables_it():
    assert compile_cache_dir({}) == Path(pooch.os_cache("normlab")) / "jax-cache"
    assert compile_cache_dir({"NORMLAB_COMPILE_CACHE": "/tmp/elsewhere"}) == Path("/tmp/elsewhere")
    for off in ("0", "off", "OFF", "false"):
        assert compile_cache_dir({"NORMLAB_COMPILE_CACHE": off}) is None


def _run(tmp_path, name):
    jax.clear_caches()  # forget the in-memory executables: the next compile asks the disk cache
    config = apply_overrides(replace(default_config(), preset=name), TINY)
    result = run_experiment(config, out=tmp_path / "runs", quiet=True)
    info = json.loads((result.path / "run.json").read_text())
    run = load_run(result.path)
    probes = {(p, n): run.probe(p, n) for p in ("activations", "gradients") for n in ("none", "batch")}
    return info["compile_cache"], pd.read_csv(result.path / "metrics.csv"), probes


def _assert_same_results(a, b):
    pd.testing.assert_frame_equal(a[1], b[1])
    for key in a[2]:
        for field in a[2][key]:
            np.testing.assert_array_equal(np.asarray(a[2][key][field]), np.asarray(b[2][key][field]))


def test_a_repeat_run_hits_the_cache_and_a_corrupted_cache_is_ignored_with_identical_results(
        tmp_path, monkeypatch):
    cache = tmp_path / "jax-cache"
    monkeypatch.setenv("NORMLAB_COMPILE_CACHE", str(cache))
    try:
        cold = _run(tmp_path, "cold")
        assert cold[0]["dir"] == str(cache) and cold[0]["hits"] == 0 and cold[0]["misses"] > 0
        entries = [p for p in cache.rglob("*") if p.is_file()]
        assert entries, "the first run wrote nothing to the cache"

        warm = _run(tmp_path, "warm")
        assert warm[0]["hits"] >= cold[0]["misses"] - 1  # every step program came from the disk
        _assert_same_results(cold, warm)

        for entry in entries:  # garbage of the same length, and a truncated copy
            data = entry.read_bytes()
            entry.write_bytes(bytes((b + 101) % 256 for b in data[: max(1, len(data) // 2)]))
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            corrupted = _run(tmp_path, "corrupted")
        assert corrupted[0]["hits"] == 0  # nothing usable was served: everything compiled again
        _assert_same_results(cold, corrupted)
    finally:
        configure_compile_cache(None)


def test_with_the_cache_off_nothing_counts_as_a_hit_or_a_miss():
    events = CacheEvents()
    with events:
        jax.jit(lambda x: x * 3.0 + 1.0)(np.arange(3.0))
    assert events.summary(None) == {"dir": None, "hits": 0, "misses": 0}
