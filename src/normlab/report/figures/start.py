"""The data and the start (seed notebook Part 1): examples, input distributions, initial weights.

Read from the run's ``start/`` views (written by the runner at creation; see
``normlab.experiments.start``). The initial weights are drawn per parameter: a parameter every
network has with the same SHA-256 fingerprint is drawn once and said to be identical (the
pairing made visible); a norm's own scale and bias, which only the normalized networks have, are
listed apart. Only the first run of a report is shown: the start is a property of one run.
"""

from __future__ import annotations

import numpy as np

from normlab.errors import NormlabError
from normlab.report.runs import ReportRun, RunSet
from normlab.report.sections import Plot, Section, Table, missing
from normlab.report.style import grid_shape, hide_unused, network_color, network_label, new_figure
from normlab.store.layout import START_DATA_FILE, START_META_FILE, START_WEIGHTS_FILE

KEY = "start"
TITLE = "The data and the start"


def start_views(report_run: ReportRun) -> tuple[dict, dict, dict] | None:
    """(start.json, data arrays, weight arrays) of a run, or None if the run has no start views."""
    run = report_run.run
    try:
        return run.read_json(START_META_FILE), run.read_arrays(START_DATA_FILE), run.read_arrays(START_WEIGHTS_FILE)
    except (OSError, ValueError, KeyError, NormlabError):
        return None


