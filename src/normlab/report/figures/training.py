"""Training curves: loss and accuracy of every network over steps (seed notebook Part 2, S18 Fig. 1)."""

from __future__ import annotations

import numpy as np

from normlab.report.runs import (
    ReportRun,
    RunSet,
    diverged_steps,
    eval_rows,
    finite,
    train_rows,
    training_loss_words,
)
from normlab.report.sections import Plot, Section, section_of
from normlab.report.style import network_color, new_figure, run_linestyle, series_label, shared_legend

TITLE = "Training curves"


def smooth(values: np.ndarray, points: int = 60) -> np.ndarray:
    """A centered moving average over about ``len / points`` steps (NaN-aware).

    Per-batch loss is too noisy to compare two networks by eye; averaging over a window that
    scales with the run length gives a similar-looking curve for short and long runs.
    """
    values = finite(values)
    window = max(1, len(values) // points)
    if window == 1:
        return values
    kernel = np.ones(window)
    valid = np.isfinite(values)
    sums = np.convolve(np.where(valid, values, 0.0), kernel, mode="same")
    counts = np.convolve(valid.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def _mark_divergence(axis, report_run: ReportRun, network: str) -> None:
    """A dotted vertical line in the network's color where it diverged."""
    step = diverged_steps(report_run).get(network)
    if step is not None:
        axis.axvline(step, color=network_color(network), linestyle=":", linewidth=1.2)
        axis.annotate("diverged", (step, 1.0), xycoords=("data", "axes fraction"), fontsize=7,
                      color=network_color(network), ha="left", va="top", rotation=90)


def _curve_panels(runset: RunSet, columns: list[tuple[str, str, str]], *, log: bool):
    """A 1 x len(columns) figure; each column is (panel title, metric column, 'train'|'eval')."""
    figure, axes = new_figure(1, len(columns), height=3.3)
    drawn, points = 0, []
    for axis, (title, column, kind) in zip(axes[0], columns):
        for report_run in runset.runs:
            for network in report_run.networks:
                rows = train_rows(report_run, network) if kind == "train" else eval_rows(report_run, network)
                if rows is None or column not in rows or not rows[column].notna().any():
                    continue
                values = rows[column].to_numpy(float)
                points.append(int(np.isfinite(finite(values)).sum()))
                if kind == "train":
                    if not runset.several:  # the raw batches, faintly, behind the average
                        axis.plot(rows["step"], finite(values), color=network_color(network), alpha=0.15, linewidth=0.6)
                    values = smooth(values)
                axis.plot(rows["step"], finite(values), color=network_color(network),
                          linestyle=run_linestyle(report_run.index), linewidth=1.5,
                          marker="o" if kind == "eval" and len(values) <= 30 else None, markersize=3,
                          label=series_label(report_run.label, network, several_runs=runset.several))
                _mark_divergence(axis, report_run, network)
                drawn += 1
        axis.set_title(title)
        axis.set_xlabel("step")
        if log:
            axis.set_yscale("log")
    if not drawn:
        return None, ()
    shared_legend(figure)
    return figure, tuple(points)


def plot_loss_curves(runset: RunSet) -> Plot | None:
    """Batch loss (smoothed), train-subset loss and test loss over steps, log scale."""
    reduction = training_loss_words(runset.runs)
    figure, points = _curve_panels(runset, [
        (f"training loss ({reduction}, smoothed)", "loss", "train"),
        ("train loss (eval mode, fixed subset; mean per example)", "train_eval_loss", "eval"),
        ("test loss (mean per example)", "test_loss", "eval"),
    ], log=True)
    if figure is None:
        return None
    caption = (
        "Loss of every network over training steps (log scale; lower is better). Left: the loss of "
        f"each training batch in train mode ({reduction}; BN uses batch statistics), averaged over a moving "
        "window, "
        "with the raw per-batch values faint behind it when one run is shown. Middle and right: the "
        "loss in eval mode (BN uses its running averages) on a fixed subset of the training split and "
        "on the test split, measured at every evaluation, each the mean over its examples. A network that "
        "converges faster has a curve "
        "that falls sooner; a gap between the train and test panels is overfitting. A dotted vertical "
        "line marks the step at which a network diverged (its loss became NaN or infinite). "
        "Corresponds to the loss panels of the seed notebooks and S18 Fig. 1."
    )
    return Plot("loss_curves", "Loss", figure, caption, points=points, unit="evaluations")


def plot_accuracy_curves(runset: RunSet) -> Plot | None:
    """Batch accuracy (smoothed), train-subset accuracy and test accuracy over steps."""
    figure, points = _curve_panels(runset, [
        ("training accuracy (per batch, smoothed)", "accuracy", "train"),
        ("train accuracy (eval mode, fixed subset)", "train_eval_accuracy", "eval"),
        ("test accuracy", "test_accuracy", "eval"),
    ], log=False)
    if figure is None:
        return None
    caption = (
        "Accuracy of every network over training steps (higher is better). Left: accuracy on each "
        "training batch in train mode, smoothed; middle: eval-mode accuracy on a fixed subset of the "
        "training split; right: test accuracy at every evaluation. BN15 Fig. 1(a) and S18 Fig. 1 show "
        "the BN network reaching a higher test accuracy sooner; the seed notebooks report 98.09% "
        "(no norm) vs 98.46% (BN) for the Part 1 MLP on MNIST and about 80% vs 85% for the Part 2 VGG "
        "on CIFAR-10."
    )
    return Plot("accuracy_curves", "Accuracy", figure, caption, points=points, unit="evaluations")


def plot_learning_rate(runset: RunSet) -> Plot | None:
    """The learning rate over steps, only when some run changes it during training."""
    figure, axes = new_figure(1, 1, height=2.4)
    axis = axes[0, 0]
    drawn, points = 0, []
    for report_run in runset.runs:
        for network in report_run.networks[:1]:  # every network of a run shares the schedule
            rows = train_rows(report_run, network)
            if rows is None or "lr" not in rows:
                continue
            lr = finite(rows["lr"].to_numpy(float))
            if not np.isfinite(lr).any() or np.nanmax(lr) == np.nanmin(lr):
                continue  # a constant learning rate needs no figure
            axis.plot(rows["step"], lr, color="black", linestyle=run_linestyle(report_run.index),
                      label=report_run.label)
            points.append(len(rows))
            drawn += 1
    if not drawn:
        return None
    axis.set_xlabel("step")
    axis.set_ylabel("learning rate")
    shared_legend(figure)
    caption = "The learning rate used at every step (the schedule is the same for every network of a run)."
    return Plot("learning_rate", "Learning rate", figure, caption, points=tuple(points), unit="training steps")


def training_section(runset: RunSet) -> Section:
    """Loss, accuracy and (if scheduled) learning-rate curves from metrics.csv."""
    return section_of(
        "training", TITLE,
        (plot_loss_curves(runset), plot_accuracy_curves(runset), plot_learning_rate(runset)),
        intro="Train-mode batch metrics are recorded at every step; eval-mode metrics on the test split and "
              "on a fixed training subset at every evaluation.",
        missing_note="No metrics were recorded yet (metrics.csv holds no rows).")
