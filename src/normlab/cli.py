"""The ``normlab`` command line: thin, it parses, calls the library and prints.

Every user mistake (unknown name, bad ``--set``, missing data) is one line on stderr and exit
status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from normlab.errors import NormlabError

EXIT_USAGE = 2
EXIT_FAILURE = 1


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (and still exit 2)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"normlab: error: {message} (see {self.prog} --help)\n")


def _print(text: str = "") -> None:
    print(text, flush=True)


# ---------------------------------------------------------------------------------------- run


def _preset_and_config(args):
    """The chosen preset (default: quickstart) at ``--size`` (default: the preset's own) with ``--set``."""
    from normlab.experiments import apply_overrides, get_preset
    from normlab.experiments.presets import DEFAULT_PRESET
    from normlab.experiments.studies import STUDIES

    if args.preset in STUDIES:  # normlab sweep STUDY: a study is its own sweep
        raise NormlabError(f"{args.preset} is a study (its own grid and seeds): run it with "
                           f"`normlab run {args.preset}`")
    preset = get_preset(args.preset or DEFAULT_PRESET)
    return preset, apply_overrides(preset.at_size(args.size), args.set or [])


def _command_run(args) -> int:
    from normlab.experiments import resume_experiment, run_experiment
    from normlab.experiments.studies import STUDIES

    if args.resume:
        if args.preset or args.set or args.size or args.seeds or args.grid or args.base:
            raise NormlabError("--resume continues a run with its stored config: give no PRESET, --size, --set, "
                               "--seeds, --grid or --base")
        from normlab.experiments.sweep import is_sweep_dir

        if is_sweep_dir(args.resume):  # a sweep or study directory: complete its members
            from normlab.experiments.config import from_dict
            from normlab.experiments.sweep import load_sweep, resume_sweep

            directory, results = resume_sweep(args.resume, quiet=args.quiet, **_executor_options(args))
            wants_report = from_dict(load_sweep(directory)["base_config"]).report and not args.no_report
            return _finish_sweep(directory, results, quiet=args.quiet, report=wants_report)
        _refuse_study_options(args, "--resume of a run")
        result = resume_experiment(args.resume, quiet=args.quiet)
        config = None
    elif args.preset in STUDIES:
        return _command_study(args)
    else:
        _refuse_study_options(args, "a preset (for a preset over seeds or a grid: normlab sweep)")
        preset, config = _preset_and_config(args)
        if args.no_report:
            from dataclasses import replace

            config = replace(config, report=False)
        if not args.quiet:
            _print(f"normlab run {preset.name} --size {config.size}: {preset.description(config.size)}")
        result = run_experiment(config, out=args.out, quiet=args.quiet)
    _print_summary(result, quiet=args.quiet)
    if result.report is not None and not args.quiet:
        _print(f"report: {result.report}")
    _print(f"run directory: {result.path}")
    return 0


def _refuse_study_options(args, what: str) -> None:
    given = [flag for flag, value in (("--seeds", args.seeds), ("--grid", args.grid), ("--base", args.base),
                                      ("--jobs", args.jobs), ("--ray", args.ray), ("--address", args.address),
                                      ("--vectorize", args.vectorize))
             if value]
    if given or args.threads_per_member != 1:
        flags = ", ".join(given or ["--threads-per-member"])
        raise NormlabError(f"{flags} apply to studies and sweeps, not to {what}")


def _command_study(args) -> int:
    """``normlab run STUDY``: every member of the study into one sweep directory, then its report."""
    from dataclasses import replace

    from normlab.experiments.studies import get_study, run_study
    from normlab.experiments.sweep import parse_grid

    study = get_study(args.preset)
    executor = _executor_options(args)
    plan = study.plan(args.size, base=args.base, overrides=args.set or [],
                      seeds=_parse_seeds(args.seeds) if args.seeds else None,
                      grid=parse_grid(args.grid) if args.grid else None)
    if args.no_report:
        plan = replace(plan, config=replace(plan.config, report=False))
    if not args.quiet:
        _print(f"normlab run {study.name} --size {plan.record['size']}: {study.description}")
        _print(f"  {plan.members} members: base {plan.record['base']}, "
               + (f"{len(plan.variants)} variants x " if plan.variants else "")
               + "".join(f"{len(values)} {key} x " for key, values in plan.grid.items())
               + f"seeds {','.join(map(str, plan.seeds))}")
    directory, results = run_study(study, plan, out=args.out, quiet=args.quiet, **executor)
    return _finish_sweep(directory, results, quiet=args.quiet, report=plan.config.report)


def _write_report(path: Path, *, quiet: bool) -> None:
    """The report of a sweep directory (a run's own report is written by ``run_experiment``)."""
    try:
        from normlab.report import write_report
    except ImportError:  # the report stage is optional for a bare install
        return
    report_path = write_report([path], out=path / "report")
    if not quiet:
        _print(f"report: {report_path}")


def _print_summary(result, *, quiet: bool) -> None:
    from normlab.experiments.summary import summary_lines

    if quiet:
        return
    for line in summary_lines(result.path):
        _print(line)


def _command_sweep(args) -> int:
    from normlab.experiments.sweep import parse_grid, resume_sweep, run_sweep

    executor = _executor_options(args)
    if args.resume:
        if args.preset or args.set or args.size or args.grid or args.seeds is not None:
            raise NormlabError("--resume completes a sweep with its stored settings: give no PRESET, --size, "
                               "--set, --grid or --seeds")
        directory, results = resume_sweep(args.resume, quiet=args.quiet, **executor)
        from normlab.experiments.config import from_dict
        from normlab.experiments.sweep import load_sweep

        wants_report = from_dict(load_sweep(directory)["base_config"]).report
    else:
        _preset, config = _preset_and_config(args)
        seeds = _parse_seeds(args.seeds if args.seeds is not None else "0")
        directory, results = run_sweep(config, parse_grid(args.grid or []), seeds, out=args.out, quiet=args.quiet,
                                       **executor)
        wants_report = config.report
    return _finish_sweep(directory, results, quiet=args.quiet, report=wants_report)


def _executor_options(args) -> dict:
    if args.address and not args.ray:
        raise NormlabError("--address names a Ray cluster: use it with --ray")
    if args.vectorize and args.ray:
        raise NormlabError("--vectorize trains the members together in this process: give it without --ray")
    executor = "vectorized" if args.vectorize else "ray" if args.ray else "local"
    return {"executor": executor, "jobs": args.jobs,
            "threads_per_member": args.threads_per_member, "address": args.address}


def _finish_sweep(directory: Path, results, *, quiet: bool, report: bool) -> int:
    """Summary, report and the sweep directory; exit 1 if a member failed."""
    from normlab.experiments.summary import study_summary_lines, sweep_summary_lines

    if not quiet:
        for line in sweep_summary_lines(directory) + study_summary_lines(directory):
            _print(line)
    if report:
        _write_report(directory, quiet=quiet)
    _print(f"sweep directory: {directory}")
    failed = [result for result in results if result.status not in ("completed", "diverged")]
    if failed:
        print(f"normlab: error: {len(failed)} of {len(results)} members failed ({failed[0].path.name} first); "
              f"after fixing the cause, `normlab sweep --resume {directory}` runs them again", file=sys.stderr,
              flush=True)
        return EXIT_FAILURE
    return 0


def _parse_seeds(text: str) -> list[int]:
    try:
        if "-" in text and "," not in text:
            low, high = (int(part) for part in text.split("-"))
            return list(range(low, high + 1))
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise NormlabError(f"--seeds expects a list like 0,1,2 or a range like 0-4; got {text!r}") from None


# --------------------------------------------------------------------------------------- list


def _command_list(args) -> int:
    from normlab.data import DATASETS
    from normlab.experiments import PRESETS
    from normlab.experiments.studies import STUDIES
    from normlab.models import MODELS
    from normlab.norms import NORMS
    from normlab.probes import probe_descriptions

    sections = [
        ("studies (normlab run STUDY: a preset over variants, a grid and seeds, into one sweep directory)",
         {name: f"{study.description} [base {study.base}; sizes: "
          + ", ".join(size + (" (default)" if size == study.default_size else "") for size in study.sizes)
          + "]" for name, study in STUDIES.items()}),
        ("presets", {name: f"{preset.description()} [sizes: "
                     + ", ".join(size + (" (default)" if size == preset.default_size else "") for size in preset.sizes)
                     + "]" for name, preset in PRESETS.items()}),
        ("datasets", DATASETS),
        ("models", MODELS),
        ("norms", NORMS),
        ("probes", probe_descriptions()),
    ]
    for title, entries in sections:
        _print(f"{title}:")
        width = max(len(name) for name in entries)
        for name, description in entries.items():
            _print(f"  {name:<{width}}  {description}")
    return 0


# ----------------------------------------------------------------------------------- describe


def _command_describe(args) -> int:
    from normlab.data import dataset_shape
    from normlab.errors import check_name
    from normlab.models import DEFAULT_INPUTS, abstract_model, describe_model, format_description, model_names

    check_name("model", args.model, model_names())
    input_shape, num_classes = dataset_shape(args.dataset or DEFAULT_INPUTS[args.model])
    # Shapes only (nnx.eval_shape): describing full-width VGG computes no weights.
    model = abstract_model(
        args.model, input_shape=input_shape, num_classes=num_classes, norm=args.norm, width=args.width
    )
    _print(format_description(describe_model(model, input_shape)))
    return 0


# ------------------------------------------------------------------------------------- config


def _command_config(args) -> int:
    import shutil

    from normlab.experiments.build import prepare
    from normlab.experiments.explain import config_lines
    from normlab.experiments.studies import STUDIES

    if args.preset in STUDIES:
        return _print_study_plan(args)
    preset, config = _preset_and_config(args)
    dataset, _specs, _states = prepare(config)  # the checks against the dataset and models that `normlab run` makes
    sizes = ", ".join(size + (" (default)" if size == preset.default_size else "") for size in preset.sizes)
    heading = f"preset {preset.name} at size {config.size} (sizes: {sizes})" + (
        f", with --set {' '.join(args.set)}" if args.set else "")
    for line in config_lines(config, dataset, heading=heading, width=shutil.get_terminal_size((100, 24)).columns):
        _print(line)
    return 0


def _print_study_plan(args) -> int:
    """``normlab config STUDY``: the members' shared settings (those differing from the base
    preset at that size), the variants, the grid and the seeds."""
    from normlab.experiments import get_preset
    from normlab.experiments.build import prepare
    from normlab.experiments.config import changed_settings
    from normlab.experiments.studies import get_study

    study = get_study(args.preset)
    plan = study.plan(args.size, overrides=args.set or [])
    prepare(plan.config)
    base = get_preset(plan.record["base"]).at_size(plan.record["size"])
    _print(f"study {study.name} at size {plan.record['size']}: {plan.members} members of preset "
           f"{plan.record['base']} ({study.reproduces})")
    for key, value in changed_settings(plan.config, base).items():
        _print(f"  set      {key} = {value!r}")
    for variant in plan.variants:
        _print("  variant  " + ", ".join(f"{k}={v!r}" for k, v in variant.items()))
    for key, values in plan.grid.items():
        _print(f"  grid     {key} = {', '.join(values)}")
    _print(f"  seeds    {', '.join(map(str, plan.seeds))}")
    baseline = plan.record["baseline"]
    _print(f"  baseline {baseline['network']}" + "".join(f", {k}={v!r}" for k, v in baseline["settings"].items()))
    return 0


# ----------------------------------------------------------------------------- report, export


def _command_report(args) -> int:
    from normlab.report import write_report

    paths = [Path(p) for p in args.runs]
    out = Path(args.out) if args.out else (paths[0] / "report" if len(paths) == 1 else Path("reports") / "combined")
    _print(str(write_report(paths, out=out)))
    return 0


def _command_export(args) -> int:
    from normlab.report.tensorboard import export_tensorboard

    out = Path(args.out) if args.out else Path(args.run) / "tensorboard"
    _print(str(export_tensorboard(Path(args.run), out)))
    return 0


def _command_export_tables(args) -> int:
    from normlab.experiments.tables import export_tables

    out = Path(args.out) if args.out else Path(args.runs[0]) / "tables"
    for path in export_tables(args.runs, out, table_format=args.kind):
        _print(str(path))
    return 0


# --------------------------------------------------------------------------------------- main


def _settings_help() -> str:
    """The settings ``--set`` accepts, each with its type and meaning (from ``Config``'s comments)."""
    from normlab.experiments.config import allowed_keys, setting_meanings

    types, meanings = allowed_keys(), setting_meanings()
    width = max(len(key) for key in types)
    lines = [f"  {key:<{width}}  {types[key]}" + (f": {meanings[key]}" if meanings.get(key) else "") for key in types]
    return ("settings (--set KEY=VALUE; `normlab config PRESET [--size S]` prints each with its value for that "
            "preset and size, its type, its meaning and what 0 or \"\" means for it, then the steps, evaluations, "
            "checkpoints and probe steps they come to, and how epochs and steps interact):\n" + "\n".join(lines)
            + "\n\n" + _probe_options_help())


def _probe_options_help() -> str:
    """The options of every probe, by name (``normlab config`` gives their types and meanings)."""
    from normlab.experiments.config import probe_option_types
    from normlab.probes import probe_names

    listed = {probe: ", ".join(probe_option_types(probe)) for probe in probe_names() if probe_option_types(probe)}
    width = max(len(probe) for probe in listed)
    return ("probe options (--set PROBE.OPTION=VALUE, e.g. hessian_top.k=3; `normlab config PRESET` prints those of "
            "the preset's probes with their values, types and meanings):\n"
            + "\n".join(f"  {probe:<{width}}  {options}" for probe, options in listed.items()))


def _add_preset_command(commands, name: str, settings_help: str, *, help: str, preset_help: str, set_help: str):
    """A command of a preset (run, sweep, config): the PRESET argument, --size and --set, and the
    settings listed below its help."""
    from normlab.experiments.config import SIZES

    parser = commands.add_parser(name, epilog=settings_help, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 help=help)
    parser.add_argument("preset", nargs="?", help=preset_help)
    parser.add_argument(
        "--size", metavar="SIZE",
        help=f"the preset's size: {', '.join(SIZES)} (tiny: seconds on generated data; small: minutes on a "
        "laptop CPU, the default; paper: the paper's setting); --set applies on top")
    parser.add_argument("--set", action="extend", nargs="+", metavar="KEY=VALUE", help=set_help)
    return parser


def build_parser() -> argparse.ArgumentParser:
    from normlab import __version__

    parser = _Parser(prog="normlab", description="Study how batch normalization changes training.")
    parser.add_argument("--version", action="version", version=f"normlab {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    settings_help = _settings_help()

    run = _add_preset_command(commands, "run", settings_help,
                              help="run a preset (default: quickstart) and print its run directory",
                              preset_help="preset or study name (see `normlab list`)",
                              set_help="override settings (see `normlab config`)")
    run.add_argument("--out", default="runs", help="directory under which the run directory is made (default: runs)")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    run.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    run.add_argument("--no-report", action="store_true", help="skip the figures and report.html")
    run.add_argument("--seeds", help="a study's seeds instead of its own, e.g. 0,1,2 or 0-4")
    run.add_argument("--grid", action="extend", nargs="+", metavar="KEY=V1,V2",
                     help="a study's grid values instead of its own (per key; tuple items joined by +)")
    run.add_argument("--base", metavar="PRESET", help="lr_sweep: the preset whose group is swept (default d2l_lenet)")
    _executor_arguments(run)
    run.set_defaults(handler=_command_run)

    sweep = _add_preset_command(commands, "sweep", settings_help,
                                help="run a preset over a grid of settings and several seeds",
                                preset_help="preset name (default: quickstart)",
                                set_help="settings shared by every member")
    sweep.add_argument("--grid", action="extend", nargs="+", metavar="KEY=V1,V2",
                       help="values to sweep (tuple settings: items joined by +, e.g. networks=none+batch)")
    sweep.add_argument("--seeds", help="seeds, e.g. 0,1,2 or 0-4 (default: 0)")
    sweep.add_argument(
        "--out", default="runs", help="directory under which the sweep directory is made (default: runs)"
    )
    sweep.add_argument("--resume", metavar="SWEEP_DIR",
                       help="complete a sweep: run its missing members, resume interrupted ones from their "
                       "checkpoints, keep finished ones")
    _executor_arguments(sweep)
    sweep.add_argument("--quiet", action="store_true", help="no progress bars and no summary")
    sweep.set_defaults(handler=_command_sweep)

    listing = commands.add_parser("list", help="list presets, datasets, models, norms and probes")
    listing.set_defaults(handler=_command_list)

    describe = commands.add_parser("describe", help="print a model's layers, output shapes and parameter counts")
    describe.add_argument("model", help="model name (see `normlab list`)")
    describe.add_argument(
        "--norm", default="none", help="norm after each hidden layer (see `normlab list`; default: none)"
    )
    describe.add_argument(
        "--dataset", help="the dataset whose input shape to use (default: the model's own, e.g. cifar10 for vgg)"
    )
    describe.add_argument("--width", type=float, default=1.0, help="width multiplier (vgg, mlp; default: 1.0)")
    describe.set_defaults(handler=_command_describe)

    config = _add_preset_command(commands, "config", settings_help,
                                 help="print every setting of a preset with its value, type and meaning",
                                 preset_help="preset name (default: quickstart)", set_help="override settings first")
    config.set_defaults(handler=_command_config)

    report = commands.add_parser("report", help="write the HTML report of one or more run directories")
    report.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories or sweep directories (runs below)")
    report.add_argument("--out", help="report directory (default: RUN_DIR/report for one run)")
    report.set_defaults(handler=_command_report)

    export = commands.add_parser("export", help="export a run to another tool's format")
    export_kinds = export.add_subparsers(dest="kind", metavar="FORMAT", parser_class=_Parser)
    export_kinds.required = True
    tensorboard = export_kinds.add_parser("tensorboard", help="TensorBoard event files (scalars and histograms)")
    tensorboard.add_argument("run", metavar="RUN_DIR", help="the run directory to export")
    tensorboard.add_argument("--out", help="event file directory (default: RUN_DIR/tensorboard)")
    tensorboard.set_defaults(handler=_command_export)
    for table_format in ("csv", "parquet"):
        tables = export_kinds.add_parser(
            table_format,
            help=f"tidy tables as {table_format}: runs (settings, final/best metrics per network) "
            "and headlines (each probe's headline per step)"
            + (" (needs pyarrow)" if table_format == "parquet" else ""),
        )
        tables.add_argument("runs", nargs="+", metavar="RUN_OR_SWEEP_DIR", help="run, sweep or study directories")
        tables.add_argument("--out", help="directory for runs.<ext> and headlines.<ext> (default: first DIR/tables)")
        tables.set_defaults(handler=_command_export_tables)
    return parser


def _executor_arguments(parser) -> None:
    parser.add_argument("--jobs", type=int, metavar="N",
                        help="members at once in local worker processes (default: cores // --threads-per-member; "
                        "1 runs them one after the other in this process)")
    parser.add_argument("--threads-per-member", type=int, default=1, metavar="T",
                        help="cores given to each member (its CPU affinity; default 1)")
    parser.add_argument("--vectorize", action="store_true",
                        help="train every member in one compiled step vmapped over the members, in this process "
                        "(dense models: mlp, ioffe_mlp, dln; members differing only in seed and lr; on --resume: "
                        "the members never started)")
    parser.add_argument("--ray", action="store_true", help="run the members as Ray tasks (needs the ray extra)")
    parser.add_argument("--address", metavar="ADDR",
                        help="the Ray cluster to join with --ray (e.g. ray://head:10001 or auto; default: "
                        "RAY_ADDRESS, else a local Ray instance)")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _interrupted_message(interrupt: KeyboardInterrupt) -> str:
    """What stopped and the command that continues it."""
    where = getattr(interrupt, "path", None)
    if getattr(interrupt, "sweep", False):  # experiments.sweep.SweepInterrupted
        return f"normlab: interrupted; continue the sweep with `normlab sweep --resume {where}`"
    if getattr(interrupt, "training_complete", False):  # experiments.runner.ReportInterrupted
        return (f"normlab: interrupted while writing the report; training is complete; "
                f"rebuild the report with `normlab report {where}`")
    if where is not None:
        step = getattr(interrupt, "step", None)
        return f"normlab: interrupted at step {step}; continue with `normlab run --resume {where}`"
    return "normlab: interrupted"


def main(argv: list[str] | None = None) -> int:
    if hasattr(signal, "SIGPIPE"):  # `normlab list | head` ends quietly, like any Unix tool
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    args = build_parser().parse_args(argv)
    try:  # SIGTERM stops as cleanly as Ctrl-C
        previous_sigterm = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread: signals stay with their owner
        previous_sigterm = None
    try:
        return args.handler(args)
    except NormlabError as error:
        print(f"normlab: error: {error}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except KeyboardInterrupt as interrupt:
        print(_interrupted_message(interrupt), file=sys.stderr, flush=True)
        return 130
    except OSError as error:  # a full or unwritable disk: the run says "failed" where it still could
        where = f" {error.filename}" if error.filename else ""
        print(f"normlab: error: cannot write{where}: {error.strerror or error}", file=sys.stderr, flush=True)
        return EXIT_FAILURE
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


if __name__ == "__main__":
    sys.exit(main())
