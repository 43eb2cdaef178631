"""The runs a report shows: finding them, naming them, and reading their data without failing.

A report is given directories. Each is either a run directory or a *sweep*: a directory whose
subdirectories (at any depth) are run directories. Every figure overlays "the runs" -- the runs
given directly plus the runs of each sweep -- and a sweep additionally gets its own curves of
final accuracy against the swept setting.

Everything here reads through ``normlab.store.load_run`` only; a missing or unreadable piece of
data comes back as ``None`` (and the figure that needed it is left out), never as an error.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from normlab.errors import NormlabError
from normlab.probes import Headline, Output, make_probe, probe_names
from normlab.store import Run, format_value, is_run_dir, load_run

# Figures overlay at most this many runs; beyond it they become unreadable (a sweep can have
# dozens), and the sweep curves summarize all of them anyway.
MAX_OVERLAID = 4

# Settings that only repeat an experiment (or only say where it came from); a sweep over them is
# a set of replicates, not a curve.
REPLICATE_KEYS = ("seed", "data_seed")
IGNORED_KEYS = ("preset", "report")


@dataclass
class ReportRun:
    """One run directory as the report shows it."""

    run: Run
    label: str  # the run's name in legends and tables
    index: int  # position among all runs of the report (picks the line style)
    sweep: str | None = None  # label of the sweep it belongs to, if any

    @property
    def networks(self) -> list[str]:
        """Network names in config order (the first is the baseline)."""
        return list(self.run.config.get("networks") or [])


@dataclass
class Sweep:
    """A directory of runs that differ in some settings."""

    label: str
    path: Path
    runs: list[ReportRun] = field(default_factory=list)


@dataclass
class RunSet:
    """All runs of a report, and the sweeps some of them belong to."""

    runs: list[ReportRun]
    sweeps: list[Sweep]

    @property
    def several(self) -> bool:
        """Whether legends must name the run as well as the network."""
        return len(self.runs) > 1

    def for_figures(self, limit: int = MAX_OVERLAID) -> tuple[RunSet, str]:
        """The runs the per-run figures overlay (at most ``limit``) and a note if some are left out.

        Runs given directly come first; from sweeps, one replicate (the first seed) of evenly
        spread settings fills the remaining places.
        """
        if len(self.runs) <= limit:
            return self, ""
        direct = [r for r in self.runs if r.sweep is None][:limit]
        from_sweeps = [r for r in self.runs if r.sweep is not None and _is_first_replicate(r, self.runs)]
        room = limit - len(direct)
        if room > 0 and from_sweeps:
            positions = np.unique(
                np.round(np.linspace(0, len(from_sweeps) - 1, min(room, len(from_sweeps)))).astype(int)
            )
            direct += [from_sweeps[i] for i in positions]
        chosen = sorted(direct, key=lambda r: r.index)
        note = (f"The figures of this section show {len(chosen)} of the {len(self.runs)} runs "
                f"({', '.join(r.label for r in chosen)}); give run directories directly to compare others.")
        return RunSet(chosen, self.sweeps), note


SWEEP_FILE = "sweep.json"  # a sweep's own file (experiments.sweep writes it)


def study_record(sweep: Sweep) -> tuple[dict, list[dict]] | None:
    """``(study record, members)`` of a study directory's sweep.json (``normlab run STUDY``);
    None for a plain sweep or a directory of runs without one."""
    try:
        content = json.loads((sweep.path / SWEEP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    record = content.get("study")
    return (record, content.get("members", [])) if isinstance(record, dict) else None


def collect_runs(paths) -> RunSet:
    """Load every run under ``paths`` (run directories or sweeps), labelled uniquely.

    Raises ``NormlabError`` for a path that is neither a run directory nor holds any.
    """
    paths = [Path(p) for p in paths]
    runs: list[ReportRun] = []
    sweeps: list[Sweep] = []
    for path in paths:
        if is_run_dir(path):
            runs.append(ReportRun(load_run(path), path.resolve().name, len(runs)))
            continue
        found = find_run_dirs(path)
        if not found:
            raise NormlabError(f"{path} is neither a run directory nor a directory of runs (a sweep)")
        sweep = Sweep(label=path.resolve().name, path=path)
        loaded = [load_run(p) for p in found]
        for run, name in zip(loaded, sweep_run_labels(loaded)):
            # The sweep's name is only needed to tell members apart from other given directories.
            label = name if len(paths) == 1 else f"{sweep.label}/{name}"
            report_run = ReportRun(run, label, len(runs), sweep=sweep.label)
            runs.append(report_run)
            sweep.runs.append(report_run)
        sweeps.append(sweep)
    _make_labels_unique(runs)
    return RunSet(runs, sweeps)


def _is_first_replicate(report_run: ReportRun, runs: list[ReportRun]) -> bool:
    """Whether ``report_run`` has its sweep's first value of every replicate key (seed, data_seed)."""
    first = next(r for r in runs if r.sweep == report_run.sweep)
    return all(report_run.run.config.get(key) == first.run.config.get(key) for key in REPLICATE_KEYS)


