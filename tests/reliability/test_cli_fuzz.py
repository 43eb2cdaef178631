"""Property-based fuzzing of the command line: bad input is exit 2 and one line, never a traceback.

Validation happens before any work, so invalid cases are checked in this process (``cli.main``)
through both ``normlab config`` and ``normlab run`` (which must refuse them with the same line); a
few valid cases are run end to end at tiny sizes.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from normlab.cli import main
from normlab.experiments import PRESETS
from normlab.store import load_run

EDGE_NUMBERS = ["0", "-1", "1", "2", "nan", "inf", "-inf", "1e308", "-1e-308", "1e-9", str(10**40),
                "2147483648", "0.5", "three", "", "1,2", "true"]
KEYS = ["lr", "momentum", "weight_decay", "bn_momentum", "batch_size", "steps", "epochs", "eval_every",
        "train_eval_size", "log_every", "checkpoint_every", "probe_every", "activations.tracked_layer",
        "activations.tracked_unit", "gradients.tracked_layer", "gradients.tracked_index", "activations.bins",
        "activations.value_range", "hist_bins", "dropout", "width", "seed", "landscape_points", "landscape_range",
        "divergence.low", "divergence_range", "hessian_top.k", "ics.strategy", "no_such_probe.k", "activations.nope",
        "norm_exclude", "networks", "optimizer", "preset", "no_such_key", "dataset", "model"]
NAMES = {"dataset": ["synthetic", "digits", "no_such_data", ""], "model": ["mlp", "no_such_model", "lenet"],
         "networks": ["none,batch", "batch,batch", "", "no_such_norm"], "optimizer": ["sgd", "rmsprop"]}
# The run is always tiny; a case that stays valid gets cut short by these (the fuzzed values come after).
TINY_BASE = ["dataset=synthetic", "model=mlp", "width=0.25", "steps=2", "eval_every=2", "log_every=1",
             "probes=activations", "probe_every=1", "train_eval_size=16", "report=false"]


def assignment(key):
    values = NAMES.get(key, EDGE_NUMBERS)
    return st.sampled_from(values).map(lambda value: f"{key}={value}")


overrides = st.lists(st.sampled_from(KEYS).flatmap(assignment), min_size=1, max_size=3)
presets = st.sampled_from(sorted(PRESETS) + ["no_such_preset"])
CASES = {"tried": 0, "invalid": 0, "valid": 0}


def _outcome(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return code, captured.err.strip().splitlines()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(preset=presets, assignments=overrides)
def test_invalid_command_lines_are_one_line_and_exit_2(capsys, tmp_path, preset, assignments):
    CASES["tried"] += 1
    argv_tail = [preset, "--set", *TINY_BASE, *assignments]
    code, lines = _outcome(capsys, ["config", *argv_tail])
    if code == 0:
        CASES["valid"] += 1
        return  # valid: the end-to-end runs below cover running such cases
    CASES["invalid"] += 1
    assert code == 2 and len(lines) == 1 and lines[0].startswith("normlab: error: "), lines
    run_code, run_lines = _outcome(capsys, ["run", "--quiet", "--out", str(tmp_path / "runs"), *argv_tail])
    assert (run_code, run_lines) == (code, lines), "normlab run refuses what normlab config refuses, alike"
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(out=st.sampled_from(["file", "file/child", "/proc/self/x", "/dev/null", "ok/nested/dir"]))
def test_out_paths_are_refused_in_one_line_or_used(capsys, tmp_path, out):
    CASES["tried"] += 1
    (tmp_path / "file").write_text("x")
    target = out if out.startswith("/") else str(tmp_path / out)
    code, lines = _outcome(capsys, ["run", "quickstart", "--quiet", "--out", target, "--set", *TINY_BASE])
    if out == "ok/nested/dir":
        CASES["valid"] += 1
        assert code == 0 and load_run(next((tmp_path / out).iterdir())).status == "completed"
    else:
        CASES["invalid"] += 1
        assert code == 2 and len(lines) == 1 and "cannot make run directories" in lines[0], lines


VALID = st.lists(st.sampled_from(["lr=10", "lr=1e-6", "bn_momentum=0", "bn_momentum=1", "momentum=0",
                                  "optimizer=sgd", "optimizer=momentum", "batch_size=1",
                                  "activations.tracked_layer=-3", "activations.tracked_unit=15", "weight_decay=0",
                                  "dropout=0.5", "networks=batch", "networks=none,batch,noisy", "seed=2147483647",
                                  "gradients.tracked_layer=-4", "tracked_unit=15"]),
                 min_size=1, max_size=3, unique=True)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(assignments=VALID)
def test_valid_edge_settings_run_to_the_end(capsys, tmp_path, assignments):
    CASES["tried"] += 1
    CASES["valid"] += 1
    out = tmp_path / f"case{CASES['tried']}"
    code, lines = _outcome(capsys, ["run", "quickstart", "--quiet", "--out", str(out), "--set", *TINY_BASE,
                                    *assignments])
    assert code == 0, lines
    assert load_run(next(out.iterdir())).status in ("completed", "diverged")


def test_print_how_many_cases_were_tried():
    print(f"CLI fuzz: {CASES['tried']} cases tried ({CASES['invalid']} invalid, {CASES['valid']} valid)")
    assert CASES["tried"] >= 60
