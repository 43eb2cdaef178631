"""Mutation testing of normlab's core modules with mutmut, one module at a time.

    python tools/mutation.py                 # every module of [tool.normlab.mutation], in order
    python tools/mutation.py norms store     # just these
    python tools/mutation.py --report store  # print the counts of a finished (or stopped) run again
    python tools/mutation.py --sample 60 --seed 16 norms   # a seeded random sample of the mutants
    python tools/mutation.py --retest store  # after adding tests: re-test the ones not killed last time

Each module runs in its own scratch copy of the tree (build/mutation/<module>), whose
pyproject.toml sets mutmut's ``only_mutate`` and test selection to that module's pair from
``[tool.normlab.mutation]``: mutmut first runs the selected tests once to learn which test covers
which function, then runs only the covering tests (with ``-x``) against each mutant, so a module
costs its own tests rather than the whole suite per mutant. mutmut resumes an interrupted run
from the results already stored in the scratch copy. Printed per module: mutants killed,
survived, timed out, with no covering test, and any other outcome.

With ``--sample N --seed S`` only N mutants drawn at random (seeded, so the same N every time)
from all of the module's mutants are tested, and the score is printed as an estimate with its
95% Wilson interval. The names drawn are kept in build/mutation/<module>/sample.json, so
``--report`` counts the same sample again. Mutants judged equivalent by hand (listed under
``equivalent`` in the module's table) leave the denominator; a timeout counts as killed (the
mutant made the tests hang) and a mutant no test covers counts as survived.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = ROOT / "build" / "mutation"


def module_table() -> dict[str, dict]:
    """``{module: {"mutate": [globs], "tests": [paths]}}`` from pyproject.toml."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["normlab"]["mutation"]


def scratch_pyproject(mutate: list[str], tests: list[str]) -> str:
    """pyproject.toml for a scratch copy: the project's pytest settings, mutmut narrowed to one module."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    mutmut = {**tool["mutmut"], "only_mutate": mutate, "pytest_add_cli_args_test_selection": tests}
    pytest_options = tool["pytest"]["ini_options"]
    # JSON strings and arrays of strings are valid TOML values
    lines = ["[tool.pytest.ini_options]"] + [f"{key} = {json.dumps(value)}" for key, value in pytest_options.items()]
    lines += ["", "[tool.mutmut]"] + [f"{key} = {json.dumps(value)}" for key, value in mutmut.items()]
    return "\n".join(lines) + "\n"


def prepare(module: str, spec: dict) -> Path:
    """A scratch copy of src/ and tests/ for ``module`` (refreshed; mutmut's results kept)."""
    directory = SCRATCH / module
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("src", "tests"):
        shutil.rmtree(directory / name, ignore_errors=True)
        shutil.copytree(ROOT / name, directory / name, ignore=shutil.ignore_patterns("__pycache__"))
    (directory / "pyproject.toml").write_text(scratch_pyproject(spec["mutate"], spec["tests"]))
    return directory


def mutmut_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mutmut", *args]


def generate_mutants(directory: Path) -> None:
    """Write mutmut's mutants (and their .meta files) into ``directory/mutants`` without testing any.

    The same first step ``mutmut run`` takes; done alone so the names exist before a sample is drawn.
    """
    script = ("from mutmut.__main__ import *\n"
              "set_mutant_under_test('mutant_generation'); makedirs(Path('mutants'), exist_ok=True)\n"
              "copy_src_dir(); copy_also_copy_files(); setup_source_paths(); create_mutants(1)\n")
    subprocess.run([sys.executable, "-c", script], cwd=directory, check=True, stdout=subprocess.DEVNULL)


def outcomes(directory: Path) -> dict[str, str]:
    """``{mutant name: outcome}`` as ``mutmut results --all true`` lists them."""
    listing = subprocess.run(mutmut_command("results", "--all", "true"), cwd=directory, capture_output=True,
                             text=True, check=True).stdout
    pairs = (line.strip().rsplit(": ", 1) for line in listing.splitlines() if ": " in line)
    return {name: outcome.strip() for name, outcome in pairs}


def draw_sample(names: list[str], size: int, seed: int) -> list[str]:
    """``size`` of ``names`` drawn without replacement, the same for the same names and seed (all if fewer)."""
    ordered = sorted(names)
    return sorted(random.Random(seed).sample(ordered, min(size, len(ordered))))


def wilson_interval(successes: int, trials: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% for the default z).

    centre = (p + z²/2n) / (1 + z²/n), half-width = z sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n),
    with p = successes/n (Wilson 1927). Unlike p ± z sqrt(p(1-p)/n) it stays inside [0, 1]
    and is not empty at p = 0 or 1.
    """
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def summary_line(module: str, outcome_by_name: dict[str, str], equivalent: set[str], total: int) -> str:
    """Counts of one module's mutants (the tested ones: all, or the sample) and the score with its interval."""
    outcome = collections.Counter(outcome_by_name.values())
    judged_equivalent = sum(1 for name in outcome_by_name if name in equivalent)
    counted = {name: result for name, result in outcome_by_name.items() if name not in equivalent}
    killed = sum(1 for result in counted.values() if result in ("killed", "timeout"))
    live = sum(1 for result in counted.values() if result in ("survived", "no tests"))
    decided = killed + live
    low, high = wilson_interval(killed, decided)
    score = (f"{100 * killed / decided:.1f}% of {decided} non-equivalent killed "
             f"(95% Wilson interval {100 * low:.0f}-{100 * high:.0f}%)") if decided else "nothing tested"
    sampled = len(outcome_by_name) < total
    scope = f"{len(outcome_by_name)} of {total} mutants (sample)" if sampled else f"{total} mutants"
    return f"{module}: {scope}: {dict(sorted(outcome.items()))}, {judged_equivalent} equivalent; {score}"


