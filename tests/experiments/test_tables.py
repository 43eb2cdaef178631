"""Tidy tables: ``load_sweep`` and ``headline_table`` against the run store read directly, and
``normlab export csv``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import normlab
from normlab.errors import NormlabError
from normlab.experiments import apply_overrides, default_config
from normlab.experiments.sweep import parse_grid, run_sweep
from normlab.store import load_run


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    base = apply_overrides(
        replace(default_config(), preset="tiny"),
        [
            "dataset=synthetic",
            "width=0.25",
            "steps=4",
            "eval_every=2",
            "probe_every=2",
            "report=false",
            "probes=distance,gradients",
        ],
    )
    directory, _ = run_sweep(base, parse_grid(["lr=0.01,0.1"]), [0, 1], out=tmp_path_factory.mktemp("s"), quiet=True,
                              jobs=1)
    return directory


def test_load_sweep_has_one_row_per_member_and_network_with_its_final_metrics(sweep):
    table = normlab.load_sweep(sweep)
    members = sorted(p for p in sweep.iterdir() if p.is_dir())
    networks = load_run(members[0]).config["networks"]
    assert len(table) == len(members) * len(networks) == 8
    for _, row in table.iterrows():
        run = load_run(row["path"])
        final = run.final_metrics()[row["network"]]
        assert row["lr"] == run.config["lr"] and row["seed"] == run.config["seed"]
        assert row["final_step"] == final["step"] == 4
        assert row["test_accuracy"] == final["test_accuracy"]
        assert row["best_test_accuracy"] == run.evaluations(row["network"])["test_accuracy"].max()
    assert sorted(table.groupby("lr")["seed"].nunique().tolist()) == [2, 2]


def test_headline_table_is_the_declared_headline_at_every_stored_step(sweep):
    table = normlab.headline_table(sweep, probe="distance")
    assert set(table["probe"]) == {"distance"} and list(table.columns)[:5] == [
        "run",
        "network",
        "probe",
        "step",
        "value",
    ]
    member = sorted(p for p in sweep.iterdir() if p.is_dir())[0]
    run = load_run(member)
    meta = run.probe_meta("distance")["networks"]
    label = table["run"].iloc[0]
    for network in run.config["networks"]:
        headline = meta[network]["headline"]
        key = (
            headline["key"].format(layer=meta[network]["layers"][headline["layer"]])
            if "{layer}" in headline["key"]
            else headline["key"]
        )
        arrays = run.probe("distance", network)
        expected = np.asarray(arrays[key], np.float64).reshape(len(arrays["step"]), -1).mean(axis=1)
        rows = table[(table["run"] == label) & (table["network"] == network)]
        assert rows["step"].tolist() == arrays["step"].tolist() == [0, 2]
        np.testing.assert_allclose(rows["value"], expected)
    everything = normlab.headline_table(sweep)
    assert set(everything["probe"]) == {"distance", "gradients"}
    with pytest.raises(NormlabError, match="no probe 'ics'"):
        normlab.headline_table(sweep, probe="ics")


def test_export_csv_writes_both_tables(sweep, tmp_path):
    out = tmp_path / "tables"
    normlab_bin = shutil.which("normlab", path=str(Path(sys.executable).parent)) or shutil.which("normlab")
    done = subprocess.run([normlab_bin, "export", "csv", str(sweep), "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 8 and {"network", "lr", "seed", "test_accuracy"} <= set(runs.columns)
    assert len(pd.read_csv(out / "headlines.csv")) == len(normlab.headline_table(sweep))
