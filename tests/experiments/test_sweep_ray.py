"""Sweeps on a real Ray instance: a 4-member sweep through a local Ray (2 CPUs, no dashboard, no
usage stats, loopback only) gives members identical to the same sweep run locally -- also when
every Ray worker is killed half-way through its member (Ray retries the task, which resumes
the member from its checkpoint).

Skipped with its reason when ray is not installed (the ``ray`` extra is part of ``test``).
Costs one Ray start (~10-20 s) and 4 + 4 tiny members.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from normlab.experiments import apply_overrides, get_preset
from normlab.experiments.sweep import load_sweep, parse_grid, run_sweep
from normlab.store import load_run
from normlab.train.compile_cache import ENV_VARIABLE, configure_compile_cache

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'normlab[ray]')")

SOURCE = Path(__file__).resolve().parents[2] / "src"
# 24 steps, a checkpoint every 8: the fault point kills each worker at its second checkpoint.
TINY = ["dataset=synthetic", "model=mlp", "width=0.25", "batch_size=32", "steps=24", "eval_every=8",
        "log_every=4", "probe_every=4", "probes=activations,distance", "report=false", "train_eval_size=64"]
GRID = ["lr=0.001,0.002"]
SEEDS = [0, 1]


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A private Ray instance; its workers inherit this environment (normlab's source on the path,
    and a fault plan that SIGKILLs each worker process at its second checkpoint)."""
    keys = ("PYTHONPATH", "RAY_USAGE_STATS_ENABLED", "NORMLAB_FAULT", ENV_VARIABLE)
    saved = {key: os.environ.get(key) for key in keys}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SOURCE), saved["PYTHONPATH"]]))
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # One compilation cache for the workers and the local sweep: only the first compiles each step.
    os.environ[ENV_VARIABLE] = str(tmp_path_factory.mktemp("compile-cache"))
    os.environ["NORMLAB_FAULT"] = "kill:2:checkpoint"
    try:
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                 _temp_dir=str(tmp_path_factory.mktemp("ray")), log_to_driver=False)
        os.environ.pop("NORMLAB_FAULT")  # the Ray processes have it; this process does not
        yield ray
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        configure_compile_cache(None)  # the next run configures its own again


def test_a_sweep_on_ray_gives_the_members_of_the_local_sweep(local_ray, tmp_path):
    base = apply_overrides(get_preset("quickstart").config, TINY)
    ray_dir, ray_results = run_sweep(base, parse_grid(GRID), SEEDS, out=tmp_path / "ray", quiet=True,
                                     executor="ray")
    local_dir, _ = run_sweep(base, parse_grid(GRID), SEEDS, out=tmp_path / "local", quiet=True, jobs=1)
    assert [r.status for r in ray_results] == ["completed"] * 4
    sweep = load_sweep(ray_dir)
    assert sweep["status"] == "completed" and sweep["executor"] == "ray"
    members = [member["dir"] for member in sweep["members"]]
    assert members == [member["dir"] for member in load_sweep(local_dir)["members"]] and len(members) == 4
    resumed = 0
    for member in members:
        on_ray, here = load_run(ray_dir / member), load_run(local_dir / member)
        assert on_ray.status == here.status == "completed"
        assert on_ray.metrics.equals(here.metrics), member
        assert on_ray.probe_names == here.probe_names
        for probe in here.probe_names:
            for network in here.networks(probe):
                left, right = on_ray.probe(probe, network), here.probe(probe, network)
                assert all((left[key] == right[key]).all() for key in right), (member, probe, network)
        resumed += "resumed_from" in on_ray.info
    assert resumed >= 1, "no Ray worker was killed: the retry-and-resume path went untested"
