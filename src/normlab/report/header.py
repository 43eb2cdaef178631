"""What was run: the header of each run and the summary table, as plain data (rows of strings).

Kept apart from the HTML so the same facts can be tested without parsing markup.
"""

from __future__ import annotations

import datetime as _datetime
import math

from normlab.report.runs import (
    ReportRun,
    diverged_steps,
    eval_rows,
    train_rows,
    training_loss_reduction,
)
from normlab.store import format_value

# Settings shown in the "what was run" lines rather than only in the full settings table.
DATA_KEYS = ("dataset", "input_normalization", "normalize", "augment")  # "normalize": its name in older runs
MODEL_KEYS = ("model", "width", "activation", "norm_position", "bias_before_norm", "bias_removed_from", "norm_exclude",
              "dropout")
OPTIMIZER_KEYS = ("optimizer", "lr", "momentum", "lr_schedule", "weight_decay", "batch_size", "epochs", "steps")


def changed_settings(report_run: ReportRun) -> dict | None:
    """Settings that differ from the preset's defaults, or None if the defaults were not recorded.

    The runner stores the preset's own config as ``preset_defaults`` in run.json (or config.json);
    the report never imports the presets, so it can describe runs made by any normlab version.
    """
    run = report_run.run
    defaults = run.info.get("preset_defaults") or run.config.get("preset_defaults")
    if not isinstance(defaults, dict):
        return None
    return {
        key: value for key, value in run.config.items()
        if key not in ("preset", "preset_defaults") and (key not in defaults or defaults[key] != value)
    }


def settings_line(config: dict, keys) -> str:
    """``key=value`` for the ``keys`` present in ``config`` (empty and default-ish values kept)."""
    return ", ".join(
        f"{key}={format_value(config[key])}" for key in keys if key in config and config[key] not in ("", None)
    )


def schedule_keys(config: dict) -> tuple[str, ...]:
    """The settings that chose the probe steps of a run (older runs have no probe_points)."""
    if (config.get("probe_budget") or 0) > 0:
        return ("probe_budget",)
    if (config.get("probe_points") or 0) > 0:
        return ("probe_points", "probe_spacing")
    return ("probe_every",)


def networks_line(report_run: ReportRun) -> str:
    """Each network with its parameter count when the run recorded them."""
    counts = report_run.run.info.get("param_counts") or {}
    parts = []
    for index, network in enumerate(report_run.networks):
        role = " (baseline)" if index == 0 else ""
        count = counts.get(network)
        parts.append(f"{network}{role}: {count:,} parameters" if isinstance(count, int) else f"{network}{role}")
    return "; ".join(parts)


def seeds_line(report_run: ReportRun) -> str:
    seeds = report_run.run.provenance.get("seeds") or {
        key: report_run.run.config[key] for key in ("seed", "data_seed") if key in report_run.run.config
    }
    return ", ".join(f"{key}={value}" for key, value in seeds.items()) or "not recorded"


def parse_time(text) -> _datetime.datetime | None:
    try:
        return _datetime.datetime.fromisoformat(str(text))
    except (TypeError, ValueError):
        return None


