"""Findings in words: what a reader should take away from a run, computed by rules from its arrays.

Every sentence here comes from a rule applied to the stored data (never from a text written for a
preset), so a run whose networks behave the same is described as behaving the same. Both the
report's first section and the terminal summary of ``normlab run`` print these findings.

``findings(runs)`` takes the *replicates* of one setting (runs that differ only in their seeds;
usually one run). A quantity is computed per run and, with n > 1 runs, shown as mean ± standard
deviation (n). The first network of a run is the baseline; the others are compared with it.

The rules (thresholds are module constants, stated in the sentences they produce):

- accuracy: final and best test accuracy of every network, and each network's final minus the
  baseline's. One run: a difference is *resolved* only if it exceeds twice the binomial standard
  error of a difference of two accuracies on the test split, ``2 sqrt(2 p (1 - p) / n_test)``
  (p = the mean of the two, n_test from ``start/start.json``). Several runs: only if
  ``|mean| > 2 sd / sqrt(n)`` of the per-run differences.
- speed: the first evaluation step at which each network reached ``level``, the highest of
  ``ACCURACY_LEVELS`` that every network reached in every run; and the first step at which the
  training loss (mean over ``LOSS_WINDOW`` steps) fell below the largest of ``LOSS_LEVELS`` at or
  below a quarter of the baseline's initial loss.
- activations: per layer, the change of the layer's mean in units of its starting std,
  ``|mu_end - mu_0| / sigma_0``, and the ratio ``sigma_end / sigma_0``; a network *drifted* if in
  some layer the mean moved more than ``MEAN_DRIFT`` start-stds or the std changed by more than a
  factor ``STD_DRIFT``.
- gradients: the spread (std over the measurements) of the tracked kernel entry's gradient and
  the median over the run of the tracked layer's gradient std; *smaller* / *larger* than the
  baseline's when the ratio is below ``1 / SPREAD_RATIO`` / above ``SPREAD_RATIO``.
- landscape-type probes (landscape, predictiveness, beta_smoothness, ics, divergence): the median
  over the run of the probe's declared headline quantity (mean over step sizes or layers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from normlab.errors import NormlabError
from normlab.probes import headline_series
from normlab.report.runs import declared_headline, probe_array, run_probe_data, run_probe_meta, training_loss_words
from normlab.store import Run
from normlab.store.layout import START_META_FILE

ACCURACY_LEVELS = (0.5, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99)
LOSS_LEVELS = (2.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01)
LOSS_WINDOW = 20
MEAN_DRIFT = 0.25
STD_DRIFT = 1.25
SPREAD_RATIO = 1.25

# Landscape-type probes: (figure name, what the headline quantity is).
HEADLINE_PROBES = {
    "landscape": ("landscape", "loss band along the gradient (max - min over step sizes; S18 Fig. 4a)"),
    "predictiveness": ("predictiveness", "gradient change along the step (max over step sizes; S18 Fig. 4b)"),
    "beta_smoothness": ("beta_smoothness", "effective beta-smoothness (S18 Fig. 4c)"),
    "ics": ("ics", "cosine between the gradient before and after the earlier layers' update (S18 Fig. 3)"),
    "divergence": ("divergence", "largest relative loss after one step (B18)"),
}


@dataclass(frozen=True)
class Finding:
    """One sentence: ``topic`` (accuracy, speed, activations, gradients or a probe name), the
    plain ``text``, and the report figure (plot name) it is read from, if any."""

    topic: str
    text: str
    figure: str | None = None
    resolved: bool | None = None  # accuracy: whether the difference exceeds the rule's bound
    short: str = ""  # a shorter wording for the terminal (empty: the text itself)


# ------------------------------------------------------------------------------ numbers per run


def _eval_rows(run: Run, network: str):
    metrics = run.metrics
    rows = metrics[metrics["network"] == network]
    return rows.dropna(subset=["test_accuracy"]) if "test_accuracy" in rows else rows.iloc[0:0]


def final_and_best_accuracy(run: Run, network: str) -> tuple[float, float] | None:
    rows = _eval_rows(run, network)
    if rows.empty:
        return None
    return float(rows["test_accuracy"].iloc[-1]), float(rows["test_accuracy"].max())


def first_step_at_accuracy(run: Run, network: str, level: float) -> int | None:
    """The first evaluation step with test accuracy >= ``level`` (None if never)."""
    rows = _eval_rows(run, network)
    reached = rows[rows["test_accuracy"] >= level]
    return int(reached["step"].iloc[0]) if len(reached) else None


def smoothed_loss(run: Run, network: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, training loss averaged over the trailing ``LOSS_WINDOW`` steps)."""
    metrics = run.metrics
    rows = metrics[(metrics["network"] == network)].dropna(subset=["loss"])
    loss = rows["loss"].to_numpy(dtype=float)
    if len(loss) < LOSS_WINDOW:
        return rows["step"].to_numpy(), loss
    kernel = np.ones(LOSS_WINDOW) / LOSS_WINDOW
    return rows["step"].to_numpy()[LOSS_WINDOW - 1:], np.convolve(loss, kernel, mode="valid")


