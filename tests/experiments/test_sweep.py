"""Sweeps: grid parsing, member runs, the summary's n and spread."""

from __future__ import annotations

from dataclasses import replace

import pytest

from normlab.errors import NormlabError
from normlab.experiments import apply_overrides, default_config
from normlab.experiments.config import probe_option
from normlab.experiments.summary import spread_text, sweep_summary_lines
from normlab.experiments.sweep import SWEEP_FILE, load_sweep, member_config, parse_grid, run_sweep, sweep_points
from normlab.store import load_run
from normlab.store.files import write_json_atomically


def test_grid_values_are_type_checked_and_tuples_use_plus():
    grid = parse_grid(["lr=0.1,1", "networks=none+batch,none+noisy"])
    assert grid == {"lr": ["0.1", "1"], "networks": ["none,batch", "none,noisy"]}
    assert len(sweep_points(grid, [0, 1, 2])) == 12
    with pytest.raises(NormlabError, match="setting 'lr' expects float"):
        parse_grid(["lr=fast"])
    with pytest.raises(NormlabError, match="unknown setting 'rate'"):
        parse_grid(["rate=1"])


def test_a_grid_over_a_renamed_setting_names_its_members_in_todays_spelling():
    grid = parse_grid(["hessian_k=2,3", "divergence_range=0.1+10"])
    assert grid == {"hessian_top.k": ["2", "3"], "divergence_range": ["0.1,10"]}
    base = apply_overrides(replace(default_config(), preset="grid"), ["probes=hessian_top,divergence"])
    point = sweep_points(grid, [0])[1]
    assert point.settings == (("hessian_top.k", "3"), ("divergence_range", "0.1,10"))
    config = member_config(base, point)
    assert probe_option(config, "hessian_top.k") == 3
    assert (probe_option(config, "divergence.low"), probe_option(config, "divergence.high")) == (0.1, 10)
    with pytest.raises(NormlabError, match="setting 'hessian_top.k' expects int"):
        parse_grid(["hessian_k=many"])


def test_a_sweep_runs_every_member_and_reports_n_and_spread(tmp_path):
    base = apply_overrides(replace(default_config(), preset="tiny"),
                           ["dataset=synthetic", "width=0.25", "steps=6", "eval_every=3", "probe_every=3",
                            "report=false", "probes=distance"])
    directory, results = run_sweep(base, parse_grid(["lr=0.01"]), [0, 1], out=tmp_path, quiet=True, jobs=1)
    sweep = load_sweep(directory)
    assert [m["dir"] for m in sweep["members"]] == ["lr=0.01-seed=0", "lr=0.01-seed=1"]
    assert sweep["status"] == "completed" and len(results) == 2
    member = load_run(directory / "lr=0.01-seed=1")
    assert member.config["lr"] == 0.01 and member.config["seed"] == 1 and member.status == "completed"
    lines = sweep_summary_lines(directory)
    # by hand: each seed's last test accuracy per network; mean and the n-1 standard deviation
    finals = {}
    for seed in (0, 1):
        evals = load_run(directory / f"lr=0.01-seed={seed}").metrics.dropna(subset=["test_accuracy"])
        for network in ("none", "batch"):
            finals.setdefault(network, []).append(float(evals[evals.network == network].test_accuracy.iloc[-1]))
    cells = [f"{network} {100 * (a + b) / 2:.2f}% ± {100 * abs(a - b) / 2 ** 0.5:.2f} pp (n=2)"
             for network, (a, b) in finals.items()]
    assert "  lr=0.01: " + "; ".join(cells) in lines
    # the paired difference batch - none per seed, 95% t-interval with t(0.975, 1) = 12.706
    d = [b - a for a, b in zip(finals["none"], finals["batch"])]
    mean, half = (d[0] + d[1]) / 2, 12.706 * abs(d[0] - d[1]) / 2 ** 0.5 / 2 ** 0.5
    paired = next(line for line in lines if "paired difference from none" in line)
    shown = paired.split("batch ")[1]
    assert shown.startswith(f"{mean:+.4f} [") and shown.split(" (n=")[1].startswith("2)")
    low, high = (float(v) for v in shown.split("[")[1].split("]")[0].split(", "))
    assert low == pytest.approx(mean - half, abs=2e-4) and high == pytest.approx(mean + half, abs=2e-4)

    assert lines[1].startswith("final test accuracy at the last evaluation, per network: mean ± std over seeds")

    # One seed: its value and n=1, no spread (a sweep directory listing only the seed-0 member).
    one = tmp_path / "one"
    one.mkdir()
    (one / "lr=0.01-seed=0").symlink_to(directory / "lr=0.01-seed=0")
    write_json_atomically(one / SWEEP_FILE, {**sweep, "seeds": [0], "members": sweep["members"][:1]})
    single = sweep_summary_lines(one)
    expected = "; ".join(f"{network} {100 * values[0]:.2f}% (n=1)" for network, values in finals.items())
    assert single[-1] == f"  lr=0.01: {expected}" and "nan" not in " ".join(single) and "±" not in single[-1]


def test_spread_text_states_n_and_a_spread_only_from_two_values():
    assert spread_text([0.9722], percent=True) == "97.22% (n=1)"
    assert spread_text([0.90, 0.94, 0.92], percent=True) == "92.00% ± 2.00 pp (n=3)"  # sd of 90, 94, 92 = 2
    assert spread_text([22.6], percent=False) == "22.6 (n=1)"
    assert spread_text([1.0, 3.0], percent=False) == "2 ± 1.41 (n=2)"  # sqrt(2)


@pytest.mark.parametrize("argv, message", [
    (["--resume", "{dir}", "--grid", "lr=1"], "--resume completes a sweep with its stored settings"),
    (["--resume", "{dir}"], "is not a sweep directory (no sweep.json)"),
    (["quickstart", "--jobs", "0"], "--jobs must be >= 1; got 0"),
    (["quickstart", "--threads-per-member", "0"], "--threads-per-member must be >= 1; got 0"),
    (["quickstart", "--address", "auto"], "--address names a Ray cluster: use it with --ray"),
])
def test_sweep_command_errors_are_one_line_before_any_work(tmp_path, capsys, argv, message):
    from normlab.cli import main

    out = tmp_path / "runs"
    code = main(["sweep", *[a.format(dir=tmp_path) for a in argv], "--out", str(out)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], lines
    assert not out.exists()
