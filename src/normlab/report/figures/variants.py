"""A study's own section: its variants compared with its baseline, seed by seed.

A study directory is a sweep whose ``sweep.json`` holds a ``study`` record (written by
``normlab run STUDY``): the baseline (a network and, for studies whose variants are settings, the
baseline's settings), the keys that make a variant (``variant_keys``), the main axis (``x_key``)
and the figures the study asks for. Here every (member, network) becomes a *variant* (the
network plus the member's variant settings) in a *context* (the member's other grid settings,
e.g. the training length), so that each variant is compared with the baseline of its context on
the same seeds.

Figures and tables: final test accuracy per variant (mean ± std over seeds, n), the paired
differences from the baseline (``report.paired``), and on request the accuracy over training
per variant with bands, the activation magnitude after each norm position (d2l ex. 3), the BN
parameters pooled over seeds (d2l ex. 5) and the cost of a training step per network (d2l ex. 7).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import matplotlib
import numpy as np
import pandas as pd

from normlab.report.figures.bn_parameters import FACTORS, norm_layers
from normlab.report.figures.bn_parameters import PROBE as BN_PROBE
from normlab.report.figures.study import epoch_scale
from normlab.report.figures.sweep import final_metric
from normlab.report.paired import METHOD, paired_difference, summarize
from normlab.report.runs import (
    RunSet,
    Sweep,
    eval_rows,
    probe_array,
    probe_data,
    probe_layers,
    study_record,
    union_in_order,
)
from normlab.report.sections import Plot, Section, Table
from normlab.report.style import grid_shape, hide_unused, new_figure, shared_legend


def _text(key: str, value: str) -> str:
    return f"{key}={value if value != '' else 'none'}"


@dataclass
class VariantData:
    """``values[(context, variant)][seed]``: final test accuracy (NaN: diverged or not evaluated);
    ``runs[(context, variant)]``: its (run, network) pairs; ``baseline``: the baseline's label."""

    record: dict
    sweep: Sweep
    contexts: list[str] = field(default_factory=list)
    variants: list[str] = field(default_factory=list)
    baseline: str = ""
    values: dict = field(default_factory=lambda: defaultdict(dict))
    runs: dict = field(default_factory=lambda: defaultdict(list))

    @property
    def seeds(self) -> int:
        return max((len(v) for v in self.values.values()), default=0)


def variant_label(network: str, settings: dict) -> str:
    return network + (f" [{', '.join(_text(k, v) for k, v in settings.items())}]" if settings else "")


def variant_data(sweep: Sweep) -> VariantData | None:
    """The sweep's members as variants in contexts (see the module docstring); None if not a study."""
    found = study_record(sweep)
    if found is None:
        return None
    record, members = found
    variant_keys = set(record.get("variant_keys", []))
    by_dir = {report_run.run.path.name: report_run for report_run in sweep.runs}
    data = VariantData(record, sweep)
    baseline = record.get("baseline", {})
    data.baseline = variant_label(baseline.get("network", ""), {k: v for k, v in baseline.get("settings", {}).items()})
    for member in members:  # in the study's order: variants, then grid values, then seeds
        report_run = by_dir.get(str(member.get("dir", "")))
        if report_run is None:
            continue  # not run yet (an interrupted study)
        settings = member.get("settings", {})
        variant_settings = {k: v for k, v in settings.items() if k in variant_keys}
        context = ", ".join(_text(k, v) for k, v in settings.items() if k not in variant_keys)
        if context not in data.contexts:
            data.contexts.append(context)
        for network in report_run.networks:
            label = variant_label(network, variant_settings)
            if label not in data.variants:
                data.variants.append(label)
            value = final_metric(report_run, network, "test_accuracy")
            data.values[(context, label)][member.get("seed")] = math.nan if value is None else value
            data.runs[(context, label)].append((report_run, network))
    if data.baseline in data.variants:
        data.variants.remove(data.baseline)
        data.variants.insert(0, data.baseline)
    return data if data.variants else None


def tick_label(variant: str) -> str:
    """A variant's label on several lines: the network, then each setting."""
    return variant.replace(" [", "\n").replace(", ", "\n").rstrip("]")


def _n_text(counts) -> str:
    counts = list(counts)
    if not counts:
        return "n = 0"
    return f"n = {min(counts)}" if min(counts) == max(counts) else f"n = {min(counts)}-{max(counts)}"


