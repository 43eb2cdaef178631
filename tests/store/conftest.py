"""Fixtures for the run-store tests: a fresh store with two metric columns."""

from __future__ import annotations

import pytest

from normlab.store import RunStore

METRIC_COLUMNS = ["loss", "accuracy"]


@pytest.fixture
def make_store(tmp_path):
    """A factory for new stores in ``tmp_path`` (``name`` picks the sub-directory)."""

    def make(name: str = "run", **overrides) -> RunStore:
        options = {
            "config": {"model": "mlp", "lr": 0.1, "widths": [8, 8]},
            "provenance": {"seeds": {"init": 0}},
            "metric_columns": METRIC_COLUMNS,
            **overrides,
        }
        return RunStore.create(tmp_path / name, **options)

    return make


@pytest.fixture
def store(make_store) -> RunStore:
    """A new, empty store."""
    return make_store()
