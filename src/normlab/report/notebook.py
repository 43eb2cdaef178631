"""normlab in Jupyter: a run's or sweep's report shown inline (``show``), and a progress line
that updates in place in a notebook without ipywidgets (rich needs them for live output there).
"""

from __future__ import annotations

from pathlib import Path


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (IPython's ZMQ shell)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def rich_works_in_notebook() -> bool:
    """rich draws live progress in Jupyter through ipywidgets only."""
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


class NotebookProgress:
    """One text line ``train  120/300  [0:00:05]  none 0.45  batch 0.31``, replaced in place
    through an IPython display handle (works in Jupyter and in nbclient-executed notebooks)."""

    def __init__(self, total: int, start: int = 0):
        import time

        from IPython.display import display

        self.total, self._clock, self._started = total, time.perf_counter, time.perf_counter()
        self._handle = display(self._line(start, ""), display_id=True)

    def _line(self, step: int, losses: str):
        from IPython.display import Pretty

        seconds = int(self._clock() - self._started)
        return Pretty(f"train  {step}/{self.total}  [{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}]  "
                      + losses)

    def update(self, step: int, losses: str) -> None:
        self._handle.update(self._line(step, losses))


def show(target, *, out: str | Path | None = None) -> list[Path]:
    """Display the report of a run or sweep inline: every figure as an image, every animation as
    an HTML5 video. ``target``: a run or sweep directory, a ``Run`` (``load_run``) or a
    ``RunResult``. Writes the report first (into ``out``, default ``<target>/report``) unless
    it is there already. Returns the files shown, in order.
    """
    from IPython.display import Image, Video, display

    from normlab.report.report import write_report

    path = Path(getattr(target, "path", target))
    report_dir = Path(out) if out is not None else path / "report"
    if not (report_dir / "report.html").is_file():
        write_report([path], out=report_dir)
    figures = sorted((report_dir / "figures").glob("*.png"))
    videos = sorted((report_dir / "animations").glob("*.mp4"))
    for figure in figures:
        display(Image(filename=str(figure)))
    for video in videos:
        display(Video(str(video), embed=True, html_attributes="controls loop"))
    return figures + videos
