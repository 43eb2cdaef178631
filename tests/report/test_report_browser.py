"""The report in a real browser: headless Chromium loads every image and the animation, no errors.

Skipped, with the reason, when no Chromium is installed (Debian: ``apt-get install chromium``;
``.ci/run`` installs it).
"""

from __future__ import annotations

import re

import pytest
from report_browser import find_chromium, inspect_page

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium installed (apt-get install chromium); the browser test needs one"
)


def _check_page(report, tmp_path):
    """Open ``report`` and assert every medium loaded and nothing went wrong; return the result."""
    screenshot = tmp_path / "report.png"
    result = inspect_page(report, screenshot, executable=CHROMIUM, profile=tmp_path / "profile")
    html = report.read_text(encoding="utf-8")
    assert len(result.images) == html.count("<img ") > 0
    for image in result.images:
        assert image["complete"] and image["width"] > 0, f"image did not load: {image}"
    assert len(result.videos) == html.count("<video ")
    for video in result.videos:
        assert video["error"] is None and video["readyState"] >= 1 and video["width"] > 0, (
            f"video did not load: {video}"
        )
    assert result.errors == []
    assert screenshot.stat().st_size > 10_000
    return result


def test_overlay_report_opens_in_chromium(overlay_report, tmp_path):
    result = _check_page(overlay_report, tmp_path)
    assert result.title.startswith("2 runs")
    srcs = [image["src"] for image in result.images]
    assert "figures/activation_histograms.png" in srcs and "figures/distance_from_init.png" in srcs


def test_a_missing_image_is_caught(tmp_path):
    """The check is real: delete one figure and the browser reports it."""
    import shutil

    import report_synthetic as synthetic

    from normlab.report import write_report

    run = synthetic.make_run(tmp_path / "run", steps=10, probes=("distance",))
    report = write_report([run], out=tmp_path / "report")
    (report.parent / "figures" / "loss_curves.png").unlink()
    result = inspect_page(report, tmp_path / "shot.png", executable=CHROMIUM, profile=tmp_path / "profile")
    broken = [image for image in result.images if image["width"] == 0]
    assert [image["src"] for image in broken] == ["figures/loss_curves.png"]
    assert any("loss_curves.png" in error for error in result.errors)
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)


ALL_FIGURES = (
    "start_examples",
    "start_inputs",
    "start_weights",
    "loss_curves",
    "accuracy_curves",
    "activation_histograms",
    "activation_moments",
    "unit_moments",
    "tracked_percentiles",
    "moment_drift",
    "tracked_gradient",
    "gradient_moments",
    "gradient_histograms",
    "ics",
    "landscape",
    "predictiveness",
    "beta_smoothness",
    "divergence",
    "distance_from_init",
    "bn_parameter_histograms",
    "bn_parameter_deviation",
)


@pytest.mark.slow
def test_report_of_a_real_tiny_run_opens_in_chromium(tmp_path):
    """End to end: train a tiny pair with the runner and every probe, write its report, open it.

    This also checks the report against the arrays the real probes write (the synthetic runs of
    the other tests follow the probes' docstrings; this catches a drift between the two).
    """
    from normlab.experiments import apply_overrides, get_preset, run_experiment
    from normlab.report import write_report

    config = apply_overrides(get_preset("quickstart").config, [
        "dataset=synthetic", "steps=8", "eval_every=4", "probe_every=1", "log_every=4", "report=false",
        "probes=activations,gradients,distance,ics,landscape,predictiveness,beta_smoothness,divergence,bn_parameters",
    ])
    result = run_experiment(config, run_dir=tmp_path / "run", quiet=True)
    report = write_report([result.path], out=result.path / "report")
    page = _check_page(report, tmp_path)
    figures = [image["src"] for image in page.images if image["src"].startswith("figures/")]
    assert figures == [f"figures/{name}.png" for name in ALL_FIGURES]
    html = report.read_text(encoding="utf-8")
    assert re.search(
        r'<video src="animations/activation_histograms\.mp4"|<img src="animations/activation_histograms\.gif"', html
    )
    # The runner's start views: the pair's kernels are bit-identical, and the findings come first.
    assert "4 of the 4 kernels have the same SHA-256 fingerprint in all of none, batch" in html
    assert html.index('id="findings"') < html.index('id="start"') < html.index('id="runs"')
    left_out = html.split('id="left-out"')[1].split("</section>")[0]
    # only the sweep and the curvature probes (not measured by this run) are missing
    assert "<b>Sweep curves</b>" in left_out and "<b>Hessian curvature" in left_out and left_out.count("<li>") == 2


def test_sweep_report_opens_in_chromium(sweep_dir, tmp_path):
    """A sweep's report (3 lrs x 2 seeds): its curves, per-epoch panels and tables load as the run report does."""
    from normlab.report import write_report

    report = write_report([sweep_dir], out=tmp_path / "report", video=False)
    result = _check_page(report, tmp_path)
    srcs = [image["src"] for image in result.images]
    assert "figures/sweep_lr.png" in srcs and "figures/per_epoch_lr.png" in srcs
    html = report.read_text(encoding="utf-8")
    assert "<h3>Largest lr that trains</h3>" in html and "<h3>Paired differences from the baseline</h3>" in html
