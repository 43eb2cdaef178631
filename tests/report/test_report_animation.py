"""The activation-histogram animation: one frame per measurement, MP4 with ffmpeg, GIF without."""

from __future__ import annotations

import pytest
from PIL import Image

from normlab.report import animation
from normlab.report.figures.activations import histogram_movie
from normlab.report.runs import collect_runs
from normlab.report.series import activation_series
from normlab.report.style import report_style
from normlab.store import load_run


def test_gif_has_one_frame_per_measurement(pair_run, tmp_path):
    steps = load_run(pair_run).probe("activations", "batch")["step"]
    with report_style():
        path = histogram_movie(collect_runs([pair_run])).write(tmp_path / "movie", False)
    assert path.suffix == ".gif"
    with Image.open(path) as gif:
        assert gif.n_frames == len(steps)
        assert gif.size[0] >= 800  # readable at report width


def test_gif_is_used_when_no_encoder_is_installed(pair_run, tmp_path, monkeypatch):
    monkeypatch.setattr(animation, "ffmpeg_executable", lambda: None)
    with report_style():
        path = histogram_movie(collect_runs([pair_run])).write(tmp_path / "movie", None)
    assert path.suffix == ".gif" and path.stat().st_size > 0


def test_mp4_when_imageio_ffmpeg_is_installed(pair_run, tmp_path):
    if animation.ffmpeg_executable() is None:
        pytest.skip("imageio-ffmpeg is not installed: the animation is a GIF (tested above)")
    with report_style():
        path = histogram_movie(collect_runs([pair_run])).write(tmp_path / "movie", None)
    assert path.suffix == ".mp4"
    assert path.read_bytes()[4:8] == b"ftyp"  # an ISO media file, as browsers expect


def test_frames_are_subsampled_evenly_with_first_and_last(pair_run):
    series = activation_series(collect_runs([pair_run]))
    steps = animation.frame_steps(series, limit=3)
    assert steps == [0, 20, 30]


def test_a_stopped_network_shows_nothing_after_it_stopped(pair_run):
    """The baseline diverged at step 33: at later frames its histogram is empty, not stale."""
    from normlab.report.series import index_at

    series = {s.network: s for s in activation_series(collect_runs([pair_run]))}
    assert index_at(series["none"], 30) == 3
    assert index_at(series["none"], 50) is None
    assert index_at(series["batch"], 35) == 3  # between measurements: the latest one before
