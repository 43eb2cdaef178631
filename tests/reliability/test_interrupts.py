"""Ctrl-C through a terminal at every phase: stops promptly, truthful status, exit 130, the next command.

Each test runs ``normlab`` on a pseudo-terminal and types Ctrl-C (the terminal sends SIGINT to the
whole foreground process group, ffmpeg included, as a user's terminal does). The fault point
``hold:PHASE`` (``normlab.errors.fault_point``) pauses the run inside that phase until the signal
arrives, so every phase is hit deterministically, without guessing its timing.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import time
import warnings

import pytest

from normlab.experiments import resume_experiment, run_experiment
from normlab.store import load_run
from normlab.store.files import read_json
from reliability_helpers import NORMLAB, TINY, assert_same_run, subprocess_env, tiny_config

STOP_SECONDS = 10  # generous for a loaded CI machine; the measured latencies are printed


def run_in_terminal(argv, phase, *, keys=b"\x03", send=None, timeout=240, holds=1):
    """Run ``normlab argv`` on a pty; once it holds in ``phase`` (``holds`` processes of it: the
    workers of a sweep), type ``keys`` (or call ``send(pid)``).

    Returns (exit code, terminal output, seconds from the signal to the exit)."""
    with warnings.catch_warnings():  # the child only execs: JAX's threads are not needed there
        warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
        pid, fd = pty.fork()
    if pid == 0:  # the child: a new session whose controlling terminal is the pty
        os.execve(str(NORMLAB), [str(NORMLAB), *argv], subprocess_env(NORMLAB_FAULT=f"hold:{phase}"))
    output, sent_at, deadline = b"", None, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            if sent_at is None and output.count(f"normlab-hold: {phase}".encode()) >= holds:
                os.write(fd, keys) if send is None else send(pid)
                sent_at = time.monotonic()
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"normlab did not stop in {timeout} s: {output.decode(errors='replace')}")
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert sent_at is not None, f"the run never reached phase {phase}: {output.decode(errors='replace')}"
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace"), time.monotonic() - sent_at


def last_line(output: str) -> str:
    """The last line printed, without the terminal's echo of Ctrl-C."""
    return output.strip().splitlines()[-1].replace("^C", "")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run_experiment(tiny_config(), run_dir=tmp_path_factory.mktemp("reference") / "run", quiet=True).path


@pytest.mark.parametrize("phase", ["training", "evaluation", "checkpoint"])
def test_ctrl_c_during_training_stops_with_a_checkpoint_and_resumes_to_the_same_result(tmp_path, reference,
                                                                                       phase):
    code, output, seconds = run_in_terminal(["run", "--quiet", "--out", str(tmp_path), "--set", *TINY], phase)
    print(f"{phase}: stopped {seconds:.2f} s after Ctrl-C")
    assert code == 130 and seconds < STOP_SECONDS and "Traceback" not in output, output
    run_dir = next(tmp_path.iterdir())
    assert last_line(output) == f"normlab: interrupted at step {load_run(run_dir).info['steps_done']}; " \
                                f"continue with `normlab run --resume {run_dir}`"
    run = load_run(run_dir)
    assert run.status == "interrupted" and run.info["steps_done"] in run.checkpoint_steps
    assert resume_experiment(run_dir, quiet=True).status == "completed"
    assert_same_run(reference, run_dir)


def test_sigterm_is_honoured_like_ctrl_c(tmp_path):
    code, output, _ = run_in_terminal(["run", "--quiet", "--out", str(tmp_path), "--set", *TINY], "training",
                                      send=lambda pid: os.kill(pid, signal.SIGTERM))
    assert code == 130 and "--resume" in last_line(output) and "Traceback" not in output, output
    assert load_run(next(tmp_path.iterdir())).status == "interrupted"


@pytest.mark.parametrize("phase", ["report", "animation"])
def test_ctrl_c_during_the_report_says_training_finished_and_how_to_rebuild_it(tmp_path, phase):
    code, output, seconds = run_in_terminal(
        ["run", "--quiet", "--out", str(tmp_path), "--set", *TINY, "report=true"], phase)
    print(f"{phase}: stopped {seconds:.2f} s after Ctrl-C")
    assert code == 130 and seconds < STOP_SECONDS and "Traceback" not in output and "Warning" not in output, output
    run_dir = next(tmp_path.iterdir())
    assert last_line(output) == ("normlab: interrupted while writing the report; training is complete; "
                                 f"rebuild the report with `normlab report {run_dir}`")
    run = load_run(run_dir)
    assert run.status == "completed" and run.info["report"] == "interrupted"
    assert not (run_dir / "report" / "report.html").exists()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_in_a_sweep_stops_its_members_and_marks_the_sweep(tmp_path, jobs):
    """In this process (jobs 1) or in two worker processes, which then both hold in training: the
    sweep passes the signal on, every running member stops with a checkpoint, sweep.json says so."""
    code, output, seconds = run_in_terminal(
        ["sweep", "--quiet", "--jobs", jobs, "--out", str(tmp_path), "--set", *TINY, "--grid", "lr=0.001,0.002"],
        "training", holds=int(jobs))
    print(f"jobs {jobs}: stopped {seconds:.2f} s after Ctrl-C")
    assert code == 130 and seconds < STOP_SECONDS and "Traceback" not in output, output
    sweep_dir = next(tmp_path.iterdir())
    sweep = read_json(sweep_dir / "sweep.json")
    assert sweep["status"] == "interrupted"
    running = ["lr=0.001-seed=0"] + (["lr=0.002-seed=0"] if jobs == "2" else [])
    for member in sweep["members"]:
        expected = "interrupted" if member["dir"] in running else "pending"
        assert member["status"] == expected, sweep["members"]
        if expected == "interrupted":
            assert load_run(sweep_dir / member["dir"]).status == "interrupted"
    assert last_line(output).endswith(f"continue the sweep with `normlab sweep --resume {sweep_dir}`")


def test_a_second_ctrl_c_exits_at_once_and_leaves_a_readable_store(tmp_path, reference):
    code, output, seconds = run_in_terminal(["run", "--quiet", "--out", str(tmp_path), "--set", *TINY],
                                            "checkpoint", keys=b"\x03\x03")
    assert code == 130 and seconds < STOP_SECONDS and "Traceback" not in output, output
    run_dir = next(tmp_path.iterdir())
    run = load_run(run_dir)
    assert run.status == "interrupted" and run.info["steps_done"] in run.checkpoint_steps + [0]
    resume_experiment(run_dir, quiet=True)
    assert_same_run(reference, run_dir)
