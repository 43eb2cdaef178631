"""The training progress line: a bar, the step count, the time, and every network's loss, fitted to
the terminal's width however many networks a run has.

Rich lays the line out as columns one space apart: ``train``, the bar, ``step/total``, the elapsed
time, the losses. The bar gives way first (down to ``MIN_BAR`` characters); then the losses are
written shorter: 3 significant digits instead of 4, single spaces, then each network's shortest
unique prefix of at least 3 characters (``no_affine`` -> ``no_``, ``none`` -> ``non``), then single spaces, and
finally the last networks are left out with a count (``+2``). A name is never cut in the middle
and the line never wraps.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

BAR_WIDTH = 40
MIN_BAR = 10
LABEL = "train"
ELAPSED_WIDTH = 8  # "0:00:00" and up to 99 hours


def fixed_width(total: int) -> int:
    """Characters of the line besides the bar and the losses: label, step/total, time, the gaps."""
    digits = len(str(total))
    return len(LABEL) + (2 * digits + 1) + ELAPSED_WIDTH + 4  # four one-space gaps between five columns


def short_names(names: Sequence[str], least: int = 3) -> list[str]:
    """Each name's shortest prefix of at least ``least`` characters that begins no other name
    (the whole name where none is shorter)."""
    shortened = []
    for name in names:
        others = [other for other in names if other != name]
        length = min(least, len(name))
        while length < len(name) and any(other.startswith(name[:length]) for other in others):
            length += 1
        shortened.append(name[:length])
    return shortened


def loss_text(names: Sequence[str], losses, width: int | None = None) -> str:
    """"none 2.297  batch 2.334", as long as fits in ``width`` characters (None: no limit)."""
    values = [float(loss) for loss in np.asarray(losses, dtype=float).reshape(-1)]

    def joined(labels, digits, gap, count=None):
        count = len(labels) if count is None else count
        parts = [f"{label} {value:.{digits}g}" for label, value in zip(labels[:count], values[:count])]
        return gap.join(parts) + (f"{gap}+{len(labels) - count}" if count < len(labels) else "")

    if width is None:
        return joined(list(names), 4, "  ")
    short = short_names(names)
    full = list(names)
    for labels, digits, gap in ((full, 4, "  "), (full, 3, "  "), (full, 3, " "), (short, 3, "  "), (short, 3, " ")):
        text = joined(labels, digits, gap)
        if len(text) <= width:
            return text
    for count in range(len(names) - 1, 0, -1):
        text = joined(short, 3, " ", count)
        if len(text) <= width:
            return text
    return ""


def layout(columns: int, total: int, names: Sequence[str], losses=None) -> tuple[int, int]:
    """(bar width, characters left for the losses) on a terminal ``columns`` wide."""
    room = max(0, columns - fixed_width(total) - 1)  # the last column must not touch the edge
    wanted = len(loss_text(names, np.full(len(names), 0.12345) if losses is None else losses))
    bar = max(MIN_BAR, min(BAR_WIDTH, room - wanted))
    return bar, max(0, room - bar)


def terminal_columns() -> int:
    return shutil.get_terminal_size((100, 24)).columns


@dataclass
class Progress:
    """A rich progress bar with the losses of every network; silent when ``quiet``.

    ``console``: where rich draws (default: the terminal); ``columns``: its width (default: the
    terminal's, read at every update, so a resized window is followed).
    """

    total: int
    names: tuple[str, ...]
    quiet: bool
    start: int = 0
    listener: Callable[[int, int], None] | None = None  # told (step, total) at every update, quiet or not
    console: object | None = None
    columns: int | None = None

    def _columns(self) -> int:
        return self.columns if self.columns is not None else terminal_columns()

    def __enter__(self):
        self._bar = self._line = None
        if not self.quiet and _notebook_without_widgets():
            from normlab.report.notebook import NotebookProgress

            self._line = NotebookProgress(self.total, self.start)
        elif not self.quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._bar_width, _ = layout(self._columns(), self.total, self.names)
            self._bar = RichProgress(
                TextColumn(f"[bold]{LABEL}"),
                BarColumn(bar_width=self._bar_width),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[losses]}"),
                transient=False,
                console=self.console,
            )
            self._bar.start()
            self._task = self._bar.add_task("train", total=self.total, completed=self.start, losses="")
        return self

    def update(self, step: int, losses: np.ndarray) -> None:
        if self.listener is not None:
            self.listener(step, self.total)
        if self._bar is not None:
            room = max(0, self._columns() - fixed_width(self.total) - 1 - self._bar_width)
            self._bar.update(self._task, completed=step, losses=loss_text(self.names, losses, room))
        if self._line is not None:
            self._line.update(step, loss_text(self.names, losses))

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()


def _notebook_without_widgets() -> bool:
    """In Jupyter rich draws live only through ipywidgets; without them a display line is used."""
    try:
        from normlab.report.notebook import in_notebook, rich_works_in_notebook
    except ImportError:  # the report stage is optional for a bare install
        return False
    return in_notebook() and not rich_works_in_notebook()
