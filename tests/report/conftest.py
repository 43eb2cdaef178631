"""Fixtures for the report tests: synthetic run directories and reports built once per session.

Reports take a few seconds to draw, so every test that only reads a report shares one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the helpers next to the tests

import report_synthetic as synthetic  # noqa: E402

from normlab.report import write_report  # noqa: E402


def pytest_collection_modifyitems(items):
    """In the report tests, a figure that fails to draw is an error, not just a note on the page."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.filterwarnings("error::normlab.report.report.ReportWarning"))


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def pair_run(runs_root) -> Path:
    """A completed baseline/BN run with the Part 1 probes, baseline diverging at step 33."""
    preset = synthetic.default_config(steps=40)
    return synthetic.make_run(
        runs_root / "pair", diverge={"none": 33}, start=True,
        info={"param_counts": {"none": 242_762, "batch": 243_658}, "total_steps": 40,
              "preset_defaults": {**preset, "lr": 0.01}},
    )


@pytest.fixture(scope="session")
def second_run(runs_root) -> Path:
    """Another run of the same study (seed 1, a faster schedule), to be overlaid with ``pair_run``."""
    return synthetic.make_run(runs_root / "other", seed=1, steps=30, probe_every=5)


@pytest.fixture(scope="session")
def pair_report(pair_run, tmp_path_factory) -> Path:
    """The report of ``pair_run`` (GIF animation, so it does not depend on ffmpeg)."""
    out = tmp_path_factory.mktemp("pair_report")
    return write_report([pair_run], out=out, video=False)


@pytest.fixture(scope="session")
def overlay_report(pair_run, second_run, tmp_path_factory) -> Path:
    """``pair_run`` and ``second_run`` overlaid in one report (MP4 when imageio-ffmpeg is installed)."""
    out = tmp_path_factory.mktemp("overlay_report")
    return write_report([pair_run, second_run], out=out)


@pytest.fixture(scope="session")
def sweep_dir(runs_root) -> Path:
    """An lr sweep: 3 learning rates x 2 seeds; at the largest lr the baseline diverges in both."""
    root = runs_root / "lr_sweep"
    for lr, quality in ((0.001, 0.0), (0.01, 0.05), (0.1, 0.1)):
        for seed in (0, 1):
            diverge = {"none": 15} if lr == 0.1 else None
            synthetic.make_run(root / f"lr{lr}_seed{seed}", steps=20, eval_every=10, seed=seed, diverge=diverge,
                               probes=(), quality=quality + 0.01 * seed,
                               config_changes={"lr": lr, "data_seed": seed})
    return root