def main(argv=None) -> int:
    table = module_table()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"modules to mutate (default: all of {', '.join(table)})")
    parser.add_argument("--report", action="store_true", help="only print the counts of earlier runs")
    parser.add_argument("--max-children", type=int, default=1, help="mutants tested in parallel (default 1)")
    parser.add_argument("--sample", type=int, metavar="N", help="test only N mutants drawn at random")
    parser.add_argument("--seed", type=int, default=16, help="seed of --sample's draw (default 16)")
    parser.add_argument("--retest", action="store_true",
                        help="re-test only the mutants (of the sample, if one was drawn) not killed last time, "
                             "except those judged equivalent")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.modules) - set(table))
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; valid: {', '.join(table)}")
    if args.sample is not None and args.sample < 1:
        parser.error(f"--sample must be a positive number of mutants, not {args.sample}")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # mutmut sets the path
    for module in args.modules or list(table):
        spec = table[module]
        directory = SCRATCH / module
        sample_file = directory / "sample.json"
        if args.retest:
            previous = outcomes(directory)
            if sample_file.exists():
                sampled = set(json.loads(sample_file.read_text())["mutants"])
                previous = {name: result for name, result in previous.items() if name in sampled}
            equivalent = set(spec.get("equivalent", []))
            again = sorted(name for name, result in previous.items()
                           if result not in ("killed", "timeout") and name not in equivalent)
            prepare(module, spec)  # the current tests
            if again:
                subprocess.run(mutmut_command("run", "--max-children", str(args.max_children), *again),
                               cwd=directory, env=env)
        elif not args.report:
            prepare(module, spec)
            if args.sample is None:
                sample_file.unlink(missing_ok=True)
                subprocess.run(mutmut_command("run", "--max-children", str(args.max_children)), cwd=directory,
                               env=env)
            else:
                generate_mutants(directory)
                sample = draw_sample(list(outcomes(directory)), args.sample, args.seed)
                sample_file.write_text(json.dumps({"seed": args.seed, "mutants": sample}, indent=1))
                subprocess.run(mutmut_command("run", "--max-children", str(args.max_children), *sample),
                               cwd=directory, env=env)
        outcome_by_name = outcomes(directory)
        tested = outcome_by_name
        if sample_file.exists():
            sampled = set(json.loads(sample_file.read_text())["mutants"])
            tested = {name: result for name, result in outcome_by_name.items() if name in sampled}
        print(summary_line(module, tested, set(spec.get("equivalent", [])), len(outcome_by_name)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