def plot_examples(meta: dict, data: dict) -> Plot | None:
    images, labels = data.get("examples.images"), data.get("examples.labels")
    if images is None or labels is None or not len(images):
        return None
    figure, axes = new_figure(1, len(images), height=1.4)
    for axis, image, label in zip(axes[0], images, labels):
        axis.imshow(
            image[..., 0] if image.shape[-1] == 1 else _to_unit(image), cmap="gray_r" if image.shape[-1] == 1 else None
        )
        axis.set_title(f"label {int(label)}", fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    data_meta = meta.get("data", {})
    kind = "raw pixels" if data_meta.get("raw_available") else "normalized inputs (no raw form stored)"
    caption = (f"{len(images)} training examples of {data_meta.get('dataset', 'the dataset')} drawn with the "
               f"data seed (indices {', '.join(map(str, data_meta.get('example_indices', [])))}), shown as {kind}, "
               "with their labels, as the seed notebook Part 1 shows them before training: what the networks "
               "are asked to classify.")
    return Plot("start_examples", "Training examples", figure, caption)


def _to_unit(image: np.ndarray) -> np.ndarray:
    low, high = float(image.min()), float(image.max())
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def plot_inputs(meta: dict, data: dict) -> Plot | None:
    panels = [(which, data[f"inputs.{which}.counts"], data[f"inputs.{which}.edges"])
              for which in ("raw", "normalized") if f"inputs.{which}.counts" in data]
    if not panels:
        return None
    figure, axes = new_figure(1, len(panels), height=2.8)
    data_meta = meta.get("data", {})
    for axis, (which, counts, edges) in zip(axes[0], panels):
        axis.stairs(counts, edges, fill=True, alpha=0.8, color="#4c72b0")
        axis.set_yscale("log")
        title = "raw input values" if which == "raw" else f"normalized inputs ({data_meta.get('normalization', '?')})"
        axis.set_title(title)
        axis.set_xlabel("feature value")
        axis.set_ylabel("count (log)")
    caption = (f"Every input feature of the first {data_meta.get('histogram_examples', '?'):,} training examples, "
               "before (left) and after (right) the input normalization the networks see; log counts, so the "
               "rare bright pixels stay visible next to the background peak. The seed notebook Part 1 shows the "
               "same pair: a bimodal raw distribution (background and strokes) shifted and scaled by the "
               "normalization, its shape unchanged.")
    if not data_meta.get("raw_available"):
        caption += " The dataset has no other (raw) form, so only the inputs as used are shown."
    return Plot("start_inputs", "Input distributions", figure, caption)


def shared_parameters(networks: dict) -> tuple[list[str], list[str]]:
    """(names identical in every network, names that differ or exist in only some), non-norm first."""
    names = list(dict.fromkeys(name for params in networks.values() for name in params))
    identical: list[str] = []
    other: list[str] = []
    for name in names:
        holders = [params[name] for params in networks.values() if name in params]
        same = len(holders) == len(networks) and len({h["sha256"] for h in holders}) == 1
        (identical if same and not holders[0]["norm"] else other).append(name)
    return identical, other


def plot_initial_weights(meta: dict, weights: dict) -> Plot | None:
    networks = meta.get("networks") or {}
    if not networks:
        return None
    identical, other = shared_parameters(networks)
    # Kernels are drawn; biases (zeros at the start in every built-in model) are summarized in words.
    drawn = [n for n in identical + other if n.endswith(".kernel")]
    biases = [n for n in identical + other if not n.endswith(".kernel")
              and not any(p.get(n, {}).get("norm") for p in networks.values())]
    if not drawn:
        return None
    rows, columns = grid_shape(len(drawn), 4)
    figure, axes = new_figure(rows, columns, height=2.4)
    for axis, name in zip(axes.flat, drawn):
        edges = weights.get(f"{name}.edges")
        holders = [n for n, params in networks.items() if name in params]
        for network in holders[:1] if name in identical else holders:
            counts = weights.get(f"{network}.{name}.counts")
            if counts is None or edges is None:
                continue
            label = "all networks (identical)" if name in identical else network_label(network)
            axis.stairs(counts, edges, fill=name in identical, alpha=0.75,
                        color="#555555" if name in identical else network_color(network), label=label)
        size = networks[holders[0]][name]["size"]
        axis.set_title(f"{name} ({size:,} values)", fontsize=8)
        if name in identical:
            axis.text(0.02, 0.95, "identical in\nevery network", transform=axis.transAxes, fontsize=7, va="top")
    hide_unused(axes, len(drawn))
    names = list(networks)
    caption = (
        f"Initial (step-0) values of every weight layer's kernel, with the number of values. "
        f"{sum(n in identical for n in drawn)} of the {len(drawn)} kernels have the same SHA-256 fingerprint "
        f"in all of {', '.join(names)}: "
        "drawn once, they are identical - the networks start from the same weights and differ only by "
        "the norm (seed notebook Part 1: 'both models have identical weights before training')."
    )
    if any(n not in identical for n in drawn):
        caption += " Kernels that differ between the networks are overlaid per network."
    if biases:
        caption += " " + bias_summary(networks, biases, identical)
    return Plot("start_weights", "Initial weights per layer", figure, caption)


def bias_summary(networks: dict, biases: list[str], identical: list[str]) -> str:
    """One sentence on the bias vectors: their value range at the start and whether they are identical."""
    holders = [params[name] for params in networks.values() for name in biases if name in params]
    low, high = min(h["min"] for h in holders), max(h["max"] for h in holders)
    values = f"all {low:g}" if low == high else f"in [{low:.3g}, {high:.3g}]"
    same = sum(name in identical for name in biases)
    return f"The {len(biases)} bias vectors start {values}; {same} of them identical in every network."


def norm_parameter_table(meta: dict) -> Table | None:
    rows = []
    for network, params in (meta.get("networks") or {}).items():
        for name, p in params.items():
            if p.get("norm"):
                rows.append([network, name, f"{p['size']:,}", f"{p['min']:.4g}", f"{p['max']:.4g}", f"{p['mean']:.4g}"])
    if not rows:
        return None
    return Table("The norms' own parameters at the start", ["network", "parameter", "values", "min", "max", "mean"],
                 rows, "Only the normalized networks have these (scale gamma and shift beta per feature); "
                 "they start at gamma = 1, beta = 0, so the norm starts as a pure standardization.")


def parameter_count_table(report_run: ReportRun, meta: dict) -> Table | None:
    counts = report_run.run.info.get("param_counts") or {}
    n_train = (meta.get("data") or {}).get("num_train")
    networks = meta.get("networks") or {}
    if not counts:
        return None
    rows = []
    for network in report_run.networks:
        count = counts.get(network)
        if not isinstance(count, int):
            continue
        own = sum(p["size"] for p in (networks.get(network) or {}).values() if p.get("norm"))
        ratio = f"{count / n_train:.2f}" if n_train else "-"
        rows.append([network_label(network), f"{count:,}", f"{own:,}", ratio])
    caption = (f"Trainable parameters and parameters per training sample ({n_train:,} training examples)."
               if n_train else "Trainable parameters (the training-split size is not recorded).")
    return Table("Parameters", ["network", "parameters", "of which the norm's", "parameters / sample"], rows, caption)


def start_section(runset: RunSet) -> Section:
    if not runset.runs:
        return missing(KEY, TITLE, "No runs.")
    report_run = runset.runs[0]
    views = start_views(report_run)
    if views is None:
        return missing(KEY, TITLE, "This run has no start views (start/start.json): it was made before normlab "
                       "recorded them, so the examples, input histograms and initial weights cannot be shown.")
    meta, data, weights = views
    section = Section(KEY, TITLE)
    if runset.several:
        section.notes.append(f"Shown for the first run, {report_run.label}.")
    section.add(parameter_count_table(report_run, meta))
    section.add(plot_examples(meta, data))
    if "examples.images" not in data:
        section.notes.append("The inputs are not images, so no example grid is drawn.")
    section.add(plot_inputs(meta, data))
    section.add(plot_initial_weights(meta, weights))
    section.add(norm_parameter_table(meta))
    return section