def first_step_below_loss(run: Run, network: str, level: float) -> int | None:
    steps, loss = smoothed_loss(run, network)
    below = np.flatnonzero(loss <= level)
    return int(steps[below[0]]) if below.size else None


def activation_drift(run: Run, network: str) -> list[dict] | None:
    """Per layer: ``{layer, mean0, mean1, std0, std1, shift (start-stds), ratio}``."""
    arrays = run_probe_data(run, "activations", network)
    if arrays is None or len(arrays["step"]) < 2:
        return None
    layers = run_probe_meta(run, "activations", network).get("layers") or []
    drift = []
    for layer in layers:
        means = probe_array(arrays, "activations", "{layer}.mean", layer)
        stds = probe_array(arrays, "activations", "{layer}.std", layer)
        if means is None or stds is None or not (np.isfinite(stds[0]) and stds[0] > 0):
            continue
        mean0, mean1, std0, std1 = (float(v) for v in (means[0], means[-1], stds[0], stds[-1]))
        drift.append({"layer": layer, "mean0": mean0, "mean1": mean1, "std0": std0, "std1": std1,
                      "shift": abs(mean1 - mean0) / std0, "ratio": std1 / std0})
    return drift or None


def drifted(layers: list[dict]) -> bool:
    """Whether some layer's mean moved more than MEAN_DRIFT start-stds or its std changed by more
    than a factor STD_DRIFT (either way)."""
    return any(d["shift"] > MEAN_DRIFT or not 1 / STD_DRIFT <= d["ratio"] <= STD_DRIFT for d in layers)


def gradient_spread(run: Run, network: str) -> dict | None:
    """``{tracked: std over measurements, layer_std: median gradient std of the tracked layer, n}``."""
    arrays = run_probe_data(run, "gradients", network)
    if arrays is None:
        return None
    tracked = probe_array(arrays, "gradients", "tracked")
    if tracked is None:
        return None
    meta = run_probe_meta(run, "gradients", network)
    tracked = tracked.astype(float)
    tracked = tracked[np.isfinite(tracked)]
    layer = meta.get("tracked_layer")
    stds = probe_array(arrays, "gradients", "{layer}.std", layer) if layer else None
    return {"tracked": float(np.std(tracked)) if tracked.size else math.nan, "n": int(tracked.size),
            "layer_std": float(np.nanmedian(stds)) if stds is not None else math.nan, "layer": layer,
            "index": meta.get("tracked_index")}


def headline_median(run: Run, probe: str, network: str) -> float | None:
    """Median over the run of ``probe``'s stored headline output (mean over its trailing axes;
    ``Headline.from_json`` reads both stored forms)."""
    arrays = run_probe_data(run, probe, network)
    meta = run_probe_meta(run, probe, network)
    headline = declared_headline(probe, {network: meta})
    if arrays is None or headline is None:
        return None
    per_step = headline_series(headline, arrays, meta.get("layers"))
    return float(np.nanmedian(per_step)) if per_step is not None and np.isfinite(per_step).any() else None


