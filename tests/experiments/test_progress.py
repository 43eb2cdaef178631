"""The training progress line fits the terminal, however many networks, and never cuts a name."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from rich.console import Console

from normlab.experiments.progress import Progress, fixed_width, layout, loss_text, short_names

FIVE = ("none", "batch", "mean_only", "var_only", "no_affine")
LOSSES = np.array([2.3026, 0.58123, 1.2, 0.93311, 0.5812])


def test_short_names_are_the_shortest_unique_prefixes_of_at_least_three_characters():
    assert short_names(FIVE) == ["non", "bat", "mea", "var", "no_"]
    assert short_names(("l1", "l2", "linf", "batch")) == ["l1", "l2", "lin", "bat"]
    assert short_names(("batch", "batch_renorm")) == ["batch", "batch_"]  # a prefix of another stays whole


def test_loss_text_gives_way_step_by_step_and_never_cuts_a_name():
    assert loss_text(FIVE, LOSSES) == "none 2.303  batch 0.5812  mean_only 1.2  var_only 0.9331  no_affine 0.5812"
    steps = ["none 2.3  batch 0.581  mean_only 1.2  var_only 0.933  no_affine 0.581",  # 3 digits
             "none 2.3 batch 0.581 mean_only 1.2 var_only 0.933 no_affine 0.581",  # single spaces
             "non 2.3  bat 0.581  mea 1.2  var 0.933  no_ 0.581",  # unique prefixes
             "non 2.3 bat 0.581 mea 1.2 var 0.933 no_ 0.581"]
    for text in steps:
        assert loss_text(FIVE, LOSSES, len(text)) == text
    assert loss_text(FIVE, LOSSES, 30) == "non 2.3 bat 0.581 mea 1.2 +2"  # the last two left out, counted
    assert loss_text(FIVE, LOSSES, 5) == ""
    allowed = set(FIVE) | set(short_names(FIVE))
    for width in range(0, 120):
        text = loss_text(FIVE, LOSSES, width)
        assert len(text) <= width
        labels = text.split()[0::2]
        assert all(label in allowed or re.fullmatch(r"\+\d", label) for label in labels), text


def _rendered(columns: int, names, total: int = 10_000) -> list[str]:
    console = Console(file=io.StringIO(), width=columns, force_terminal=False, color_system=None)
    with Progress(total, names, quiet=False, console=console, columns=columns) as progress:
        progress.update(total // 3, LOSSES[: len(names)])
    return [line for line in console.file.getvalue().splitlines() if line.strip()]


@pytest.mark.parametrize("columns", [60, 80, 100, 160])
def test_the_rendered_line_fits_the_terminal_with_five_networks(columns):
    lines = _rendered(columns, FIVE)
    assert lines and all(len(line) <= columns for line in lines), lines
    last = lines[-1]
    assert last.startswith("train") and "3333/10000" in last
    bar, room = layout(columns, 10_000, FIVE)
    assert len(loss_text(FIVE, LOSSES, room)) + bar + fixed_width(10_000) < columns
    if columns >= 160:
        assert "no_affine 0.5812" in last  # wide enough for every full name
    if columns >= 80:
        assert "non 2.3" in last or "none 2.3" in last  # the losses are shown, not cut off