def plot_final_accuracy(data: VariantData) -> Plot:
    """Final test accuracy of every variant, one marker per context, mean ± std over seeds, n."""
    figure, axes = new_figure(1, 1, height=3.6, width=max(6.0, 1.1 * len(data.variants) + 2))
    axis = axes[0, 0]
    colors = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, max(len(data.contexts), 1)))
    width = 0.6 / max(len(data.contexts), 1)
    counts = []
    for index, (context, color) in enumerate(zip(data.contexts, colors)):
        for position, variant in enumerate(data.variants):
            seeds = data.values.get((context, variant))
            if not seeds:
                continue
            summary = summarize(seeds.values())
            counts.append(summary.n)
            where = position + (index - (len(data.contexts) - 1) / 2) * width
            if summary.n:
                axis.errorbar([where], [summary.mean], yerr=[summary.std if summary.n > 1 else 0.0], color=color,
                              marker="o", capsize=3, label=context or "all members")
                axis.annotate(f"n={summary.n}" + (f" (+{summary.missing} diverged)" if summary.missing else ""),
                              (where, summary.mean), textcoords="offset points", xytext=(4, 4), fontsize=6.5)
            else:
                axis.plot([where], [0.0], marker="x", color=color, linestyle="none",
                          transform=axis.get_xaxis_transform(), clip_on=False)
    axis.set_xticks(range(len(data.variants)), [tick_label(v) + ("\n(baseline)" if v == data.baseline else "")
                                                for v in data.variants], fontsize=7)
    axis.set_ylabel("final test accuracy")
    shared_legend(figure)
    caption = (
        f"Final test accuracy of every variant of the study {data.record.get('name')} (the last evaluation of each "
        f"run): the mean over seeds ({_n_text(counts)} per point, written beside it; diverged runs are counted "
        "apart and a cross on the lower edge marks a variant that diverged in every seed), error bars one standard "
        "deviation" + (f", one color per context ({'; '.join(data.contexts)})" if any(data.contexts) else "")
        + f". The baseline is {data.baseline}; the table below gives each variant's paired difference from it."
    )
    return Plot(f"study_{data.record.get('name')}_final", "Final test accuracy per variant", figure, caption)


def paired_study_table(data: VariantData) -> Table | None:
    """Each variant against the baseline of its context, seed by seed (``report.paired``)."""
    rows = []
    for context in data.contexts:
        base = data.values.get((context, data.baseline))
        for variant in data.variants:
            seeds = data.values.get((context, variant))
            if seeds is None:
                continue
            summary = summarize(seeds.values())
            if variant == data.baseline:
                rows.append([context or "-", variant + " (baseline)", summary.text(100, 2), "", "", ""])
                continue
            if base is None:
                rows.append([context or "-", variant, summary.text(100, 2), "-", "no baseline in this context", "-"])
                continue
            difference = paired_difference(seeds, base)
            rows.append([
                context or "-", variant, summary.text(100, 2), summarize(base.values()).text(100, 2),
                difference.text(100, 2) + (f", {difference.unpaired} unpaired" if difference.unpaired else "")
                if difference.n else f"- ({difference.unpaired} unpaired, e.g. diverged)",
                "yes" if difference.excludes_zero else ("no" if difference.has_interval else "n < 2"),
            ])
    if not rows:
        return None
    caption = (
        f"Every variant of the study against its baseline {data.baseline} in the same context, seed by seed "
        f"({METHOD}). Accuracy and differences in percent / percentage points; n is the number of seeds "
        "(pairs). 'excludes 0': the interval lies on one side of 0; with n = 1 no interval is given."
    )
    return Table("Study summary: paired differences from the baseline",
                 ["context", "variant", "final test accuracy, %", "baseline", "difference [95% CI] (n)", "excludes 0"],
                 rows, caption)


