"""The summary a run prints: final metrics per network and one line per probe."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np

from normlab.probes.base import headline_value
from normlab.report.findings import findings
from normlab.report.paired import paired_difference, summarize
from normlab.report.runs import declared_headline
from normlab.store import is_run_dir, load_run


def _fmt(value: float, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.2f}%" if percent else f"{value:.4g}"


def metrics_table(run) -> list[str]:
    """Final (and best) train/test loss and accuracy of every network, one row each."""
    diverged = run.info.get("diverged", {}) or {}
    final = run.final_metrics(best=("test_accuracy",))
    header = (
        f"{'network':<14}{'train acc':>11}{'test acc':>11}{'best test':>11}{'train loss':>12}{'test loss':>11}  status"
    )
    lines = [header, "-" * len(header)]
    for name in run.config["networks"]:
        status = f"diverged at step {diverged[name]}" if name in diverged else "ok"
        if name not in final:
            lines.append(f"{name:<14}{'-':>11}{'-':>11}{'-':>11}{'-':>12}{'-':>11}  {status}")
            continue
        last = final[name]
        cell = lambda column, percent=False: _fmt(last.get(column), percent)  # noqa: E731
        lines.append(
            f"{name:<14}{cell('train_eval_accuracy', True):>11}{cell('test_accuracy', True):>11}"
            f"{cell('best_test_accuracy', True):>11}{cell('train_eval_loss'):>12}{cell('test_loss'):>11}  {status}"
        )
    return lines


def probe_lines(run) -> list[str]:
    """One line per probe: how many measurements, the BN mode, and its headline number per network."""
    lines = []
    for name in run.probe_names:
        meta = run.probe_meta(name)
        present = set(run.networks(name))
        networks = [network for network in run.config["networks"] if network in present]
        if not networks:
            continue
        first = run.probe(name, networks[0])
        steps = first["step"]
        per_network_meta = meta.get("networks", {})
        bn_mode = next((m.get("bn_mode") for m in per_network_meta.values() if m.get("bn_mode")), "?")
        headline = declared_headline(name, per_network_meta)
        values = []
        for network in networks:
            layers = per_network_meta.get(network, {}).get("layers")
            value = headline_value(headline, run.probe(name, network), layers) if headline else None
            if value is not None:
                values.append(f"{network} {_fmt(value)}")
        text = f"  {name}: {len(steps)} measurements, steps {int(steps[0])}..{int(steps[-1])}, BN mode {bn_mode}"
        if headline is not None and values:
            text += f"; {headline.label}: " + ", ".join(values)
        lines.append(text)
    return lines


def findings_lines(run, width: int = 110) -> list[str]:
    """The report's findings (``normlab.report.findings``), one wrapped bullet each."""
    lines = []
    for finding in findings(run):
        lines += textwrap.wrap(finding.short or finding.text, width, initial_indent="- ", subsequent_indent="  ")
    return lines


def summary_lines(path: str | Path) -> list[str]:
    run = load_run(path)
    info = run.info
    lines = [f"status: {run.status}, {info.get('steps_done', '?')} steps"]
    lines += findings_lines(run)
    lines += metrics_table(run)
    probes = probe_lines(run)
    if probes:
        lines.append("probes:")
        lines += probes
    return lines


def study_summary_lines(directory: str | Path) -> list[str]:
    """A study directory's variants: each one's final test accuracy (mean ± std, n) and its paired
    difference from the study's baseline in the same context; [] for a plain sweep."""
    from normlab.report.figures.variants import variant_data
    from normlab.report.runs import collect_runs

    runset = collect_runs([directory])
    data = variant_data(runset.sweeps[0]) if runset.sweeps else None
    if data is None:
        return []
    lines = [f"study {data.record.get('name')} (size {data.record.get('size')}): final test accuracy, %, and the "
             f"paired difference from {data.baseline} per seed (95% t-interval)"]
    for context in data.contexts:
        if context:
            lines.append(f"  {context}:")
        base = data.values.get((context, data.baseline))
        for variant in data.variants:
            seeds = data.values.get((context, variant))
            if seeds is None:
                continue
            text = f"    {variant}: {summarize(seeds.values()).text(100, 2)}"
            if variant == data.baseline:
                text += " (baseline)"
            elif base is not None:
                difference = paired_difference(seeds, base)
                text += f"; difference {difference.text(100, 2)}" + (" excludes 0" if difference.excludes_zero else "")
            lines.append(text)
    return lines


