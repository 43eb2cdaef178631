"""Animated activation histograms over training (seed notebooks Part 1 and Part 2).

One panel per layer; every network's histogram overlaid at each measurement step; "mean ± std" of
each in the legend. Written as MP4 (H.264, plays in browsers) when imageio-ffmpeg's encoder is
importable, else as an animated GIF through Pillow, which matplotlib always has.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.animation import AbstractMovieWriter, FFMpegWriter, FuncAnimation, PillowWriter
from matplotlib.legend import Legend

from normlab.errors import fault_point
from normlab.report.series import (
    Series,
    figure_legend,
    histogram_density,
    index_at,
    moment_text,
    panel_label,
)
from normlab.report.style import grid_shape, hide_unused, new_figure

MAX_FRAMES = 60  # longer runs are subsampled evenly (first and last frame kept)
FRAMES_PER_SECOND = 4  # ~the seed notebook's 300 ms per frame
MAX_COLUMNS = 3


def ffmpeg_executable() -> str | None:
    """The ffmpeg binary shipped by imageio-ffmpeg, or None when it is not installed."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # not installed, or no binary for this platform: fall back to GIF
        return None


def frame_steps(series: list[Series], limit: int = MAX_FRAMES) -> list[int]:
    """The measurement steps to show, at most ``limit``, spread evenly."""
    steps = np.unique(np.concatenate([s.steps for s in series]))
    if len(steps) > limit:
        steps = steps[np.unique(np.round(np.linspace(0, len(steps) - 1, limit)).astype(int))]
    return [int(step) for step in steps]


def _y_limit(series: list[Series], layer: str) -> float:
    """The largest density of ``layer`` over all frames, so the y axis never jumps."""
    peak = 0.0
    for s in series:
        if layer not in s.layers:
            continue
        for index in range(len(s.steps)):
            result = histogram_density(s, layer, index)
            if result is not None:
                peak = max(peak, float(np.max(result[1])))
    return peak * 1.45 or 1.0  # headroom for the legend above the tallest bar


class HistogramAnimation:
    """The figure and artists of the animation; ``draw(frame)`` updates them in place.

    Artists are created once and only their data changes per frame (rather than clearing the
    axes), which keeps rendering a 60-frame, 12-layer animation to seconds.
    """

    def __init__(self, series: list[Series], layers: list[str], steps: list[int], several: bool):
        self.series, self.layers, self.steps, self.several = series, layers, steps, several
        rows, columns = grid_shape(len(layers), MAX_COLUMNS)
        self.figure, axes = new_figure(rows, columns, height=2.6)
        hide_unused(axes, len(layers))
        self.axes = list(axes.flat)[: len(layers)]
        self.patches: dict[tuple[int, int], tuple] = {}
        self.legends: list[Legend | None] = []
        for panel, layer in enumerate(layers):
            self._set_up_panel(panel, layer)
        figure_legend(self.figure, series, several)
        self.draw(len(steps) - 1)  # the widest legends and titles, for the layout below
        self.figure.canvas.draw()
        # Lay out once, then freeze: constrained layout on every frame would triple the render time.
        self.figure.set_layout_engine("none")

    def _set_up_panel(self, panel: int, layer: str) -> None:
        axis = self.axes[panel]
        edges, drawn = None, False
        for number, s in enumerate(self.series):
            if layer not in s.layers or s.meta.get("edges") is None:
                continue
            edges = np.asarray(s.meta["edges"], dtype=float)
            style = s.style()
            zeros = np.zeros(len(edges) - 1)
            fill = axis.stairs(zeros, edges, fill=True, alpha=0.25, color=style["color"])
            line = axis.stairs(zeros, edges, linewidth=1.3, label=s.label(self.several), **style)
            self.patches[(panel, number)] = (fill, line, edges)
            drawn = True
        if edges is not None:
            axis.set_xlim(edges[0], edges[-1])
        axis.set_ylim(0, _y_limit(self.series, layer))
        axis.set_yticks([])
        axis.set_xlabel("activation value")
        self.legends.append(axis.legend(loc="upper left", fontsize=7, handlelength=1.2) if drawn else None)

    def draw(self, frame: int):
        """Show measurement step ``self.steps[frame]``; returns the changed artists."""
        fault_point("animation")
        step = self.steps[frame]
        changed = []
        for panel, layer in enumerate(self.layers):
            self.axes[panel].set_title(f"{layer}, step {step}")
            entries = [key for key in self.patches if key[0] == panel]
            for slot, (_, number) in enumerate(entries):
                fill, line, edges = self.patches[(panel, number)]
                s = self.series[number]
                index = index_at(s, step)
                result = histogram_density(s, layer, index) if index is not None else None
                density = result[1] if result is not None else np.zeros(len(edges) - 1)
                fill.set_data(density, edges)
                line.set_data(density, edges)
                text = moment_text(s, layer, index) if index is not None else "stopped"
                legend = self.legends[panel]
                if legend is not None:
                    legend.get_texts()[slot].set_text(panel_label(s, text, self.several))
                changed.extend([fill, line])
        return changed


def write_histogram_animation(series: list[Series], layers: list[str], stem: Path, *, several: bool,
                              video: bool | None = None) -> Path:
    """Render the animation to ``stem`` + ".mp4" (or ".gif") and return the file's path.

    ``video`` None picks MP4 when an encoder is available; True/False forces one format (tests).
    """
    steps = frame_steps(series)
    animation = HistogramAnimation(series, layers, steps, several)
    player = FuncAnimation(animation.figure, animation.draw, frames=len(steps), blit=False)
    ffmpeg = ffmpeg_executable() if video is not False else None
    if video and ffmpeg is None:
        raise RuntimeError("MP4 requested but imageio-ffmpeg is not installed")
    writer: AbstractMovieWriter
    if ffmpeg is not None:
        path = stem.with_suffix(".mp4")
        writer = _mp4_writer()
    else:
        path = stem.with_suffix(".gif")
        writer = PillowWriter(fps=FRAMES_PER_SECOND)
    path.parent.mkdir(parents=True, exist_ok=True)
    # matplotlib looks for `ffmpeg` on PATH unless told; imageio-ffmpeg's binary is not on it.
    with matplotlib.rc_context({"animation.ffmpeg_path": ffmpeg} if ffmpeg is not None else {}):
        player.save(str(path), writer=writer)
    return path


def _mp4_writer() -> FFMpegWriter:
    """H.264 in yuv420p with even frame sizes and the index up front: what browsers play."""
    return FFMpegWriter(
        fps=FRAMES_PER_SECOND,
        codec="h264",
        extra_args=["-pix_fmt", "yuv420p", "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-movflags", "+faststart"],
    )
