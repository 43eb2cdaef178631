"""normlab: train networks with and without normalization side by side and measure what the
batch-norm papers measure.

The public API, re-exported lazily (``import normlab`` stays cheap until a name is used)::

    import normlab
    config = normlab.apply_overrides(normlab.get_preset("quickstart").config, ["epochs=3"])
    result = normlab.run_experiment(config, out="runs")
    run = normlab.load_run(result.path)          # .config, .metrics (DataFrame), .probe(...)
    run.final_metrics()                          # last and best evaluation per network
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "normlab.experiments",
    "PRESETS": "normlab.experiments",
    "apply_overrides": "normlab.experiments",
    "get_preset": "normlab.experiments",
    "preset_config": "normlab.experiments",
    "run_experiment": "normlab.experiments",
    "resume_experiment": "normlab.experiments",
    "load_run": "normlab.store",
    "load_dataset": "normlab.data",
    "BatchIterator": "normlab.data",
    "build_model": "normlab.models",
    "describe_model": "normlab.models",
    "make_norm": "normlab.norms",
    "make_probe": "normlab.probes",
    "write_report": "normlab.report",
    "NormlabError": "normlab.errors",
    "Monitor": "normlab.experiments.own_loop",
    "measure": "normlab.experiments.own_loop",
    "split_network": "normlab.experiments.own_loop",
    "restore_model": "normlab.experiments.own_loop",
    "load_sweep": "normlab.experiments.tables",
    "show": "normlab.report.notebook",
    "headline_table": "normlab.experiments.tables",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'normlab' has no attribute {name!r}")
