"""Building a run: the group of networks (one seed, identical shared weights) and its probes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import jax
import numpy as np
from flax import nnx

from normlab.data import BatchIterator, Dataset, load_dataset
from normlab.errors import NormlabError
from normlab.experiments.checks import check_against_data
from normlab.experiments.config import SHARED_PROBE_SETTINGS, Config, probe_option_values, shared_probe_fields
from normlab.models import build_model, model_names, model_options
from normlab.norms import norm_options as accepted_norm_options
from normlab.probes import at_steps, every, expand_bundles, make_probe, spaced_steps
from normlab.train import NetworkSpec, NetworkState, make_network, make_optimizer


def load_config_dataset(config: Config) -> Dataset:
    """The run's dataset; with ``train_subset`` > 0 only its first N training examples (C21 trains
    full-batch on a small subset)."""
    dataset = load_dataset(config.dataset, normalize=config.input_normalization or None)
    if config.train_subset <= 0:
        return dataset
    if config.train_subset > len(dataset.x_train):
        raise NormlabError(f"setting 'train_subset' must be at most the {len(dataset.x_train)} training examples of "
                           f"{config.dataset}; got {config.train_subset}")
    n = config.train_subset
    return replace(dataset, x_train=dataset.x_train[:n], y_train=dataset.y_train[:n])


def total_steps(config: Config, dataset: Dataset) -> int:
    """Steps of the run: ``steps`` if set, else ``epochs`` passes over the training split."""
    if config.steps > 0:
        return config.steps
    if config.full_batch:
        return config.epochs
    return config.epochs * batch_iterator(config, dataset).steps_per_epoch


def batch_iterator(config: Config, dataset: Dataset) -> BatchIterator:
    n = len(dataset.x_train)
    batch_size = n if config.full_batch else min(config.batch_size, n)
    return BatchIterator(n, batch_size, seed=config.data_seed, shuffle=not config.full_batch, drop_last=True)


def norm_options(config: Config, norm: str) -> dict:
    """The running-statistics settings of ``config``, for the norms that keep running statistics."""
    wanted = {"momentum": config.bn_momentum, "running_var": config.bn_running_var}
    accepted = accepted_norm_options(norm)
    return {key: value for key, value in wanted.items() if key in accepted}


def build_network_model(config: Config, dataset: Dataset, norm: str) -> nnx.Module:
    """One network of the group; the same seed for every network (the pairing)."""
    rngs = nnx.Rngs(params=config.seed, dropout=config.seed + 1, noise=config.seed + 2)
    options: dict[str, Any] = dict(
        input_shape=dataset.input_shape,
        num_classes=dataset.num_classes,
        norm=norm,
        norm_options=norm_options(config, norm),
        rngs=rngs,
        width=config.width,
        bias_before_norm=config.bias_before_norm,
        bias_removed_from=config.bias_removed_from,
        norm_exclude=config.norm_exclude,
        norm_position=config.norm_position,
        dropout=config.dropout,
        conv_path=config.conv_path,
    )
    if config.activation:
        options["activation"] = config.activation
    options.update(model_settings(config))
    return build_model(config.model, **options)


# Settings that reach a model-specific option (``models.model_options``) when not 0, i.e. when
# they do not ask for the model's own default: setting -> option.
MODEL_OPTION_SETTINGS = {"init_std": "init_std", "depth": "depth"}


def model_settings(config: Config) -> dict[str, Any]:
    """The model options ``config`` sets (``MODEL_OPTION_SETTINGS``); a setting given for a model
    without that option is a one-line error naming the models that have it."""
    accepted = model_options(config.model)
    chosen = {}
    for setting, option in MODEL_OPTION_SETTINGS.items():
        value = getattr(config, setting)
        if not value:
            continue
        if option not in accepted:
            having = ", ".join(name for name in model_names() if option in model_options(name))
            raise NormlabError(f"setting {setting!r} applies only to the models with that option ({having}); "
                               f"model {config.model!r} has none (leave it 0)")
        chosen[option] = value
    return chosen


def prepare(config: Config) -> tuple[Dataset, tuple[NetworkSpec, ...], tuple[NetworkState, ...]]:
    """Load the dataset and build the group, checking every setting against both (nothing written)."""
    dataset = load_config_dataset(config)
    specs, states = build_group(config, dataset)
    check_against_data(config, dataset, specs, states)
    return dataset, specs, states


def build_group(config: Config, dataset: Dataset) -> tuple[tuple[NetworkSpec, ...], tuple[NetworkState, ...]]:
    steps = total_steps(config, dataset)
    specs, states = [], []
    for norm in config.networks:
        model = build_network_model(config, dataset, norm)
        tx, schedule = build_optimizer(config, steps)
        spec, state = make_network(norm, model, tx, schedule, task=dataset.task)
        specs.append(spec)
        states.append(state)
    return tuple(specs), tuple(states)


def build_optimizer(config: Config, steps: int, lr=None):
    """``(tx, schedule)`` of every network of ``config``'s group over ``steps`` steps; ``lr``
    (default ``config.lr``) may be a traced number: sweep members that differ only in their
    learning rate train in one vmapped step (``experiments.vectorized``)."""
    return make_optimizer(
        config.optimizer,
        config.lr if lr is None else lr,
        total_steps=steps,
        momentum=config.momentum,
        schedule=config.lr_schedule,
        weight_decay=config.weight_decay,
    )


def parameter_count(state: NetworkState) -> int:
    """Trainable parameters (``nnx.Param`` entries) of a network."""
    return int(sum(np.size(leaf) for leaf in jax.tree.leaves(state.params)))


def measured_steps(config: Config, total_steps: int) -> Sequence[int]:
    """The steps at which the run's probes measure: the one place that decides it.

    ``probe_points`` > 0: that many steps spread over the run, step 0 and the last step among them
    (``normlab.probes.spaced_steps``, ``probe_spacing`` linear or log); else every ``probe_every``
    steps from step 0 (none for 0). Two kinds of probe measure elsewhere: under ``probe_budget``
    the runner chooses each probe's steps from its measured cost (``probes.budget``), and the
    divergence probe (B18) measures at its fixed ``divergence_steps``. A ``range`` for
    ``probe_every``: a long run measured every step is never listed step by step.
    """
    if config.probe_points > 0:
        return spaced_steps(total_steps, config.probe_points, config.probe_spacing)
    return range(0, total_steps, config.probe_every) if config.probe_every > 0 else ()


def probe_settings(config: Config, name: str, total_steps: int | None = None) -> dict:
    """The fields of probe ``name`` from ``config``: its schedule (the steps of ``measured_steps``;
    ``total_steps`` is needed with ``probe_points``; divergence (B18) at ``divergence_steps``), the
    fields the flat ``SHARED_PROBE_SETTINGS`` set, and its own options ``<name>.<option>``."""
    if name == "divergence":
        options = {"schedule": at_steps(*config.divergence_steps)}
    elif config.probe_points > 0:
        if total_steps is None:
            raise ValueError("a schedule of probe_points needs the run's total_steps")
        options = {"schedule": at_steps(*measured_steps(config, total_steps))}
    else:  # measured_steps' range(0, T, probe_every), as a rule rather than a list of steps
        options = {"schedule": every(config.probe_every)}
    for field, setting in shared_probe_fields(name).items():
        (_probes, targets) = SHARED_PROBE_SETTINGS[setting]
        value = getattr(config, setting)
        options[field] = value[targets.index(field)] if isinstance(targets, tuple) else value
    return options | probe_option_values(config, name)


def build_probes(config: Config, total_steps: int | None = None) -> tuple:
    """The probe bundle of ``config``; bundle names (cheap, standard, full) expand to their members.
    ``total_steps`` (the run's length) is needed when ``config.probe_points`` > 0."""
    return tuple(make_probe(name, **probe_settings(config, name, total_steps))
                 for name in expand_bundles(config.probes))
