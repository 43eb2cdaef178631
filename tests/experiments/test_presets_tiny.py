"""Every preset at its tiny size, through the real runner and the report: each figure over training
has at least two points in every curve, and the figures its probes promise are all there.

Training, evaluation, probes, the store, the findings and report.html are the real ones. Drawing
the figures' pixels (matplotlib's layout and rasterization, a second or more per figure) and
encoding the animation are the only steps left out: the figure objects and their data are built
by the report's own section builders, which is what the point counts are read from; rendering is
tested by tests/report. Compiling is most of a tiny run's time: the presets share this process
(JAX compiles each random initializer's shape once) and one persistent compilation cache for the
module (presets with the same networks share their evaluations and steps).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import compile_cache_fixture
from normlab.data import dataset_names
from normlab.experiments import PRESETS, preset_config, run_experiment
from normlab.probes import expand_bundles
from normlab.report.sections import Plot
from normlab.store import load_run

# Figures over training that a probe (or the metrics, for every run) must give.
FIGURES = {
    "metrics": ("loss_curves",),
    "activations": ("activation_histograms", "activation_moments", "unit_moments", "tracked_percentiles",
                    "moment_drift"),
    "gradients": ("tracked_gradient", "gradient_moments", "gradient_histograms"),
    "distance": ("distance_from_init",),
    "ics": ("ics",),
    "landscape": ("landscape",),
    "predictiveness": ("predictiveness",),
    "beta_smoothness": ("beta_smoothness",),
    "hessian_top": ("hessian_top",),
    "hessian_density": ("hessian_density",),
    "hessian_trace": ("hessian_trace_concentration",),
    "gradient_concentration": ("hessian_trace_concentration",),
}
DOWNLOADED = ("mnist", "fashion_mnist", "cifar10")


shared_compile_cache = compile_cache_fixture.shared_compile_cache("module")


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_at_tiny_size_fills_every_figure_over_training(name, tmp_path, recorded_items):
    config = preset_config(name, "tiny")
    assert config.size == "tiny" and config.dataset not in DOWNLOADED  # seconds, no download
    assert config.dataset in dataset_names()
    begin = time.perf_counter()
    result = run_experiment(config, out=tmp_path, quiet=True)
    seconds = time.perf_counter() - begin
    assert result.status == "completed" and result.report is not None
    assert json.loads((Path(result.path) / "config.json").read_text())["size"] == "tiny"

    plots = {item.name: item for item in recorded_items if isinstance(item, Plot) and item.points is not None}
    for plot in plots.values():
        assert plot.points and min(plot.points) >= 2, f"{name}: {plot.name} has curves of {plot.points} points"
    html = (Path(result.report)).read_text()
    assert 'class="note short"' not in html, f"{name}: a figure was replaced by its too-few-points note"

    expected = set(FIGURES["metrics"])
    for probe in expand_bundles(config.probes):
        expected |= set(FIGURES.get(probe, ()))
    missing = expected - set(plots)
    assert not missing, f"{name}: figures over training missing from the report: {sorted(missing)}"
    _assert_one_set_of_layer_names(Path(result.path))
    print(f"{name}: {seconds:.1f} s, {len(plots)} figures over training")


def _assert_one_set_of_layer_names(path: Path) -> None:
    """Every probe, and the start views, name a network's layers alike: the hidden layers the
    activations probe names, then "output" (never module paths such as hidden.0.linear)."""
    run = load_run(path)
    start = json.loads((path / "start" / "start.json").read_text())["networks"]
    for network in run.config["networks"]:
        weight_layers = None  # known from the activations probe's hidden layers, where it ran
        if "activations" in run.probe_names:
            weight_layers = [*run.probe_meta("activations")["networks"][network]["layers"], "output"]
        for probe in run.probe_names:
            layers = run.probe_meta(probe)["networks"][network].get("layers")
            if not layers:
                continue
            assert not any("." in layer for layer in layers), (probe, layers)
            if weight_layers is not None and probe != "activations":
                assert layers == weight_layers, (probe, layers, weight_layers)
        owners = {parameter["layer"] for parameter in start[network].values()}
        assert "output" in owners and not any("." in layer for layer in owners), owners
        if weight_layers is not None:
            assert owners == set(weight_layers), (owners, weight_layers)
