"""What a report section is made of: figures with captions, animations, notes.

A section builder takes the ``RunSet`` and returns a ``Section``. Figures are returned unsaved
(``Plot``) and animations as writers (``Movie``), so that builders never deal with file names and
the report decides where and in which formats they go.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure


@dataclass
class Plot:
    """One figure: ``name`` is its file stem (unique within the report).

    A figure over training steps gives ``points``: how many steps each of its curves has (one
    entry per drawn series), and ``unit``, what a point is ("probe measurements", "evaluations").
    With fewer than two points in every curve there is no curve to see: the report shows one line
    saying so in its place (``too_few_points``). ``points`` None: a figure not over training.
    """

    name: str
    title: str
    figure: Figure
    caption: str
    points: tuple[int, ...] | None = None
    unit: str = "probe measurements"


def too_few_points(plot: Plot) -> str | None:
    """The line shown instead of ``plot`` when none of its curves over training has two points."""
    if plot.points is None or max(plot.points, default=0) >= 2:
        return None
    most = max(plot.points, default=0)
    return (f"not drawn: at most {most} {plot.unit.removesuffix('s') if most == 1 else plot.unit} per network, "
            f"and a curve over training needs two; a longer run or more {plot.unit} (probe_points, eval_every) "
            f"fill it.")


def points_of(series) -> tuple[int, ...]:
    """The number of stored steps of each series (anything with ``steps``), for ``Plot.points``."""
    return tuple(len(s.steps) for s in series)


@dataclass
class Movie:
    """An animation; ``write(stem, video)`` renders it to ``stem`` + the suffix of the format it
    picks (``video``: None = MP4 if possible, else GIF; True/False force one) and returns the path."""

    name: str
    title: str
    write: Callable[[Path, bool | None], Path]
    caption: str


@dataclass
class Table:
    """A small HTML table: ``header`` then ``rows`` of already formatted cells."""

    title: str
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Section:
    """A titled part of the report. With no items, its ``note`` says why it is empty."""

    key: str
    title: str
    intro: str = ""
    items: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, item) -> None:
        """Append a Plot, Movie or Table; ``None`` (a figure without data) is skipped."""
        if item is not None:
            self.items.append(item)

    @property
    def empty(self) -> bool:
        return not self.items


def missing(key: str, title: str, note: str) -> Section:
    """A section left out because its data is missing, with the note saying so."""
    return Section(key, title, notes=[note])


def section_of(key: str, title: str, items, *, intro: str, missing_note: str) -> Section:
    """A section of ``items`` (the ``None`` ones, figures without data, left out), or
    ``missing(key, title, missing_note)`` when none is left."""
    section = Section(key, title, intro=intro)
    for item in items:
        section.add(item)
    return missing(key, title, missing_note) if section.empty else section
