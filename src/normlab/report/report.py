"""``write_report``: read run directories, draw every section that has data, write report.html.

The report reads the run store only -- it never trains, evaluates or imports the experiments -- so
it can be rebuilt at any time, also from a run that is still going or was killed.
"""

from __future__ import annotations

import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

from normlab.errors import fault_point
from normlab.report.figures.activations import activations_section
from normlab.report.figures.bn_parameters import bn_parameters_section
from normlab.report.figures.curvature import curvature_section
from normlab.report.figures.distance import distance_section
from normlab.report.figures.drift import drift_section
from normlab.report.figures.gradients import gradients_section
from normlab.report.figures.santurkar import divergence_section, ics_section, landscape_section
from normlab.report.figures.start import start_section
from normlab.report.figures.sweep import sweep_section
from normlab.report.figures.training import training_section
from normlab.report.figures.variants import study_section
from normlab.report.html import RenderedItem, RenderedSection, page, relative
from normlab.report.runs import RunSet, collect_runs
from normlab.report.sections import Movie, Plot, Section, Table, too_few_points
from normlab.report.style import report_style

REPORT_FILE = "report.html"
FIGURES_DIR = "figures"
ANIMATIONS_DIR = "animations"
FORMATS = ("png", "svg")

# The report's sections, in page order; each builder takes the RunSet and returns a Section (the
# study section: None when no sweep is a study, and then it is not listed as left out).
SECTION_BUILDERS: list[Callable[[RunSet], Section | None]] = [
    study_section,
    start_section,
    training_section,
    activations_section,
    drift_section,
    gradients_section,
    ics_section,
    landscape_section,
    divergence_section,
    curvature_section,
    distance_section,
    bn_parameters_section,
    sweep_section,
]


class ReportWarning(RuntimeWarning):
    """A figure or section that could not be drawn (the report shows a note in its place)."""


def write_report(paths, *, out, formats=("png",), video: bool | None = None) -> Path:
    """Write ``out/report.html`` (with ``out/figures``, ``out/animations``) for the runs under ``paths``.

    ``paths`` are run directories or sweeps (directories of run directories); several are
    overlaid in the same figures. ``formats``: image formats to save, "png" and/or "svg" (the
    page shows the first and links the others). ``video``: None writes the animation as MP4 when
    imageio-ffmpeg is installed and as GIF otherwise; True/False forces MP4/GIF.
    Returns the path of report.html.
    """
    formats = _check_formats(formats)
    out = Path(out)
    runset = collect_runs([Path(p) for p in paths])
    (out / FIGURES_DIR).mkdir(parents=True, exist_ok=True)
    shown, overlay_note = runset.for_figures()
    rendered = []
    with report_style():
        for builder in SECTION_BUILDERS:
            fault_point("report")
            # Sweep curves summarize every run; the other figures overlay a readable few.
            runs = runset if builder in (sweep_section, study_section) else shown
            section = _render_section(builder, runs, out, formats, video)
            if section is None:  # a section only some reports have (a study's)
                continue
            if runs is shown and overlay_note and section.items:
                section.section.notes.insert(0, overlay_note)
            rendered.append(section)
    path = out / REPORT_FILE
    temporary = path.with_name(f".{REPORT_FILE}.tmp")
    temporary.write_text(page(runset, rendered, out), encoding="utf-8")
    temporary.replace(path)  # atomic: a browser never sees half a page
    return path


def _check_formats(formats) -> tuple[str, ...]:
    formats = tuple(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if not formats or unknown:
        raise ValueError(f"formats must be a non-empty subset of {FORMATS}; got {formats}")
    return formats


def _render_section(builder, runset: RunSet, out: Path, formats, video) -> RenderedSection | None:
    """Build one section and save its media; a failure becomes a visible note, not a lost report."""
    try:
        section = builder(runset)
    except Exception as error:  # one broken figure must not cost the user the rest of the report
        _reraise_interrupt(error)
        name = builder.__name__.removesuffix("_section")
        return RenderedSection(Section(name, name.capitalize()), [_failure(f"section {name}", error)])
    if section is None:
        return None
    items = []
    for item in section.items:
        try:
            items.append(_render_item(item, out, formats, video))
        except Exception as error:
            _reraise_interrupt(error)
            items.append(_failure(getattr(item, "title", "item"), error))
    return RenderedSection(section, items)


def _reraise_interrupt(error: BaseException | None) -> None:
    """Raise ``KeyboardInterrupt`` if ``error`` was raised while handling one.

    Ctrl-C during the MP4 encoding also stops ffmpeg (same process group); matplotlib's writer then
    raises ``CalledProcessError`` from its cleanup, which would hide the interrupt as a figure failure.
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        seen.add(id(error))
        error = error.__context__


def _failure(what: str, error: Exception) -> RenderedItem:
    warnings.warn(f"report: {what} could not be drawn: {error}\n{traceback.format_exc()}", ReportWarning, stacklevel=3)
    return RenderedItem("failed", f"{what} could not be drawn", f"{type(error).__name__}: {error}")


def _render_item(item, out: Path, formats, video) -> RenderedItem:
    if isinstance(item, Plot):
        short = too_few_points(item)
        if short is not None:  # one line in place of empty axes
            item.figure.clear()
            return RenderedItem("note", item.title, short, anchor=item.name)
        return _save_plot(item, out, formats)
    if isinstance(item, Movie):
        path = item.write(out / ANIMATIONS_DIR / item.name, video)
        kind = "video" if path.suffix == ".mp4" else "gif"
        return RenderedItem(kind, item.title, item.caption, source=relative(path, out), anchor=item.name)
    if isinstance(item, Table):
        return RenderedItem("table", item.title, item.caption, table=item)
    raise TypeError(f"unknown report item {item!r}")


def _save_plot(plot: Plot, out: Path, formats) -> RenderedItem:
    """Save ``plot`` in every format; the page shows the first and links the rest."""
    paths = []
    for image_format in formats:
        path = out / FIGURES_DIR / f"{plot.name}.{image_format}"
        plot.figure.savefig(path, format=image_format)
        paths.append(path)
    plot.figure.clear()  # free the memory now: a report can have dozens of figures
    links = tuple((path.suffix[1:].upper(), relative(path, out)) for path in paths[1:])
    return RenderedItem("image", plot.title, plot.caption, source=relative(paths[0], out), extra_links=links,
                        anchor=plot.name)