def find_run_dirs(path: Path) -> list[Path]:
    """Run directories below ``path`` (not descending into a run), sorted by path."""
    if not path.is_dir():
        return []
    found = []
    for child in sorted(p for p in path.iterdir() if p.is_dir()):
        if is_run_dir(child):
            found.append(child)
        else:
            found.extend(find_run_dirs(child))
    return found


def sweep_run_labels(runs: list[Run]) -> list[str]:
    """Short names for the runs of a sweep: the settings in which they differ (else dir names)."""
    varied = varied_settings([run.config for run in runs])
    if all(run.config.get("data_seed") == run.config.get("seed") for run in runs) and "seed" in varied:
        varied.remove("data_seed")  # sweeps set both seeds to the member's seed: name it once
    if not varied:
        return [run.path.name for run in runs]
    return [", ".join(f"{key}={format_value(run.config.get(key))}" for key in varied) for run in runs]


def varied_settings(configs: list[dict]) -> list[str]:
    """Config keys whose values differ between ``configs``, in config order."""
    keys: list[str] = []
    for config in configs:
        keys.extend(key for key in config if key not in keys and key not in IGNORED_KEYS)
    return [key for key in keys if len({hashable(config.get(key)) for config in configs}) > 1]


def hashable(value):
    """``value`` with lists turned into tuples, so it can be grouped on."""
    return tuple(hashable(v) for v in value) if isinstance(value, list) else value


def _make_labels_unique(runs: list[ReportRun]) -> None:
    """Two directories with the same name get their parent's name prepended, then a number."""
    labels = [r.label for r in runs]
    for report_run, label in zip(runs, labels):
        if labels.count(label) > 1:
            report_run.label = f"{report_run.run.path.resolve().parent.name}/{label}"
    seen: dict[str, int] = {}
    for report_run in runs:
        count = seen.get(report_run.label, 0)
        seen[report_run.label] = count + 1
        if count:
            report_run.label = f"{report_run.label} ({count + 1})"


# ------------------------------------------------------------------------------ reading data


def run_probe_data(run: Run, probe: str, network: str) -> dict[str, np.ndarray] | None:
    """Every stored measurement of ``probe`` for ``network`` of ``run``, or None if there is none."""
    try:
        if probe not in run.probe_names or network not in run.networks(probe):
            return None
        arrays = run.probe(probe, network)
    except (OSError, ValueError, KeyError, NormlabError):
        return None  # an unreadable probe is reported as missing, never stops the report
    steps = arrays.get("step")
    return arrays if steps is not None and len(steps) else None


def run_probe_meta(run: Run, probe: str, network: str) -> dict:
    """The metadata ``probe`` wrote for ``network`` of ``run`` (empty dict if none)."""
    try:
        meta = run.probe_meta(probe) if probe in run.probe_names else {}
    except (OSError, ValueError, NormlabError):
        return {}
    return (meta.get("networks") or {}).get(network, {}) or {}


def probe_data(report_run: ReportRun, probe: str, network: str) -> dict[str, np.ndarray] | None:
    """:func:`run_probe_data` of a report's run."""
    return run_probe_data(report_run.run, probe, network)


def probe_meta(report_run: ReportRun, probe: str, network: str) -> dict:
    """:func:`run_probe_meta` of a report's run."""
    return run_probe_meta(report_run.run, probe, network)


def declared_headline(probe: str, per_network_meta: dict) -> Headline | None:
    """The headline a run's ``meta.json`` declares for ``probe`` (``{network: meta}``; either stored
    form, ``Headline.from_json``); for runs stored before declarations, today's declaration."""
    stored = next((m["headline"] for m in per_network_meta.values() if m.get("headline")), None)
    if stored is not None:
        return Headline.from_json(stored)
    return getattr(make_probe(probe), "headline", None) if probe in probe_names() else None


@cache
def declared_output(probe: str, key: str) -> Output:
    """The output ``key`` (a declared pattern such as ``"{layer}.hist"``) of probe ``probe``, as the
    probe declares it in ``outputs`` (with its default options). A figure that asks for an output
    the probe does not declare fails here, at once, instead of silently drawing nothing."""
    outputs = getattr(make_probe(probe), "outputs", ())
    for output in outputs:
        if output.key == key:
            return output
    raise KeyError(f"probe {probe!r} declares no output {key!r}; it declares {[o.key for o in outputs]}")


def declared_dimensions(probe: str, meta: dict) -> dict[str, tuple]:
    """``{stored array name: declared shape}`` (dimension names kept) for one network's probe meta:
    the declaration the run stored (``meta["outputs"]``), else the probe's own today (runs stored
    before probes declared their outputs); ``{layer}`` patterns expanded over the meta's layers,
    each also under its legacy name (:func:`_legacy_key`)."""
    stored = meta.get("outputs")
    outputs = ([Output(o["key"], tuple(o["shape"]), o.get("meaning", "")) for o in stored] if stored
               else getattr(make_probe(probe), "outputs", ()))
    names = {}
    for output in outputs:
        for pattern in dict.fromkeys((output.key, _legacy_key(output.key))):
            keys = [pattern.format(layer=layer) for layer in meta.get("layers") or ()] if "{layer}" in pattern \
                else [pattern]
            names.update(dict.fromkeys(keys, tuple(output.shape)))
    return names


