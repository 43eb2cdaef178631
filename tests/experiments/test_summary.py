"""The summary's probe lines read each probe's declared headline, for new and old run files."""

from __future__ import annotations

import numpy as np
import pytest

from normlab.experiments.summary import probe_lines
from normlab.probes import Headline, headline_value
from normlab.store import RunStore, load_run

SPREAD = [0.5, 3.0, 1.0, 2.0]
TOTAL = [0.0, 0.25, 0.75]


def _run(tmp_path, landscape_headline, distance_headline):
    store = RunStore.create(tmp_path / "run", config={"networks": ["net"]}, provenance={}, metric_columns=["loss"])
    landscape = {"bn_mode": "train", "layers": ["dense0"]}
    distance = {"bn_mode": "none", "layers": ["dense0"]}
    if landscape_headline is not None:
        landscape["headline"] = landscape_headline
    if distance_headline is not None:
        distance["headline"] = distance_headline
    store.set_probe_meta("landscape", {"networks": {"net": landscape}})
    store.set_probe_meta("distance", {"networks": {"net": distance}})
    for step, value in enumerate(SPREAD):
        store.append_probe(
            "landscape", "net", step, {"spread": np.float32(value), "loss": np.full(3, value, np.float32)}
        )
    for step, value in enumerate(TOTAL):
        store.append_probe("distance", "net", step, {"total": np.float32(value), "dense0": np.float32(value)})
    store.flush()
    return load_run(store.path)


@pytest.mark.parametrize("stored", ["declared", "key only (older runs)", "none (older runs)"])
def test_probe_lines_print_the_declared_headline(tmp_path, stored):
    if stored == "declared":
        headlines = ({"key": "spread", "reduction": "median", "label": "median over the run of spread "
                      "(mean over layers/points)", "layer": -1},
                     {"key": "total", "reduction": "last", "label": "distance of all weights from init at the end",
                      "layer": -1})
    elif stored.startswith("key only"):
        headlines = ("spread", None)
    else:
        headlines = (None, None)
    lines = {line.split(":")[0].strip(): line for line in probe_lines(_run(tmp_path, *headlines))}
    assert lines["landscape"].endswith(f"median over the run of spread (mean over layers/points): net "
                                       f"{np.median(SPREAD):.4g}")
    assert lines["distance"].endswith(f"distance of all weights from init at the end: net {TOTAL[-1]:.4g}")


def test_headline_reductions_against_numpy():
    arrays = {"a.std": np.array([1.0, 2.0, 4.0]), "curve": np.array([[1.0, 3.0], [2.0, np.nan], [5.0, 7.0]])}
    assert headline_value(Headline("{layer}.std", "last", ""), arrays, ["b", "a"]) == 4.0
    assert headline_value(Headline("a.std", "std", ""), arrays, []) == pytest.approx(np.std([1.0, 2.0, 4.0]))
    assert headline_value(Headline("curve", "median", ""), arrays, []) == pytest.approx(
        np.nanmedian([2.0, np.nan, 6.0])
    )
    assert headline_value(Headline("missing", "last", ""), arrays, []) is None
    with pytest.raises(ValueError, match="reduction"):
        Headline("a", "mean", "")