def test_size(run: Run) -> int | None:
    """The number of test examples, from the run's start views (None if not recorded)."""
    try:
        return int(run.read_json(START_META_FILE)["data"]["num_test"])
    except (OSError, ValueError, KeyError, TypeError, NormlabError):
        return None


# ------------------------------------------------------------------------------------ wording


def _stat(values, fmt) -> str:
    """One number, or ``mean ± sd (n=k)`` over replicates."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "-"
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(float(np.mean(values)))} ± {fmt(float(np.std(values, ddof=1))).lstrip('+')} (n={len(values)})"


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _pp(value: float) -> str:
    return f"{100 * value:+.2f} pp"


def _num(value: float) -> str:
    return f"{value:.3g}"


def _steps(values) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "never"
    text = _stat([float(v) for v in known], lambda v: f"{v:.0f}")
    return text + (f" ({len(values) - len(known)} of {len(values)} runs never)" if len(known) < len(values) else "")


def _networks(runs: list[Run]) -> list[str]:
    return list(runs[0].config.get("networks") or [])


def _diverged(runs: list[Run]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for run in runs:
        for network, step in (run.info.get("diverged") or {}).items():
            found.setdefault(str(network), []).append(int(step))
    return found


def accuracy_findings(runs: list[Run]) -> list[Finding]:
    networks = _networks(runs)
    diverged = _diverged(runs)
    per_network = {n: [final_and_best_accuracy(r, n) for r in runs] for n in networks}
    if not any(v is not None for values in per_network.values() for v in values):
        return []
    parts = []
    for network in networks:
        values = [v for v in per_network[network] if v is not None]
        if network in diverged:
            parts.append(f"{network} diverged (step {', '.join(map(str, diverged[network]))})")
        elif values:
            parts.append(f"{network} {_stat([v[0] for v in values], _pct)} final, "
                         f"{_stat([v[1] for v in values], _pct)} best")
    text = "Test accuracy: " + "; ".join(parts) + "."
    baseline = networks[0]
    verdicts = []
    for network in networks[1:]:
        pairs = [(a, b) for a, b in zip(per_network[baseline], per_network[network]) if a and b]
        if not pairs or network in diverged or baseline in diverged:
            continue
        differences = [b[0] - a[0] for a, b in pairs]
        words, resolved = _resolution(runs, pairs, differences)
        text += f" {network} - {baseline} (final): {_stat(differences, _pp)}; {words}"
        verdicts.append(resolved)
    resolved = None if not verdicts or None in verdicts else any(verdicts)
    return [Finding("accuracy", text, "accuracy_curves", resolved)]


def _resolution(runs: list[Run], pairs, differences) -> tuple[str, bool | None]:
    """(words, resolved) for an accuracy difference, by the rule in the module docstring."""
    mean = float(np.mean(differences))
    if len(differences) > 1:
        bound = 2 * float(np.std(differences, ddof=1)) / math.sqrt(len(differences))
        source = f"twice its standard error over {len(differences)} seeds"
    else:
        n_test = test_size(runs[0])
        if not n_test:
            return "the test split size is not recorded, so its resolution is unknown.", None
        p = (pairs[0][0][0] + pairs[0][1][0]) / 2
        bound = 2 * math.sqrt(max(2 * p * (1 - p), 1e-12) / n_test)
        source = f"twice the standard error of a difference on {n_test} test examples"
    if abs(mean) > bound:
        return f"larger than {source} ({100 * bound:.2f} pp).", True
    these = "these runs" if len(differences) > 1 else "this run"
    return f"within {source} ({100 * bound:.2f} pp): not an accuracy difference {these} can resolve.", False


def speed_findings(runs: list[Run]) -> list[Finding]:
    networks = [n for n in _networks(runs) if n not in _diverged(runs)]
    findings = []
    best = [final_and_best_accuracy(r, n) for r in runs for n in networks]
    known = [b for b in best if b is not None]
    if networks and len(known) == len(best):
        reached = [level for level in ACCURACY_LEVELS if all(b[1] >= level for b in known)]
        if reached:
            level = reached[-1]
            steps = {n: [first_step_at_accuracy(r, n, level) for r in runs] for n in networks}
            text = (f"Speed: first evaluation at >= {100 * level:g}% test accuracy (the highest of "
                    f"{', '.join(f'{100 * v:g}' for v in ACCURACY_LEVELS)}% every network reached) at step "
                    + ", ".join(f"{_steps(steps[n])} ({n})" for n in networks) + _eval_cadence(runs) + ".")
            short = (f"Speed: >= {100 * level:g}% test accuracy first at step "
                     + ", ".join(f"{_steps(steps[n])} ({n})" for n in networks) + _eval_cadence(runs) + ".")
            findings.append(Finding("speed", text, "accuracy_curves", short=short))
    loss_finding = _loss_speed(runs, networks)
    if loss_finding:
        findings.append(loss_finding)
    return findings


def _eval_cadence(runs: list[Run]) -> str:
    rows = _eval_rows(runs[0], _networks(runs)[0])
    steps = rows["step"].to_numpy()
    return f"; evaluations every {int(np.median(np.diff(steps)))} steps" if len(steps) > 1 else ""


def _loss_speed(runs: list[Run], networks: list[str]) -> Finding | None:
    if not networks:
        return None
    starts = [smoothed_loss(r, networks[0])[1] for r in runs]
    if any(len(s) == 0 for s in starts):
        return None
    initial = float(np.median([s[0] for s in starts]))
    levels = [level for level in LOSS_LEVELS if level <= initial / 4]
    if not levels:
        return None
    level = levels[0]
    steps = {n: [first_step_below_loss(r, n, level) for r in runs] for n in networks}
    loss = f"Training loss ({training_loss_words(runs)}, averaged over {LOSS_WINDOW} steps)"
    text = (f"{loss} first at or below {level:g} (the largest of "
            f"{', '.join(f'{v:g}' for v in LOSS_LEVELS)} under a quarter of the initial {initial:.3g}) at step "
            + ", ".join(f"{_steps(steps[n])} ({n})" for n in networks) + ".")
    short = (f"{loss} <= {level:g} first at step "
             + ", ".join(f"{_steps(steps[n])} ({n})" for n in networks) + ".")
    return Finding("speed", text, "loss_curves", short=short)


def activation_findings(runs: list[Run]) -> list[Finding]:
    findings = []
    for network in _networks(runs):
        measured = [activation_drift(r, network) for r in runs]
        per_run = [d for d in measured if d is not None]
        if len(per_run) < len(measured):
            continue
        layers = [d["layer"] for d in per_run[0]]
        moved = sum(drifted(d) for d in per_run)
        described = []
        for i, layer in enumerate(layers):
            rows = [d[i] for d in per_run if i < len(d)]
            if len(rows) == 1:
                r = rows[0]
                described.append(f"{layer} mean {r['mean0']:+.2f} -> {r['mean1']:+.2f} ({r['shift']:.2g} start-stds), "
                                 f"std {r['std0']:.2f} -> {r['std1']:.2f} (x{r['ratio']:.2f})")
            else:
                described.append(f"{layer} mean moved {_stat([r['shift'] for r in rows], _num)} start-stds, "
                                 f"std x{_stat([r['ratio'] for r in rows], _num)}")
        verdict = (
            "drifted"
            if moved == len(runs)
            else ("stayed put" if moved == 0 else f"drifted in {moved} of {len(runs)} runs")
        )
        rule = f"mean moved > {MEAN_DRIFT:g} start-stds or std changed > x{STD_DRIFT:g} in some layer"
        if verdict == "stayed put":
            rule = f"every layer's mean within {MEAN_DRIFT:g} start-stds and std within x{STD_DRIFT:g}"
        text = f"Activations of {network} {verdict} ({rule}), first to last measurement: " + "; ".join(described) + "."
        largest = max(range(len(layers)), key=lambda i: _change([d[i] for d in per_run]))
        short = f"Activations of {network} {verdict}; largest change {described[largest]}."
        findings.append(Finding("activations", text, "activation_moments", short=short))
    return findings


def _change(rows: list[dict]) -> tuple[float, float]:
    """How much a layer changed: (largest std factor either way, largest mean shift)."""
    return (max(max(r["ratio"], 1 / r["ratio"]) if r["ratio"] > 0 else math.inf for r in rows),
            max(r["shift"] for r in rows))


def gradient_findings(runs: list[Run]) -> list[Finding]:
    networks = _networks(runs)
    spreads = {n: [gradient_spread(r, n) for r in runs] for n in networks}
    present = [n for n in networks if all(s is not None for s in spreads[n])]
    if not present:
        return []
    measured = {n: [s for s in spreads[n] if s is not None] for n in present}
    first = measured[present[0]][0]
    parts = []
    for network in present:
        tracked = [s["tracked"] for s in measured[network]]
        parts.append(f"{network} {_stat(tracked, _num)}" + _ratio_text(network, networks[0], tracked, spreads))
    text = (f"Gradient of the tracked weight ({first['layer']} kernel entry {first['index']}), spread (std over "
            f"{first['n']} measurements): " + "; ".join(parts) + ". Median gradient std of that layer's kernel: "
            + ", ".join(f"{n} {_stat([s['layer_std'] for s in measured[n]], _num)}" for n in present) + ".")
    short = f"Tracked gradient ({first['layer']}[{first['index']}]) spread over steps: " + "; ".join(parts) + "."
    return [Finding("gradients", text, "tracked_gradient", short=short)]


def _ratio_text(network: str, baseline: str, values: list[float], spreads) -> str:
    if network == baseline or baseline not in spreads or any(s is None for s in spreads[baseline]):
        return ""
    reference = float(np.mean([s["tracked"] for s in spreads[baseline]]))
    mean = float(np.mean(values))
    if not reference > 0 or not math.isfinite(mean):
        return ""
    ratio = mean / reference
    word = "smaller" if ratio < 1 / SPREAD_RATIO else "larger" if ratio > SPREAD_RATIO else "about the same"
    return f" ({ratio:.2g}x the {baseline} spread: {word})"


def headline_findings(runs: list[Run]) -> list[Finding]:
    findings = []
    for probe, (figure, what) in HEADLINE_PROBES.items():
        values = {n: [headline_median(r, probe, n) for r in runs] for n in _networks(runs)}
        present = {n: v for n, v in values.items() if all(x is not None for x in v)}
        if present:
            text = (f"{probe}: median over the run of the {what}: "
                    + ", ".join(f"{n} {_stat(v, _num)}" for n, v in present.items()) + ".")
            findings.append(Finding(probe, text, figure))
    return findings


# Settings that only repeat an experiment: runs that differ in nothing else are replicates.
REPLICATE_KEYS = ("seed", "data_seed", "report")


def replicate_groups(runs: list[Run]) -> list[list[Run]]:
    """``runs`` grouped into replicates (same config apart from ``REPLICATE_KEYS``), in first-seen order."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        settings = {k: v for k, v in run.config.items() if k not in REPLICATE_KEYS}
        groups.setdefault(repr(sorted(settings.items())), []).append(run)
    return list(groups.values())


RULES = (accuracy_findings, speed_findings, activation_findings, gradient_findings, headline_findings)


def findings(runs) -> list[Finding]:
    """Every finding for the replicates ``runs`` (a Run or a list of Runs of one setting)."""
    runs = [runs] if isinstance(runs, Run) else list(runs)
    if not runs or not _networks(runs):
        return []
    result = []
    for rule in RULES:
        result += rule(runs)
    # An accuracy difference the run cannot resolve is stated last: the effects that show lead.
    unresolved = [f for f in result if f.topic == "accuracy" and f.resolved is False]
    return [f for f in result if f not in unresolved] + unresolved
