"""Fixtures of the experiment tests that run presets and studies through the real report."""

from __future__ import annotations

import pytest

from normlab.report import report as report_module
from normlab.report.html import RenderedItem
from normlab.report.sections import Movie, Plot, too_few_points


@pytest.fixture
def recorded_items(monkeypatch):
    """The report's items as it renders them, with plots and animations kept instead of drawn
    (matplotlib's layout and rasterization are tested by tests/report); tables render as usual."""
    items: list = []
    rendering = report_module._render_item

    def record(item, out, formats, video):
        items.append(item)
        if isinstance(item, Plot):
            short = too_few_points(item)
            item.figure.clear()
            if short is not None:
                return RenderedItem("note", item.title, short, anchor=item.name)
            return RenderedItem("image", item.title, item.caption, source=f"figures/{item.name}.png", anchor=item.name)
        if isinstance(item, Movie):
            return RenderedItem("gif", item.title, item.caption, source=f"animations/{item.name}.gif", anchor=item.name)
        return rendering(item, out, formats, video)

    monkeypatch.setattr(report_module, "_render_item", record)
    return items
