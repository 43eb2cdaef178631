"""Sweeps: one preset over a grid of settings and seeds (B18's learning-rate sweeps, seed spreads).

A sweep directory holds ``sweep.json`` (the preset, the grid, the seeds, the member runs) and one
ordinary run directory per grid point and seed, so every member can be loaded, resumed and
reported on its own, and ``normlab report SWEEP_DIR`` overlays them. Members run one after the
other in this process, or as Ray tasks on a cluster (``executor="ray"``, the ``ray`` extra).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from pathlib import Path

from normlab.errors import NormlabError
from normlab.experiments.config import Config, apply_overrides, parse_value, to_dict
from normlab.experiments.runner import RunResult, run_experiment
from normlab.store import check_output_root, new_run_dir
from normlab.store.files import read_json, write_json_atomically

SWEEP_FILE = "sweep.json"


@dataclass(frozen=True)
class SweepPoint:
    """One member of a sweep: its settings, seed and directory name."""

    settings: tuple[tuple[str, str], ...]
    seed: int

    @property
    def name(self) -> str:
        parts = [f"{key}={value}" for key, value in self.settings] + [f"seed={self.seed}"]
        return "-".join(part.replace("/", "_").replace(",", "+") for part in parts)


def parse_grid(assignments: list[str]) -> dict[str, list[str]]:
    """``["lr=0.01,0.1", "networks=none+batch"]`` -> {key: [value texts]}, each value type-checked.

    Values are separated by commas; for tuple-valued settings write the tuple's items joined with
    ``+`` (``networks=none+batch,none+noisy``).
    """
    grid = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or not text:
            raise NormlabError(f"--grid expects key=value1,value2,...; got {assignment!r}")
        values = [value.replace("+", ",") for value in text.split(",") if value]
        for value in values:
            parse_value(key.strip(), value)  # fails early with the config's one-line errors
        grid[key.strip()] = values
    return grid


def sweep_points(grid: dict[str, list[str]], seeds: list[int]) -> list[SweepPoint]:
    keys = list(grid)
    combos = itertools.product(*(grid[key] for key in keys)) if keys else [()]
    return [SweepPoint(tuple(zip(keys, combo)), seed) for combo in combos for seed in seeds]


def member_config(base: Config, point: SweepPoint) -> Config:
    config = apply_overrides(base, [f"{key}={value}" for key, value in point.settings])
    return replace(config, seed=point.seed, data_seed=point.seed)


def run_sweep(
    base: Config,
    grid: dict[str, list[str]],
    seeds: list[int],
    *,
    out: str | Path = "runs",
    quiet: bool = False,
    executor: str = "local",
) -> tuple[Path, list[RunResult]]:
    """Run every grid point for every seed; returns the sweep directory and the members' results."""
    if not seeds:
        raise NormlabError("a sweep needs at least one seed")
    points = sweep_points(grid, seeds)
    configs = [member_config(base, point) for point in points]  # validate all before running any
    check_output_root(out)
    directory = new_run_dir(Path(out), f"sweep-{base.preset}")
    _write_sweep_file(directory, base, grid, seeds, points, status="running")
    if executor == "local":
        try:
            results = [
                run_experiment(config, run_dir=directory / point.name, quiet=quiet, report=False)
                for point, config in zip(points, configs)
            ]
        except KeyboardInterrupt:  # the member says where it stopped; the sweep records that it did
            _write_sweep_file(directory, base, grid, seeds, points, status="interrupted")
            raise
    elif executor == "ray":
        results = _run_on_ray(configs, [directory / point.name for point in points])
    else:
        raise NormlabError(f"unknown executor {executor!r}; allowed: local, ray")
    _write_sweep_file(directory, base, grid, seeds, points, status="completed")
    return directory, results


def _write_sweep_file(directory: Path, base: Config, grid, seeds, points, *, status: str) -> None:
    content = {
        "preset": base.preset,
        "base_config": to_dict(base),
        "grid": grid,
        "seeds": seeds,
        "members": [{"dir": point.name, "settings": dict(point.settings), "seed": point.seed} for point in points],
        "status": status,
    }
    write_json_atomically(directory / SWEEP_FILE, content)


def _run_on_ray(configs: list[Config], directories: list[Path]) -> list[RunResult]:
    """One Ray task per member; each writes its own run directory (a shared filesystem is assumed)."""
    try:
        import ray
    except ImportError:
        raise NormlabError("executor 'ray' needs the ray extra: pip install 'normlab[ray]'") from None
    if not ray.is_initialized():
        ray.init()

    @ray.remote
    def member(config: Config, directory: str) -> RunResult:
        return run_experiment(config, run_dir=directory, quiet=True, report=False)

    return ray.get([member.remote(config, str(directory)) for config, directory in zip(configs, directories)])


def load_sweep(path: str | Path) -> dict:
    """The ``sweep.json`` of a sweep directory."""
    file = Path(path) / SWEEP_FILE
    if not file.is_file():
        raise NormlabError(f"{path} is not a sweep directory (no {SWEEP_FILE})")
    return read_json(file)