def spread_text(values, *, percent: bool) -> str:
    """"97.22% ± 0.81 pp (n=3)" over seeds; one value is "97.22% (n=1)": no spread to state.

    ``values``: the finite values of one grid point and network (fractions for accuracy);
    standard deviation with ddof=1.
    """
    values = np.asarray(values, dtype=float)
    mean = f"{100 * values.mean():.2f}%" if percent else f"{values.mean():.4g}"
    if values.size < 2:
        return f"{mean} (n={values.size})"
    spread = values.std(ddof=1)
    shown = f"{100 * spread:.2f} pp" if percent else f"{spread:.3g}"
    return f"{mean} ± {shown} (n={values.size})"


def sweep_summary_lines(directory: str | Path) -> list[str]:
    """Final test accuracy (or loss, for regression) of every grid point and network over seeds:
    mean ± standard deviation (n), or the single value (n=1), so no comparison hides its spread and
    none invents one (diverged members count as missing: "(n=2 of 3)"); then, per grid point, each
    network's paired difference from the group's baseline (its first network) seed by seed with a
    95% t-interval (``normlab.report.paired``)."""
    from normlab.experiments.sweep import load_sweep

    sweep = load_sweep(directory)
    groups: dict[tuple, dict[str, dict[int, float]]] = {}
    metrics: set[str] = set()
    for member in sweep["members"]:
        member_dir = Path(directory) / member["dir"]
        if not is_run_dir(member_dir):
            continue  # not started yet (an interrupted sweep)
        run = load_run(member_dir)
        evals = run.evaluations()
        key = tuple(sorted(member["settings"].items()))
        for network, rows in evals.groupby("network", sort=False):
            diverged = network in (run.info.get("diverged") or {})
            column = "test_accuracy" if rows["test_accuracy"].notna().any() else "test_loss"
            metrics.add(column)
            value = float("nan") if diverged else float(rows[column].iloc[-1])
            groups.setdefault(key, {}).setdefault(network, {})[member["seed"]] = value
    varied = list(dict.fromkeys(key for variant in sweep.get("variants", []) for key in variant)) + list(sweep["grid"])
    percent = metrics == {"test_accuracy"}
    metric = ("test accuracy" if percent else "test loss (mean over the test split)" if metrics == {"test_loss"}
              else "test accuracy, or test loss for regression networks")
    lines = [f"sweep of {sweep['preset']} over {', '.join(varied) or 'seeds'}; seeds {sweep['seeds']}",
             f"final {metric} at the last evaluation, per network: mean ± std over seeds (n; diverged runs "
             "count as missing)"]
    for key, per_network in groups.items():
        label = ", ".join(f"{k}={v}" for k, v in key) or "(base)"
        cells = []
        for network, by_seed in per_network.items():
            values = list(by_seed.values())
            finite = [v for v in values if math.isfinite(v)]
            if not finite:
                cells.append(f"{network} diverged (n=0 of {len(values)})")
                continue
            text = spread_text(finite, percent=percent)
            if len(finite) < len(values):
                text = text.removesuffix(")") + f" of {len(values)})"
            cells.append(f"{network} {text}")
        lines.append(f"  {label}: " + "; ".join(cells))
        networks = list(per_network)
        if len(networks) > 1 and any(len(by_seed) > 1 for by_seed in per_network.values()):
            baseline = networks[0]
            differences = []
            for network in networks[1:]:
                difference = paired_difference(per_network[network], per_network[baseline])
                mark = " excludes 0" if difference.excludes_zero else ""
                differences.append(f"{network} {difference.text()}{mark}")
            lines.append(f"    paired difference from {baseline} (per seed, 95% t-interval): " + "; ".join(differences))
    return lines
