"""Every study at its tiny size through the real runner, sweep and report: each writes its sweep
directory with the study record, its own figures and its paired summary table (n = 2 seeds per
row). Figures are built by the report's section builders but not rasterized (as in
test_presets_tiny.py); the studies share this process and one compilation cache, so only the
first member of a shape compiles. Also: the plans at every size, overrides, and the CLI's errors.
"""

from __future__ import annotations

import json
import time

import pytest

import compile_cache_fixture
from normlab.cli import main
from normlab.errors import NormlabError
from normlab.experiments.config import SIZES
from normlab.experiments.studies import STUDIES, get_study, run_study
from normlab.report.sections import Plot, Table

shared_compile_cache = compile_cache_fixture.shared_compile_cache("module")

STUDY_PLOTS = {
    "accuracy_over_training": "study_{name}_training",
    "activation_magnitude": "study_{name}_magnitude",
    "bn_parameters": "study_{name}_bn_parameters",
}


@pytest.mark.parametrize("name", list(STUDIES))
def test_every_study_at_tiny_size_writes_its_figures_and_paired_table(name, tmp_path, recorded_items):
    study = get_study(name)
    plan = study.plan("tiny")
    assert plan.config.size == "tiny" and plan.config.dataset.startswith(("synthetic", "digits"))
    begin = time.perf_counter()
    directory, results = run_study(study, plan, out=tmp_path, quiet=True, jobs=1)
    from normlab.cli import _write_report

    _write_report(directory, quiet=True)
    seconds = time.perf_counter() - begin
    assert [r.status for r in results] == ["completed"] * plan.members
    sweep = json.loads((directory / "sweep.json").read_text())
    assert sweep["status"] == "completed" and sweep["study"]["name"] == name and sweep["study"]["size"] == "tiny"
    assert directory.name.endswith(f"study-{name}")

    plots = {item.name for item in recorded_items if isinstance(item, Plot)}
    tables = {item.title: item for item in recorded_items if isinstance(item, Table)}
    if study.x_key == "lr":
        assert {"sweep_lr", "per_epoch_lr"} <= plots and "Largest lr that trains" in tables
    else:
        assert f"study_{name}_final" in plots
    expected = {STUDY_PLOTS[figure].format(name=name) for figure in study.figures if figure in STUDY_PLOTS}
    assert expected <= plots, f"{name}: missing {sorted(expected - plots)}"
    if "cost" in study.figures:
        cost = tables["Cost per training step"]
        assert [row[0] for row in cost.rows] == list(plan.config.networks) and cost.rows[0][2] == "1.00x"
    summary = tables["Study summary: paired differences from the baseline"]
    networks = len(plan.config.networks)
    contexts = 1
    for key, values in plan.grid.items():
        contexts *= len(values)
    assert len(summary.rows) == contexts * max(1, len(plan.variants)) * networks
    for row in summary.rows:  # every variant and its baseline over the two tiny seeds
        assert "(n=2" in row[2], row
        assert row[3] == "" or "(n=2" in row[3]
    html = (directory / "report" / "report.html").read_text()
    assert f"Study: {name}" in html and "95%" in html
    print(f"{name}: {plan.members} members, {seconds:.1f} s")


@pytest.mark.parametrize("name", list(STUDIES))
def test_every_size_of_every_study_is_a_valid_plan(name):
    study = get_study(name)
    members = {size: study.plan(size).members for size in SIZES}
    assert members["tiny"] <= members["small"] <= members["paper"], members
    assert study.plan().record["size"] == study.default_size == "small"


def test_set_seeds_and_grid_override_every_member():
    plan = get_study("d2l_lr").plan("tiny", overrides=["batch_size=16"], seeds=[3, 4, 5], grid={"lr": ["0.2"]})
    assert plan.config.batch_size == 16 and plan.seeds == [3, 4, 5] and plan.grid == {"lr": ["0.2"]}
    assert plan.members == 3
    lr_sweep = get_study("lr_sweep")
    assert lr_sweep.plan("small").grid["lr"] == ["0.01", "0.1", "1", "3"]  # x0.1..x30 of d2l_lenet's 0.1
    quick = lr_sweep.plan("small", overrides=["base=quickstart"])  # `--set base=PRESET`, as --base
    assert quick.record["base"] == "quickstart" and quick.grid["lr"] == ["0.003", "0.03", "0.3", "0.9"]
    with pytest.raises(NormlabError, match="has the fixed base preset 'd2l_lenet'"):
        get_study("d2l_lr").plan("tiny", base="quickstart")
    with pytest.raises(NormlabError, match="unknown size 'huge' for study 'd2l_lr'"):
        get_study("d2l_lr").plan("huge")
    with pytest.raises(NormlabError, match="compares with the network 'batch'"):
        get_study("d2l_lite").plan("tiny", overrides=["networks=none,mean_only"])


@pytest.mark.parametrize("argv, message", [
    (["run", "quickstart", "--seeds", "0,1"], "--seeds apply to studies and sweeps, not to a preset"),
    (["run", "d2l_bias", "--base", "quickstart"], "has the fixed base preset"),
    (["run", "d2l_lr", "--size", "huge"], "unknown size 'huge' for study 'd2l_lr'; allowed: tiny, small, paper"),
    (["run", "d2l_lr", "--grid", "lr=fast"], "setting 'lr' expects float"),
])
def test_study_command_errors_are_one_line(argv, message, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not any(tmp_path.iterdir())


def test_list_names_every_study(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in STUDIES:
        assert f"\n  {name} " in out


def test_a_study_is_not_swept_as_a_preset(tmp_path, capsys):
    assert main(["sweep", "d2l_lr", "--out", str(tmp_path)]) == 2
    assert "d2l_lr is a study (its own grid and seeds): run it with `normlab run d2l_lr`" in capsys.readouterr().err


def test_a_study_resumed_runs_only_its_missing_member(tmp_path, capsys):
    """normlab run --resume STUDY_DIR: a member removed (as if never started) is run again, the
    finished one is left as it was, and the study's report and summary come back."""
    import shutil

    study = get_study("d2l_affine")
    directory, _ = run_study(study, study.plan("tiny"), out=tmp_path, quiet=True, jobs=1)
    kept, removed = directory / "seed=0", directory / "seed=1"
    before = (kept / "run.json").read_bytes(), (kept / "run.json").stat().st_mtime_ns
    shutil.rmtree(removed)
    assert main(["run", "--resume", str(directory), "--jobs", "1", "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "1 of 2 members already finished" in out and "study d2l_affine (size tiny)" in out
    assert ((kept / "run.json").read_bytes(), (kept / "run.json").stat().st_mtime_ns) == before
    assert json.loads((removed / "run.json").read_text())["status"] == "completed"
    assert json.loads((directory / "sweep.json").read_text())["status"] == "completed"
