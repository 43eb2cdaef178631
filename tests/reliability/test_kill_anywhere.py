"""SIGKILL at 20 seeded moments (training, evaluation, checkpoint writes, appends, the report, the
animation): after each kill ``load_run`` reads every array, after the first kill in each phase
``normlab report`` works, and resuming ends with metrics and probe arrays identical to an
uninterrupted run.

The kills are chained (kill, resume, kill the resume, ...). To keep JAX's start-up out of every
one of them, the processes are forked from one "zygote" that imported normlab but never started
a JAX backend (so forking it is safe); each fork runs ``normlab.cli.main`` and is killed by the
fault point ``kill:N:PHASE`` (``normlab.errors.fault_point``).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap

from normlab.cli import main
from normlab.experiments import run_experiment
from normlab.store import is_run_dir, load_run
from reliability_helpers import TINY, assert_same_run, subprocess_env, tiny_config

KILLS = 20
ZYGOTE = textwrap.dedent(
    """
    import json, os, sys
    import matplotlib
    matplotlib.use("Agg")
    import normlab.cli, normlab.experiments.runner, normlab.report  # imported once, before any fork
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.environ["NORMLAB_FAULT"] = request["fault"]
            os._exit(normlab.cli.main(request["argv"]))
        _, status = os.waitpid(pid, 0)
        print(json.dumps(os.waitstatus_to_exitcode(status)), flush=True)
    """
)
# Fault points per phase in one tiny run (24 steps, 4 evaluations, 2 checkpoints, a report).
PHASES = {"training": 24, "evaluation": 8, "checkpoint": 2, "write": 14, "append": 8, "report": 9,
          "animation": 8}


class Zygote:
    def __init__(self):
        self.process = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=subprocess_env())

    def run(self, argv, fault, log):
        self.process.stdin.write(json.dumps({"argv": [str(a) for a in argv], "fault": fault, "log": str(log)}) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


def test_sigkill_at_twenty_moments_resumes_to_the_uninterrupted_result(tmp_path):
    reference = run_experiment(tiny_config(), run_dir=tmp_path / "reference", quiet=True).path
    rng = random.Random(11)
    kills, chains, zygote = [], 0, Zygote()
    reported_phases: set[str] = set()
    try:
        while len(kills) < KILLS:
            chains += 1
            out = tmp_path / f"chain{chains}"
            argv = ["run", "quickstart", "--quiet", "--out", out, "--set", *TINY, "report=true"]
            while True:
                phase = rng.choice(sorted(PHASES))
                log = tmp_path / f"process{len(kills)}-{chains}.log"
                code = zygote.run(argv, f"kill:{rng.randint(1, PHASES[phase])}:{phase}", log)
                runs = [p for p in out.iterdir() if is_run_dir(p)] if out.exists() else []
                if code == 0:
                    break
                assert code == -9, log.read_text()
                kills.append(log.read_text().split("normlab-kill: ")[-1].strip())
                if not runs:  # killed before the run directory was complete: start again elsewhere
                    out = tmp_path / f"chain{chains}-again{len(kills)}"
                    argv = ["run", "quickstart", "--quiet", "--out", out, "--set", *TINY, "report=true"]
                    continue
                run = load_run(runs[0])
                assert run.metrics is not None  # readable; empty if killed before the first flush
                for probe in run.probe_names:
                    for network in run.networks(probe):
                        run.probe(probe, network)
                if kills[-1] not in reported_phases:  # a report is seconds: once per phase killed in
                    reported_phases.add(kills[-1])
                    assert main(["report", str(runs[0]), "--out", str(tmp_path / f"report-{len(kills)}")]) == 0
                finished = run.status == "completed"  # killed in the report: rebuilding it is what is left
                argv = ["report", runs[0]] if finished else ["run", "--resume", runs[0], "--quiet"]
            assert_same_run(reference, runs[0])
            assert (runs[0] / "report" / "report.html").is_file()
    finally:
        zygote.close()
    print(f"kill anywhere: {len(kills)} SIGKILLs in {chains} chains, phases {sorted(set(kills))}")
    assert {"checkpoint", "report", "animation"} <= set(kills)
