"""Mutation testing of normlab's core modules with mutmut, one module at a time.

    python tools/mutation.py                 # every module of [tool.normlab.mutation], in order
    python tools/mutation.py norms store     # just these
    python tools/mutation.py --report store  # print the counts of a finished (or stopped) run again

Each module runs in its own scratch copy of the tree (build/mutation/<module>), whose
pyproject.toml sets mutmut's ``only_mutate`` and test selection to that module's pair from
``[tool.normlab.mutation]``: mutmut first runs the selected tests once to learn which test covers
which function, then runs only the covering tests (with ``-x``) against each mutant, so a module
costs its own tests rather than the whole suite per mutant. mutmut resumes an interrupted run
from the results already stored in the scratch copy. Printed per module: mutants killed,
survived, timed out, with no covering test, and any other outcome.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
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


def counts(directory: Path) -> collections.Counter:
    """Mutants per outcome, as ``mutmut results --all true`` lists them."""
    listing = subprocess.run(mutmut_command("results", "--all", "true"), cwd=directory, capture_output=True,
                             text=True, check=True).stdout
    return collections.Counter(line.rsplit(": ", 1)[1].strip() for line in listing.splitlines() if ": " in line)


def summary_line(module: str, outcome: collections.Counter) -> str:
    killed, survived = outcome["killed"], outcome["survived"]
    tested = killed + survived
    others = {k: v for k, v in outcome.items() if k not in ("killed", "survived")}
    score = f"{100 * killed / tested:.1f}% killed of {tested} tested" if tested else "nothing tested"
    return f"{module}: {killed} killed, {survived} survived ({score}); other outcomes {others or 'none'}"


def main(argv=None) -> int:
    table = module_table()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"modules to mutate (default: all of {', '.join(table)})")
    parser.add_argument("--report", action="store_true", help="only print the counts of earlier runs")
    parser.add_argument("--max-children", type=int, default=1, help="mutants tested in parallel (default 1)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.modules) - set(table))
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; valid: {', '.join(table)}")
    for module in args.modules or list(table):
        directory = SCRATCH / module if args.report else prepare(module, table[module])
        if not args.report:
            env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # mutmut sets the path
            subprocess.run(mutmut_command("run", "--max-children", str(args.max_children)), cwd=directory, env=env)
        print(summary_line(module, counts(directory)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