def plot_accuracy_over_training(data: VariantData) -> Plot | None:
    """One panel per context: each variant's test accuracy over training, mean and band over seeds."""
    panels = [c for c in data.contexts if any(data.runs.get((c, v)) for v in data.variants)]
    if not panels:
        return None
    rows, columns = grid_shape(len(panels), max_columns=3)
    figure, axes = new_figure(rows, columns, height=3.2, sharey=True)
    colors = matplotlib.colormaps["tab10"](np.arange(len(data.variants)) % 10)
    counts, points, unit = [], [], "step"
    for axis, context in zip(axes.flat, panels):
        for color, variant in zip(colors, data.variants):
            frames, diverged = [], 0
            for report_run, network in data.runs.get((context, variant), []):
                rows_ = eval_rows(report_run, network)
                if rows_ is None or not rows_["test_accuracy"].notna().any():
                    continue
                scale, unit = epoch_scale(report_run)
                frames.append(pd.Series(rows_["test_accuracy"].to_numpy(float), index=rows_["step"].to_numpy() / scale))
                diverged += network in (report_run.run.info.get("diverged") or {})
            if not frames:
                continue
            table = pd.concat(frames, axis=1)
            mean, spread = table.mean(axis=1), table.std(axis=1, ddof=1)
            counts.append(len(frames))
            points.append(len(mean))
            label = f"{variant} (n={len(frames)}" + (f", {diverged} diverged)" if diverged else ")")
            axis.plot(mean.index, mean.to_numpy(), color=color, marker=".", linewidth=1.4, label=label)
            if len(frames) > 1:
                axis.fill_between(mean.index, (mean - spread).to_numpy(), (mean + spread).to_numpy(), color=color,
                                  alpha=0.15, linewidth=0)
        axis.set_title(context or "all members")
        axis.set_xlabel(unit)
        axis.set_ylabel("test accuracy")
    hide_unused(axes, len(panels))
    shared_legend(figure)
    caption = (
        f"Test accuracy over training ({unit}s) of every variant, the mean over seeds ({_n_text(counts)} per line, "
        "in the legend) with a band of one standard deviation" + (", one panel per context" if len(panels) > 1 else "")
        + ". Variants of one seed share initial weights and batches; the paired table says which gaps hold up."
    )
    return Plot(f"study_{data.record.get('name')}_training", "Test accuracy over training per variant", figure,
                caption, points=tuple(points), unit="evaluations")


def plot_activation_magnitude(data: VariantData) -> Plot | None:
    """d2l ex. 3: mean of squares of the activations after each norm position (the input of each
    nonlinearity), at the last measurement, per variant and context, mean ± std over seeds."""
    values: dict = defaultdict(list)  # (layer, context, variant) -> [sq_mean per seed]
    layers: list[list[str]] = []
    for (context, variant), pairs in data.runs.items():
        for report_run, network in pairs:
            arrays = probe_data(report_run, "activations", network)
            if arrays is None:
                continue
            names = probe_layers(report_run, "activations", network, arrays)
            layers.append(names)
            for layer in names:
                magnitude = probe_array(arrays, "activations", "{layer}.sq_mean", layer)
                if magnitude is not None:
                    values[(layer, context, variant)].append(float(magnitude[-1]))
    if not values:
        return None
    every_layer = union_in_order(layers)
    rows, columns = grid_shape(len(every_layer), max_columns=4)
    figure, axes = new_figure(rows, columns, height=3.0)
    colors = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, max(len(data.contexts), 1)))
    width = 0.8 / max(len(data.contexts), 1)
    counts = []
    for axis, layer in zip(axes.flat, every_layer):
        for index, (context, color) in enumerate(zip(data.contexts, colors)):
            for position, variant in enumerate(data.variants):
                samples = values.get((layer, context, variant))
                if not samples:
                    continue
                counts.append(len(samples))
                where = position + (index - (len(data.contexts) - 1) / 2) * width
                axis.bar([where], [np.mean(samples)], width=width * 0.9, color=color,
                         yerr=[np.std(samples, ddof=1) if len(samples) > 1 else 0.0], capsize=2,
                         label=context or "all members")
        axis.set_title(f"after the norm of {layer}")
        axis.set_xticks(range(len(data.variants)), [tick_label(v) for v in data.variants], fontsize=6.5)
        axis.set_ylabel("mean of squares")
    hide_unused(axes, len(every_layer))
    shared_legend(figure)
    caption = (
        "The activation magnitude of d2l exercise 3: the mean of the squared activations entering each "
        "nonlinearity (after the norm, where the layer has one) on a training batch at the last probe "
        f"measurement, per variant (which BN layer was removed) and context; bars are the mean over seeds "
        f"({_n_text(counts)}), error bars one standard deviation. The d2l write-up finds the magnitude falls in "
        "the layer whose BN is removed and other layers compensate."
    )
    return Plot(f"study_{data.record.get('name')}_magnitude", "Activation magnitude after each norm position",
                figure, caption)


