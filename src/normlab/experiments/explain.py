"""Settings that explain themselves: what `normlab config` prints about a config.

Every setting with its value, type and meaning (the comments on ``Config``'s fields, which also say
what 0 or "" means where either is special), the options of the config's probes likewise (the
comments on the probes' fields), then what the settings that interact come to for
this config and its dataset: the number of steps (``steps`` against ``epochs``), the evaluation,
checkpoint and probe steps.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from normlab.data import Dataset
from normlab.experiments.build import batch_iterator, measured_steps, total_steps
from normlab.experiments.checks import probe_schedule_note
from normlab.experiments.config import (
    Config,
    allowed_keys,
    probe_option_meanings,
    probe_option_type_names,
    probe_option_values,
    setting_meanings,
)
from normlab.probes import expand_bundles

EPOCHS_AND_STEPS = (
    "epochs and steps: steps > 0 trains exactly that many steps and ignores epochs; steps = 0 trains "
    "epochs passes over the training split, epochs x (training examples // batch_size) steps (with "
    "full_batch one step per epoch). A run stops early only when every network diverged."
)


def _described(rows: list[tuple[str, object, str, str]], width: int) -> list[str]:
    """One line per ``(key, value, type, meaning)`` row (``key  value  type``), its meaning wrapped below it."""
    key_width = max((len(key) for key, *_rest in rows), default=0)
    lines = []
    for key, value, type_name, meaning in rows:
        lines.append(f"{key:<{key_width}}  {value!r:<28}  {type_name}")
        if meaning:
            lines += textwrap.wrap(meaning, max(40, width), initial_indent="    ", subsequent_indent="    ")
    return lines


def setting_lines(config: Config, width: int = 100) -> list[str]:
    """One line per flat setting (``key  value  type``), its meaning wrapped below it."""
    meanings = setting_meanings()
    return _described([(key, getattr(config, key), type_name, meanings.get(key, ""))
                       for key, type_name in allowed_keys().items()], width)


def probe_option_lines(config: Config, width: int = 100) -> list[str]:
    """The options of the config's probes (``<probe>.<option>  value  type``, the meaning below),
    after a heading saying how to set them."""
    rows = []
    for probe in expand_bundles(config.probes):
        types, meanings = probe_option_type_names(probe), probe_option_meanings(probe)
        rows += [(f"{probe}.{option}", value, types[option], meanings[option])
                 for option, value in probe_option_values(config, probe).items()]
    heading = ("probe options of this config's probes (--set <probe>.<option>=VALUE; the settings above that "
               "name several probes set theirs):")
    return [*textwrap.wrap(heading, max(40, width)), *(_described(rows, width) or ["  (none)"])]


def _listed(steps, limit: int = 8) -> str:
    """``0, 50, 100`` or ``0, 50, 100, ..., 350, 399`` for long lists."""
    if len(steps) <= limit:  # a range is sliced, never listed whole: a run can have millions of steps
        return ", ".join(str(int(s)) for s in steps)
    return (", ".join(str(int(s)) for s in steps[: limit - 2]) + ", ..., "
            + ", ".join(str(int(s)) for s in steps[-2:]))


def _eval_every(config: Config, dataset: Dataset) -> int:
    """The runner's evaluation interval: ``eval_every``, else one epoch (the whole run, full-batch)."""
    total = total_steps(config, dataset)
    return config.eval_every or (total if config.full_batch else batch_iterator(config, dataset).steps_per_epoch)


class _Evaluations(Sequence):
    """Step 0, every ``every`` steps, and the last step: the runner's evaluations, without a list."""

    def __init__(self, total: int, every: int):
        self.total, self.inner = total, range(every, total, every)

    def __len__(self) -> int:
        return len(self.inner) + 2

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = index + len(self) if index < 0 else index
        return 0 if index == 0 else self.total if index == len(self) - 1 else self.inner[index - 1]


def evaluation_steps(config: Config, dataset: Dataset) -> Sequence[int]:
    """The steps after which the runner evaluates: 0, every interval, and the last step."""
    return _Evaluations(total_steps(config, dataset), _eval_every(config, dataset))


def checkpoint_steps(config: Config, dataset: Dataset) -> range:
    """The steps at which the runner checkpoints (none at the end: a finished run has nothing to resume)."""
    every = config.checkpoint_every or _eval_every(config, dataset)
    return range(every, total_steps(config, dataset), every)


def resolved_lines(config: Config, dataset: Dataset) -> list[str]:
    """What the interacting settings come to for ``config`` on ``dataset``."""
    total = total_steps(config, dataset)
    batches = batch_iterator(config, dataset)
    if config.steps > 0:
        length = f"{total} steps (steps = {config.steps} > 0, so epochs = {config.epochs} is ignored)"
    elif config.full_batch:
        length = f"{total} steps (steps = 0: epochs = {config.epochs} full-batch steps)"
    else:
        length = (f"{total} steps (steps = 0: epochs = {config.epochs} x {batches.steps_per_epoch} steps per epoch "
                  f"of {batches.batch_size} of the {len(dataset.x_train)} training examples)")
    evaluations = evaluation_steps(config, dataset)
    checkpoints = checkpoint_steps(config, dataset)
    lines = [
        f"  run: {length}",
        f"  evaluations: {len(evaluations)} (steps {_listed(evaluations)})"
        + ("; eval_every = 0: once per epoch" if config.eval_every == 0 else ""),
        f"  checkpoints: {len(checkpoints)}" + (f" (steps {_listed(checkpoints)})" if checkpoints else "")
        + ("; checkpoint_every = 0: at every evaluation" if config.checkpoint_every == 0 else ""),
    ]
    if config.probe_budget > 0:
        lines.append(f"  probes: chosen at the start from each probe's measured cost (probe_budget = "
                     f"{config.probe_budget:g})")
    else:
        steps = measured_steps(config, total)
        how = (f"probe_points = {config.probe_points}, {config.probe_spacing}" if config.probe_points > 0
               else f"probe_every = {config.probe_every}")
        count = f"{len(steps)} measurement{'' if len(steps) == 1 else 's'}"
        lines.append(f"  probes: {count} ({how})" + (f": steps {_listed(steps)}" if steps else ""))
        note = probe_schedule_note(config, total)
        if note:
            lines.append(f"  note: {note}")
    return lines


def config_lines(config: Config, dataset: Dataset, *, heading: str = "", width: int = 100) -> list[str]:
    """Everything `normlab config` prints: ``heading``, the settings, what they resolve to here."""
    lines = [heading] if heading else []
    lines += setting_lines(config, width)
    lines += ["", *probe_option_lines(config, width)]
    lines += ["", f"for this config on {dataset.name}:", *resolved_lines(config, dataset), "",
              *textwrap.wrap(EPOCHS_AND_STEPS, max(40, width))]
    return lines
