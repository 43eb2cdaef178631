"""Same config and seed, two processes: bit-identical metrics (a pair, a group of three, a 2-member
sweep). All six processes start at the same moment into one output folder: none shares or clobbers
another's directory."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pandas as pd

from normlab.experiments.sweep import load_sweep
from normlab.store import is_run_dir, load_run
from reliability_helpers import TINY, subprocess_env

# Each process imports normlab, says so, and waits for the word go: the commands begin together.
STARTER = textwrap.dedent(
    """
    import sys
    from normlab.cli import main
    print("ready", flush=True)
    sys.stdin.readline()
    sys.exit(main(sys.argv[1:]))
    """
)
COMMANDS = {
    "pair": ["run", "quickstart", "--quiet", "--set", *TINY, "networks=none,batch"],
    "group": ["run", "quickstart", "--quiet", "--set", *TINY, "networks=none,batch,noisy"],
    "sweep": ["sweep", "quickstart", "--quiet", "--jobs", "1", "--set", *TINY, "--grid", "lr=0.001,0.003"],
}


def _kind(path) -> str:
    if (path / "sweep.json").is_file():
        return "sweep"
    return {2: "pair", 3: "group"}[len(load_run(path).config["networks"])]


def _metrics(path) -> pd.DataFrame:
    return load_run(path).metrics.reset_index(drop=True)


def test_two_processes_give_bit_identical_metrics_and_never_share_a_directory(tmp_path):
    out = tmp_path / "runs"
    processes = [
        subprocess.Popen([sys.executable, "-c", STARTER, *argv, "--out", str(out)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env())
        for argv in COMMANDS.values() for _copy in range(2)
    ]
    for process in processes:  # every one has imported normlab ...
        assert process.stdout.readline().strip() == "ready", process.stderr.read()
    for process in processes:  # ... before any starts
        process.stdin.write("go\n")
        process.stdin.flush()
    for process in processes:
        _, stderr = process.communicate(timeout=900)
        assert process.returncode == 0, stderr
    directories = sorted(out.iterdir())
    assert len(directories) == 6, directories
    by_kind: dict[str, list] = {}
    for path in directories:
        by_kind.setdefault(_kind(path), []).append(path)
    assert {kind: len(paths) for kind, paths in by_kind.items()} == {"pair": 2, "group": 2, "sweep": 2}
    for kind in ("pair", "group"):
        first, second = by_kind[kind]
        assert load_run(first).status == load_run(second).status == "completed"
        pd.testing.assert_frame_equal(_metrics(first), _metrics(second), check_exact=True)
    first, second = by_kind["sweep"]
    members = [member["dir"] for member in load_sweep(first)["members"]]
    assert len(members) == 2 and members == [member["dir"] for member in load_sweep(second)["members"]]
    for member in members:
        assert is_run_dir(first / member) and load_run(first / member).status == "completed"
        pd.testing.assert_frame_equal(_metrics(first / member), _metrics(second / member), check_exact=True)
