"""The curvature probes in a real run: wired from the config, stored, identical on a rerun, drawn."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from normlab.errors import NormlabError
from normlab.experiments import apply_overrides, default_config, run_experiment
from normlab.report import write_report
from normlab.store import load_run
from normlab.train.compile_cache import configure_compile_cache

SETTINGS = ["dataset=synthetic", "model=mlp", "width=0.0625", "batch_size=16", "steps=4", "eval_every=4",
            "log_every=2", "probe_every=2", "report=false", "train_eval_size=32", "probes=curvature",
            "lanczos_steps=4", "hessian_top.k=2", "hessian_trace.vectors=3", "hessian_density.starts=2",
            "gradient_concentration.k=3", "train_subset=64"]


def test_a_curvature_run_stores_every_probe_identically_on_a_rerun_and_reports_them(tmp_path, monkeypatch):
    # the rerun reads its compiled step from a throw-away persistent cache instead of compiling again
    monkeypatch.setenv("NORMLAB_COMPILE_CACHE", str(tmp_path / "cache"))
    config = apply_overrides(replace(default_config(), preset="tiny"), SETTINGS)
    try:
        first = load_run(run_experiment(config, out=tmp_path / "a", quiet=True).path)
        second = load_run(run_experiment(config, out=tmp_path / "b", quiet=True).path)
    finally:
        configure_compile_cache(None)
    shapes = {"hessian_top": {"eigenvalues": (3, 2), "residuals": (3, 2), "two_over_lr": (3,)},
              "hessian_trace": {"trace": (3,), "stderr": (3,), "samples": (3, 3)},
              "hessian_density": {"nodes": (3, 2, 4), "weights": (3, 2, 4)},
              "gradient_concentration": {"fraction": (3, 3)}}
    for probe, keys in shapes.items():
        assert first.probe_meta(probe)["networks"]["batch"]["bn_mode"] == "train"
        for network in ("none", "batch"):
            data, again = first.probe(probe, network), second.probe(probe, network)
            assert list(data["step"]) == [0, 2]
            for key, shape in keys.items():
                assert np.shape(data[key]) == (2,) + shape[1:]
                np.testing.assert_array_equal(data[key], again[key])  # vectors from (seed, step) only
    top = first.probe("hessian_top", "batch")
    assert np.all(np.diff(top["eigenvalues"], axis=1) <= 0)  # descending
    np.testing.assert_allclose(first.probe("hessian_density", "none")["weights"].sum(-1), 1.0, rtol=1e-5)
    report = write_report([first.path], out=tmp_path / "report")
    html = report.read_text()
    for figure in ("hessian_density.png", "hessian_top.png", "hessian_trace_concentration.png"):
        assert figure in html
    assert "fewer than 2 measurements" not in html


def test_train_subset_beyond_the_data_is_a_one_line_error(tmp_path):
    config = apply_overrides(replace(default_config(), preset="tiny"), SETTINGS[:-1] + ["train_subset=100000"])
    with pytest.raises(NormlabError, match="train_subset"):
        run_experiment(config, out=tmp_path, quiet=True)