def plot_bn_parameters_pooled(data: VariantData) -> Plot | None:
    """d2l ex. 5: gamma and beta of every BN layer at the end, pooled over seeds, per variant."""
    pooled: dict = defaultdict(list)  # (variant, layer, factor) -> arrays
    seeds: dict = defaultdict(set)
    layers: list[list[str]] = []
    for (context, variant), pairs in data.runs.items():
        for report_run, network in pairs:
            arrays = probe_data(report_run, BN_PROBE, network)
            if arrays is None:
                continue
            names = norm_layers(report_run, network, arrays)
            layers.append(names)
            seeds[variant].add(report_run.run.config.get("seed"))
            for layer in names:
                for factor, _default in FACTORS:
                    values = probe_array(arrays, BN_PROBE, f"{{layer}}.{factor}", layer)
                    if values is not None:
                        pooled[(variant, layer, factor)].append(values[-1])
    if not pooled:
        return None
    every_layer = union_in_order(layers)
    figure, axes = new_figure(2, len(every_layer), height=2.6, squeeze=False)
    colors = matplotlib.colormaps["tab10"](np.arange(len(data.variants)) % 10)
    for column, layer in enumerate(every_layer):
        for row, (factor, default) in enumerate((("gamma", 1.0), ("beta", 0.0))):
            axis = axes[row, column]
            present = [(v, np.concatenate(pooled[(v, layer, factor)])) for v in data.variants
                       if (v, layer, factor) in pooled]
            everything = np.concatenate([values for _v, values in present] + [np.asarray([default])])
            low, high = float(everything.min()), float(everything.max())
            edges = np.linspace(low, high if high > low else low + 1.0, 25)
            for variant, values in present:
                color = colors[data.variants.index(variant)]
                axis.hist(values, bins=edges, histtype="step", linewidth=1.4, color=color,
                          label=f"{variant} (n={len(seeds[variant])} seeds)")
            axis.axvline(default, color="black", linestyle=":", linewidth=1.0, label="default (gamma 1, beta 0)")
            axis.set_title(f"{layer}: {factor}")
    shared_legend(figure)
    caption = (
        "The learned gamma (top) and beta (bottom) of every unit of each BN layer at the end of training, pooled "
        "over the seeds (n in the legend), against their defaults 1 and 0 (dotted). d2l exercise 5: how far the "
        "learned affine factors depart from the values no_affine fixes."
    )
    return Plot(f"study_{data.record.get('name')}_bn_parameters", "Learned gamma and beta, pooled over seeds",
                figure, caption)


def cost_table(data: VariantData) -> Table | None:
    """d2l ex. 7: each network's plain training step, timed before training (run.json step_seconds)."""
    seconds: dict = defaultdict(list)
    for pairs in data.runs.values():
        for report_run, network in pairs:
            measured = (report_run.run.info.get("step_seconds") or {}).get(network)
            if measured is not None:
                seconds[network].append(float(measured))
    if not seconds:
        return None
    baseline = data.record.get("baseline", {}).get("network")
    reference = np.median(seconds[baseline]) if baseline in seconds else None
    rows = []
    for network, samples in seconds.items():
        summary = summarize(samples)
        ratio = f"{np.median(samples) / reference:.2f}x" if reference else "-"
        rows.append([network, summary.text(1000, 2), ratio])
    caption = (
        "The cost of one plain training step (no probe) of each network, timed before training on the first "
        "batch (one compiling call, then the networks take turns; the median of step_cost_repeats calls per run), "
        f"in milliseconds: mean ± std over the runs (n). The ratio is the median against {baseline}'s. Measured on "
        "the machine that ran the study, while it ran: read the ratios, not the absolute times."
    )
    return Table("Cost per training step", ["network", "step time, ms", f"vs {baseline}"], rows, caption)


def study_section(runset: RunSet) -> Section | None:
    """The study's own figures and tables (None when no sweep of the report is a study)."""
    studies = [data for data in (variant_data(sweep) for sweep in runset.sweeps) if data is not None]
    if not studies:
        return None
    first = studies[0].record
    section = Section("study", f"Study: {first.get('name')}", intro=(
        f"{first.get('description')} (size {first.get('size')}, base preset {first.get('base')}; "
        f"reproduces {first.get('reproduces')}). Baseline: {studies[0].baseline}; {studies[0].seeds} seeds."))
    for data in studies:
        x_key = data.record.get("x_key")
        if not (x_key and x_key not in data.record.get("variant_keys", [])):  # lr studies: the sweep curves
            section.add(plot_final_accuracy(data))
        section.add(paired_study_table(data))
        figures = data.record.get("figures", [])
        if "accuracy_over_training" in figures:
            section.add(plot_accuracy_over_training(data))
        if "activation_magnitude" in figures:
            section.add(plot_activation_magnitude(data))
        if "bn_parameters" in figures:
            section.add(plot_bn_parameters_pooled(data))
        if "cost" in figures:
            section.add(cost_table(data))
    return section