def format_seconds(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {rest:02d} s"


def duration_line(report_run: ReportRun) -> str:
    """Wall time from start to end (or 'still running / killed'), and the training time alone."""
    info = report_run.run.info
    start, end = parse_time(info.get("start_time")), parse_time(info.get("end_time"))
    parts = []
    if start and end:
        parts.append(f"{format_seconds((end - start).total_seconds())} wall time")
    elif start:
        parts.append("no end time recorded (running, or killed)")
    if isinstance(info.get("train_seconds"), (int, float)):
        parts.append(f"{format_seconds(info['train_seconds'])} training")
    return ", ".join(parts) or "not recorded"


def steps_line(report_run: ReportRun) -> str:
    info = report_run.run.info
    done, total = info.get("steps_done"), info.get("total_steps")
    if done is None:
        return "not recorded"
    return f"{done:,} of {total:,}" if isinstance(total, int) else f"{done:,}"


def status_line(report_run: ReportRun) -> str:
    info = report_run.run.info
    parts = [report_run.run.status]
    diverged = diverged_steps(report_run)
    if diverged:
        parts.append("diverged: " + ", ".join(f"{network} at step {step}" for network, step in diverged.items()))
    if info.get("resumed_from") is not None:
        parts.append(f"resumed from step {info['resumed_from']}")
    if info.get("error"):
        parts.append(f"error: {info['error']}")
    return "; ".join(parts)


def provenance_rows(report_run: ReportRun) -> list[tuple[str, str]]:
    """(name, value) rows of the provenance: versions, revision, machine, command."""
    provenance = report_run.run.provenance
    rows = [("normlab", str(provenance.get("normlab_version", "unknown")))]
    git = provenance.get("git")
    if isinstance(git, dict):
        dirty = " (uncommitted changes)" if git.get("dirty") else ""
        rows.append(("code revision", f"{git.get('revision', 'unknown')}{dirty}"))
    versions = provenance.get("versions") or {}
    if versions:
        rows.append(("versions", ", ".join(f"{name} {version}" for name, version in versions.items())))
    jax = provenance.get("jax")
    if isinstance(jax, dict):
        rows.append(("JAX backend", f"{jax.get('backend', 'unknown')} ({', '.join(jax.get('devices', []))})"))
    for key, name in (("platform", "platform"), ("hostname", "host")):
        if provenance.get(key):
            rows.append((name, str(provenance[key])))
    if provenance.get("command"):
        rows.append(("command", " ".join(str(part) for part in provenance["command"])))
    return rows


def header_rows(report_run: ReportRun) -> list[tuple[str, str]]:
    """The "what was run" rows of one run."""
    config = report_run.run.config
    changed = changed_settings(report_run)
    if changed is None:
        changed_text = "preset defaults not recorded in this run; every setting is listed below"
    else:
        changed_text = ", ".join(f"{k}={format_value(v)}" for k, v in changed.items()) or "none (the preset as is)"
    return [
        ("preset", str(config.get("preset", "unknown")) + (f", size {config['size']}" if config.get("size") else "")),
        ("changed from the preset", changed_text),
        ("data", settings_line(config, DATA_KEYS)),
        ("model", settings_line(config, MODEL_KEYS)),
        ("networks", networks_line(report_run)),
        ("optimization", settings_line(config, OPTIMIZER_KEYS)),
        ("probes", settings_line(config, ("probes", *schedule_keys(config), "probe_bn_mode"))),
        ("seeds", seeds_line(report_run)),
        ("status", status_line(report_run)),
        ("steps", steps_line(report_run)),
        (
            "started / ended",
            f"{report_run.run.info.get('start_time', '?')} / {report_run.run.info.get('end_time', '-')}",
        ),
        ("duration", duration_line(report_run)),
    ]


# ---------------------------------------------------------------------------- summary table

SUMMARY_HEADER = [
    "run", "network", "train acc (final)", "train acc (best)", "test acc (final)", "test acc (best)",
    "train loss (final, mean)", "test loss (final, mean)", "test loss (best, mean)", "last batch loss", "divergence",
]


def _number(value, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.2f}%" if percent else f"{value:.4g}"


def _final_and_best(rows, column: str, best):
    """(last value, best value, step of best) of ``column`` over the evaluation rows."""
    if rows is None or column not in rows:
        return None, None, None
    values = rows[["step", column]].dropna()
    if values.empty:
        return None, None, None
    position = values[column].idxmax() if best == "max" else values[column].idxmin()
    return float(values[column].iloc[-1]), float(values[column][position]), int(values["step"][position])


def summary_row(report_run: ReportRun, network: str) -> list[str]:
    """One row of the summary table (formatted cells, in ``SUMMARY_HEADER`` order)."""
    evals = eval_rows(report_run, network)
    train_acc = _final_and_best(evals, "train_eval_accuracy", "max")
    test_acc = _final_and_best(evals, "test_accuracy", "max")
    train_loss = _final_and_best(evals, "train_eval_loss", "min")
    test_loss = _final_and_best(evals, "test_loss", "min")
    batches = train_rows(report_run, network)
    last_batch = float(batches["loss"].iloc[-1]) if batches is not None and len(batches) else None
    diverged = diverged_steps(report_run).get(network)

    def best(triple, percent):
        return "-" if triple[1] is None else f"{_number(triple[1], percent)} (step {triple[2]})"

    return [
        report_run.label, network,
        _number(train_acc[0], True), best(train_acc, True),
        _number(test_acc[0], True), best(test_acc, True),
        _number(train_loss[0]), _number(test_loss[0]), best(test_loss, False),
        _number(last_batch) + (" (sum over the batch)" if last_batch is not None
                               and training_loss_reduction(report_run.run) == "sum" else ""),
        f"diverged at step {diverged}" if diverged is not None else "-",
    ]