def _legacy_key(key: str) -> str:
    """The name runs stored before dotted keys gave a declared key: ``<layer>__<key>``."""
    return key.replace("{layer}.", "{layer}__") if "{layer}" in key else key.replace(".", "__", 1)


def probe_array(arrays: dict, probe: str, key: str, layer: str | None = None) -> np.ndarray | None:
    """The stored array of ``probe``'s declared output ``key`` (``{layer}`` filled in with
    ``layer``), stacked over steps: shape ``(T, *declared shape)``. None when ``arrays`` has no
    such array or its number of axes is not 1 + the declared shape's (data a figure cannot use).

    Runs stored before dotted keys wrote ``<layer>__<key>``; both are read."""
    output = declared_output(probe, key)
    for stored in dict.fromkeys(pattern.format(layer=layer) for pattern in (output.key, _legacy_key(output.key))):
        if stored in arrays:
            values = np.asarray(arrays[stored])
            return values if values.ndim == 1 + len(output.shape) else None
    return None


def probe_layers(report_run: ReportRun, probe: str, network: str, arrays: dict) -> list[str]:
    """Layer names of a probe: from its meta, else from the array names, in stored order."""
    layers = probe_meta(report_run, probe, network).get("layers")
    if layers:
        return list(layers)
    names: list[str] = []
    for key in arrays:
        for separator in (".", "__"):
            if separator in key:
                layer = key.split(separator)[0]
                if layer not in names and layer != "tracked":
                    names.append(layer)
                break
    return names


def network_series(runs: list[ReportRun], probe: str):
    """``(report_run, network, arrays)`` for every run and network with data for ``probe``."""
    for report_run in runs:
        for network in report_run.networks:
            arrays = probe_data(report_run, probe, network)
            if arrays is not None:
                yield report_run, network, arrays


def union_in_order(lists) -> list[str]:
    """All items of ``lists``, each once, in first-seen order (layers of overlaid runs)."""
    result: list[str] = []
    for items in lists:
        result.extend(item for item in items if item not in result)
    return result


def eval_rows(report_run: ReportRun, network: str):
    """The evaluation rows (``kind == "eval"``) of ``network``; None if there are no metrics."""
    metrics = safe_metrics(report_run)
    if metrics is None or "test_loss" not in metrics:
        return None
    return metrics[(metrics["network"] == network) & (metrics["kind"] == "eval")]


def train_rows(report_run: ReportRun, network: str):
    """The per-step training rows (``kind == "train"``) of ``network``."""
    metrics = safe_metrics(report_run)
    if metrics is None or "loss" not in metrics:
        return None
    return metrics[(metrics["network"] == network) & (metrics["kind"] == "train")]


def safe_metrics(report_run: ReportRun):
    """The run's metrics DataFrame, or None if ``metrics.csv`` cannot be read."""
    try:
        return report_run.run.metrics
    except (OSError, ValueError, NormlabError):
        return None


def diverged_steps(report_run: ReportRun) -> dict[str, int]:
    """``{network: step}`` of the networks that diverged (from run.json)."""
    diverged = report_run.run.info.get("diverged") or {}
    return {str(k): int(v) for k, v in diverged.items() if v is not None}


# How the training loss of metrics.csv reduces over a batch's examples, in words for labels.
REDUCTION_WORDS = {"mean": "mean over the batch", "sum": "sum over the batch's examples"}


def training_loss_reduction(run: Run) -> str:
    """"mean" or "sum": how ``run``'s training (batch) loss reduces over examples; evaluation losses
    are always means over the evaluated examples. From run.json's ``loss_reduction``; runs written
    before it: "sum" for regression (no accuracy anywhere: the DLN's summed S18 loss), else "mean"."""
    recorded = run.info.get("loss_reduction")
    if isinstance(recorded, dict) and recorded.get("train") in REDUCTION_WORDS:
        return str(recorded["train"])
    try:
        metrics = run.metrics
    except (OSError, ValueError, NormlabError):
        return "mean"
    accuracy = metrics["accuracy"] if "accuracy" in metrics else None
    regression = accuracy is not None and len(metrics) > 0 and not accuracy.notna().any()
    return "sum" if regression else "mean"


def training_loss_words(runs) -> str:
    """The reduction of the training loss of ``runs`` (Runs or ReportRuns) in words; mixed: both, named."""
    reductions = sorted({training_loss_reduction(getattr(r, "run", r)) for r in runs})
    return " or ".join(REDUCTION_WORDS[reduction] for reduction in reductions) or REDUCTION_WORDS["mean"]


def finite(values) -> np.ndarray:
    """``values`` as a float array with infinities turned into NaN (matplotlib gaps)."""
    array = np.asarray(values, dtype=float)
    return np.where(np.isfinite(array), array, np.nan)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
