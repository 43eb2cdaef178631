"""``normlab sweep --vectorize``: the members trained in one vmapped step, through the command line.

The reference is the same sweep run one member after another (``--jobs 1``, the path every
member of a plain sweep takes). Each vectorized member's directory must hold what the reference
member's holds (config, status, steps, step_seconds, probes' meta, metrics to float32 rounding:
rtol 1e-5), and the sweep summary must read the two sweeps alike. Not bit-identical: vmap makes
XLA compile a batched program whose float32 sums are accumulated in another order
(``normlab.experiments.vectorized``; tests/experiments/test_vectorized.py holds the run
directories' full comparison).
"""

from __future__ import annotations

import numpy as np
import pytest

import compile_cache_fixture
from normlab.cli import main
from normlab.experiments import vectorized
from normlab.experiments.summary import sweep_summary_lines
from normlab.experiments.sweep import load_sweep
from normlab.store import load_run

# quickstart at width 1/4 on digits: 12 steps, 2 seeds x 2 learning rates.
SETTINGS = ["width=0.25", "steps=12", "eval_every=4", "log_every=2", "probe_every=3", "probes=distance",
            "train_eval_size=360", "step_cost_repeats=1", "report=false"]
GRID = ["--seeds", "0-1", "--grid", "lr=0.03,0.05"]
MEMBERS = ["lr=0.03-seed=0", "lr=0.03-seed=1", "lr=0.05-seed=0", "lr=0.05-seed=1"]
RTOL, ATOL = 1e-5, 5e-6  # float32 rounding, and absolute for values that are 0 up to rounding


shared_compile_cache = compile_cache_fixture.shared_compile_cache("module")


def sweep(out, *options: str) -> int:
    return main(["sweep", "quickstart", "--size", "tiny", *GRID, "--set", *SETTINGS, "--out", str(out), "--quiet",
                 *options])


def only_dir(out):
    (directory,) = [path for path in out.iterdir() if path.is_dir()]
    return directory


@pytest.fixture(scope="module")
def one_by_one(tmp_path_factory):
    out = tmp_path_factory.mktemp("one-by-one")
    assert sweep(out, "--jobs", "1") == 0
    return only_dir(out)


def assert_same_members(directory, reference) -> None:
    for name in MEMBERS:
        mine, theirs = load_run(directory / name), load_run(reference / name)
        assert mine.config == theirs.config and mine.status == theirs.status == "completed"
        assert mine.info["steps_done"] == theirs.info["steps_done"] == 12
        assert mine.info["step_seconds"].keys() == theirs.info["step_seconds"].keys() == {"none", "batch"}
        assert all(seconds > 0 for seconds in mine.info["step_seconds"].values())
        assert mine.probe_names == theirs.probe_names
        for probe in theirs.probe_names:
            assert mine.probe_meta(probe) == theirs.probe_meta(probe)
        ours, expected = mine.metrics, theirs.metrics
        assert ours[["step", "network", "kind"]].equals(expected[["step", "network", "kind"]])
        for column in ours.columns.drop(["step", "network", "kind"]):
            np.testing.assert_allclose(ours[column], expected[column], rtol=RTOL, atol=ATOL, err_msg=f"{name} {column}")


def test_a_vectorized_sweep_writes_the_members_a_sweep_one_by_one_writes(tmp_path, one_by_one):
    assert sweep(tmp_path, "--vectorize") == 0
    directory = only_dir(tmp_path)
    content = load_sweep(directory)
    assert content["status"] == "completed" and content["executor"] == "vectorized"
    assert [member["dir"] for member in content["members"]] == MEMBERS
    assert all(member["status"] == "completed" for member in content["members"])
    assert load_run(directory / MEMBERS[3]).info["vectorized"] == {"members": 4, "member": 3}
    assert_same_members(directory, one_by_one)
    # the members really differ (own seeds and rates), and the summary reads them as it reads the reference
    assert len({load_run(directory / name).training("batch").loss.iloc[-1] for name in MEMBERS}) == 4
    assert sweep_summary_lines(directory)[1:] == sweep_summary_lines(one_by_one)[1:]


def test_an_interrupted_vectorized_sweep_resumes_to_the_same_members(tmp_path, one_by_one, monkeypatch, capsys):
    passed = []

    def interrupt_at_step_6(phase):  # Ctrl-C between two steps: the loop checks before each
        passed.append(phase)
        if passed.count("training") == 7:
            raise KeyboardInterrupt

    monkeypatch.setattr(vectorized, "fault_point", interrupt_at_step_6)
    assert sweep(tmp_path, "--vectorize") == 130
    directory = only_dir(tmp_path)
    assert f"normlab sweep --resume {directory}" in capsys.readouterr().err
    content = load_sweep(directory)
    assert content["status"] == "interrupted"
    assert [member["status"] for member in content["members"]] == ["interrupted"] * 4
    assert all(load_run(directory / name).info["steps_done"] == 6 for name in MEMBERS)
    monkeypatch.undo()
    # each member continues alone from its step-6 checkpoint
    assert main(["sweep", "--resume", str(directory), "--vectorize", "--quiet"]) == 0
    assert load_sweep(directory)["status"] == "completed"
    assert_same_members(directory, one_by_one)


@pytest.mark.parametrize("options, message", [
    (["--grid", "width=0.25,0.5"], "vectorized members may differ only in seed, data_seed, lr; member 2 has "
                                   "width=0.5, member 0 width=0.25"),
    (["--set", "model=lenet", "dataset=synthetic"], "setting 'model' is 'lenet', which cannot train vectorized; "
                                                    "allowed: mlp, ioffe_mlp, dln"),
    (["--jobs", "2"], "give no --jobs or --threads-per-member with --vectorize"),
    (["--ray"], "--vectorize trains the members together in this process: give it without --ray"),
])
def test_what_cannot_train_vectorized_is_one_line_and_exit_2_before_any_work(tmp_path, capsys, options, message):
    out = tmp_path / "runs"
    code = main(["sweep", "quickstart", "--size", "tiny", "--seeds", "0-1", "--vectorize", *options,
                 "--out", str(out)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], lines
    assert not out.exists()
