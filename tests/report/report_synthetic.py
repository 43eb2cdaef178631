"""Tiny synthetic run directories for the report tests, written through the store API only.

The arrays have the shapes and names the probes document (see ``normlab.probes.*``), with values
shaped like the real thing: the baseline's activations drift and spread, BN's stay put; gradients
are heavy tailed; the loss falls. Nothing here imports JAX, so the report tests stay fast.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from normlab.store import RunStore
from normlab.store.probes import as_arrays

METRIC_COLUMNS = ["loss", "accuracy", "lr", "test_loss", "test_accuracy", "train_eval_loss", "train_eval_accuracy"]
LAYERS = ("dense0", "dense1", "dense2")
WEIGHT_LAYERS = ("dense0", "dense1", "dense2", "dense3")
BINS = 24
RANGE = 6.0


def _separator() -> str:
    """The separator between layer and statistic the store accepts ("." as the probes document)."""
    try:
        as_arrays({"layer.stat": np.zeros(1)})
        return "."
    except ValueError:
        return "__"


SEP = _separator()


def key(layer: str, stat: str) -> str:
    return f"{layer}{SEP}{stat}"


def gradient_edges() -> np.ndarray:
    """The gradients probe's bins: +-logspace(-8, 1) (3 per decade) and 0."""
    positive = np.logspace(-8, 1, 28)
    return np.concatenate([-positive[::-1], [0.0], positive])


def default_config(**changes) -> dict:
    config = {
        "preset": "quickstart", "dataset": "digits", "model": "mlp", "networks": ["none", "batch"],
        "optimizer": "adam", "lr": 0.001, "batch_size": 32, "epochs": 1, "steps": 0, "seed": 0,
        "data_seed": 0, "probes": ["activations", "gradients", "distance"], "probe_every": 10,
        "activations.bins": BINS, "activations.value_range": RANGE, "report": True,
    }
    config.update(changes)
    return config


def make_run(path: Path, *, steps: int = 40, probe_every: int = 10, eval_every: int = 20,
             networks=("none", "batch"), probes=("activations", "gradients", "distance"),
             diverge: dict | None = None, status: str = "completed", seed: int = 0,
             config_changes: dict | None = None, info: dict | None = None, quality: float = 0.0,
             start: bool = False) -> Path:
    """Write a synthetic run of ``steps`` steps to ``path`` and return ``path``.

    ``diverge`` maps a network to the step at which its loss becomes NaN (it then stops, as the
    runner does). ``quality`` shifts every accuracy up (sweep tests use it as the effect).
    """
    diverge = dict(diverge or {})
    config = default_config(networks=list(networks), probes=list(probes), probe_every=probe_every,
                            steps=steps, seed=seed, **(config_changes or {}))
    store = RunStore.create(path, config=config, provenance=_provenance(seed), metric_columns=METRIC_COLUMNS)
    rng = np.random.default_rng(seed)
    _write_metrics(store, rng, steps, eval_every, networks, diverge, quality)
    for probe in probes:  # "landscape" writes the three S18 Fig. 4 probes together
        _PROBE_WRITERS[probe](store, rng, steps, probe_every, networks, diverge)
    if start:
        write_start(store, networks, seed)
    store.flush()
    extra = {"diverged": diverge, "steps_done": steps, "train_seconds": 12.5}
    store.set_status(status, **extra, **(info or {}))
    return path


def write_start(store, networks, seed: int = 0, *, num_train: int = 200, num_test: int = 50,
                differ: str | None = None) -> None:
    """The runner's ``start/`` views for a 4x4 image dataset and an MLP per network: shared kernels
    and biases identical in every network (one fingerprint), a norm scale/bias per hidden layer for
    the networks other than "none". ``differ`` names a kernel made different in the last network."""
    from normlab.store.layout import START_DATA_FILE, START_META_FILE, START_WEIGHTS_FILE

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 17, size=(num_train, 4, 4, 1)).astype(np.float32)
    normalized = (images - images.mean()) / images.std()
    indices = np.arange(5)
    data = {"examples.images": images[indices], "examples.labels": np.arange(5, dtype=np.int32)}
    for which, values in (("raw", images), ("normalized", normalized)):
        counts, edges = np.histogram(values, bins=10)
        data[f"inputs.{which}.counts"], data[f"inputs.{which}.edges"] = counts, edges
    shapes = {f"{layer}.kernel": (16 if i == 0 else 8, 8 if i < 3 else 10) for i, layer in enumerate(WEIGHT_LAYERS)}
    shapes |= {f"{layer}.bias": (8 if i < 3 else 10,) for i, layer in enumerate(WEIGHT_LAYERS)}
    shared = {
        name: (rng.normal(0, 0.3, shape) if name.endswith("kernel") else np.zeros(shape))
        for name, shape in shapes.items()
    }
    meta_networks, weights = {}, {}
    for index, network in enumerate(networks):
        values = dict(shared)
        if differ and index == len(networks) - 1:
            values[differ] = values[differ] + 1.0
        if network != "none":
            for layer in WEIGHT_LAYERS[:3]:
                values[f"{layer}.norm_scale"], values[f"{layer}.norm_bias"] = np.ones(8), np.zeros(8)
        meta_networks[network] = {}
        for name, value in values.items():
            meta_networks[network][name] = {
                "layer": name.split(".")[0],
                "norm": ".norm_" in name,
                "shape": list(value.shape),
                "size": int(value.size),
                "sha256": hashlib.sha256(np.float32(value).tobytes()).hexdigest(),
                "min": float(value.min()),
                "max": float(value.max()),
                "mean": float(value.mean()),
                "std": float(value.std()),
            }
            low, high = (float(value.min()) - 0.5, float(value.max()) + 0.5)
            counts, edges = np.histogram(value, bins=12, range=(low, high))
            weights[f"{network}.{name}.counts"], weights[f"{name}.edges"] = counts, edges
    store.write_arrays(START_DATA_FILE, data)
    store.write_arrays(START_WEIGHTS_FILE, weights)
    store.write_json(START_META_FILE, {"format": 1, "networks": meta_networks, "data": {
        "dataset": "synthetic", "task": "classification", "num_train": num_train, "num_test": num_test,
        "input_shape": [4, 4, 1], "num_classes": 10, "normalization": "standard", "raw_available": True,
        "example_indices": indices.tolist(), "histogram_examples": num_train}})


def _provenance(seed: int) -> dict:
    return {
        "normlab_version": "0.1.0", "versions": {"jax": "0.10.2", "python": "3.12"}, "platform": "Linux",
        "git": {"revision": "0123456789abcdef", "dirty": False}, "hostname": "test",
        "command": ["normlab", "run"], "seeds": {"seed": seed, "data_seed": 0},
    }


def _alive(network: str, step: int, diverge: dict) -> bool:
    return network not in diverge or step <= diverge[network]


def _write_metrics(store, rng, steps, eval_every, networks, diverge, quality) -> None:
    rows = []
    for index, network in enumerate(networks):
        speed = 1.0 + index  # later networks (BN) learn faster
        for step in range(steps):
            if not _alive(network, step, diverge):
                break
            loss = 2.3 * np.exp(-speed * step / steps) + 0.05 * rng.random()
            if network in diverge and step == diverge[network]:
                loss = float("nan")
            accuracy = min(1.0, 0.1 + 0.8 * (1 - np.exp(-speed * step / steps)) + quality + 0.05 * rng.random())
            rows.append({"step": step, "network": network, "loss": loss, "accuracy": accuracy, "lr": 0.001})
        for step in [*range(0, steps, eval_every), steps]:
            if network in diverge and step >= diverge[network]:
                break
            fraction = 1 - np.exp(-speed * step / steps)
            rows.append({
                "step": step, "network": network, "test_loss": 2.3 - 1.5 * fraction,
                "test_accuracy": min(1.0, 0.1 + 0.75 * fraction + quality),
                "train_eval_loss": 2.3 - 1.7 * fraction,
                "train_eval_accuracy": min(1.0, 0.1 + 0.8 * fraction + quality),
            })
    store.append_metrics(rows)


def _probe_steps(steps, probe_every, network, diverge):
    return [s for s in range(0, steps, probe_every) if _alive(network, s, diverge)]


def _write_activations(store, rng, steps, probe_every, networks, diverge) -> None:
    edges = np.linspace(-RANGE, RANGE, BINS + 1)
    meta = {"available": True, "bn_mode": "train", "layers": list(LAYERS), "edges": edges.tolist(),
            "tracked_layer": LAYERS[-1], "tracked_unit": 0, "percentiles": [15.0, 50.0, 85.0]}
    store.set_probe_meta("activations", {"networks": {n: meta for n in networks}})
    for network in networks:
        normalized = network != "none"
        for step in _probe_steps(steps, probe_every, network, diverge):
            arrays = {}
            for depth, layer in enumerate(LAYERS):
                drift = 0.0 if normalized else 0.04 * step * (depth + 1)
                spread = 1.0 if normalized else 1.0 + 0.03 * step
                values = rng.normal(drift, spread, size=(64, 8))
                counts, _ = np.histogram(values, bins=edges)
                arrays[key(layer, "hist")] = counts.astype(np.int32)
                arrays[key(layer, "outside")] = np.int32(np.sum(np.abs(values) > RANGE))
                arrays[key(layer, "mean")] = np.float32(values.mean())
                arrays[key(layer, "std")] = np.float32(values.std())
                arrays[key(layer, "var")] = np.float32(values.var())
                arrays[key(layer, "sq_mean")] = np.float32(np.mean(values**2))
                arrays[key(layer, "unit_mean")] = values.mean(axis=0).astype(np.float32)
                arrays[key(layer, "unit_std")] = values.std(axis=0).astype(np.float32)
            tracked = rng.normal(0.0 if normalized else 0.05 * step, 1.0, size=64)
            arrays["tracked.percentiles" if SEP == "." else "tracked__percentiles"] = np.percentile(
                tracked, [15, 50, 85]).astype(np.float32)
            store.append_probe("activations", network, step, arrays)


def _write_gradients(store, rng, steps, probe_every, networks, diverge) -> None:
    edges = gradient_edges()
    meta = {"available": True, "bn_mode": "train", "layers": list(WEIGHT_LAYERS), "edges": edges.tolist(),
            "tracked_layer": WEIGHT_LAYERS[-1], "tracked_index": 0}
    store.set_probe_meta("gradients", {"networks": {n: meta for n in networks}})
    for index, network in enumerate(networks):
        for step in _probe_steps(steps, probe_every, network, diverge):
            arrays = {}
            for layer in WEIGHT_LAYERS:
                grad = rng.standard_t(3, size=500) * 1e-3 / (1 + index) * np.exp(-step / steps)
                counts, _ = np.histogram(grad, bins=edges)
                arrays[key(layer, "mean")] = np.float32(grad.mean())
                arrays[key(layer, "std")] = np.float32(grad.std())
                arrays[key(layer, "norm")] = np.float32(np.linalg.norm(grad))
                arrays[key(layer, "hist")] = counts.astype(np.int32)
            arrays["tracked"] = np.float32(rng.normal(0, 1e-3 / (1 + index)))
            store.append_probe("gradients", network, step, arrays)


def _write_distance(store, rng, steps, probe_every, networks, diverge) -> None:
    meta = {"available": True, "bn_mode": "none", "layers": list(WEIGHT_LAYERS)}
    store.set_probe_meta("distance", {"networks": {n: meta for n in networks}})
    for index, network in enumerate(networks):
        for step in _probe_steps(steps, probe_every, network, diverge):
            arrays = {layer: np.float32(np.sqrt(step) * (depth + 1) / (1 + index))
                      for depth, layer in enumerate(WEIGHT_LAYERS)}
            arrays["total"] = np.float32(np.sqrt(sum(float(v) ** 2 for v in arrays.values())))
            store.append_probe("distance", network, step, arrays)


def _write_bn_parameters(store, rng, steps, probe_every, networks, diverge) -> None:
    """bn_parameters (normlab.probes.bn_parameters): per hidden layer gamma/beta (units,), their
    histograms of the deviation from 1 and 0 over shared edges, moments; gamma spreads with time."""
    edges = np.linspace(-1.0, 1.0, 11)
    normed = [network for network in networks if network != "none"]
    meta = {"available": True, "bn_mode": "none", "layers": list(LAYERS), "edges": edges.tolist(),
            "factors": {layer: {"gamma": "trained", "beta": "trained"} for layer in LAYERS}}
    store.set_probe_meta("bn_parameters", {"networks": {n: meta if n in normed else
                                                        {"available": False, "reason": "no gamma or beta"}
                                                        for n in networks}})
    for network in normed:
        for step in _probe_steps(steps, probe_every, network, diverge):
            arrays = {}
            for layer in LAYERS:
                spread = step / max(steps, 1)
                for factor, default in (("gamma", 1.0), ("beta", 0.0)):
                    values = (default + spread * rng.normal(0, 0.3, 8)).astype(np.float32)
                    deviation = values - default
                    arrays[f"{layer}.{factor}"] = values
                    arrays[f"{layer}.{factor}_hist"] = np.histogram(deviation, bins=edges)[0].astype(np.int32)
                    arrays[f"{layer}.{factor}_outside"] = np.int32(np.sum(np.abs(deviation) > 1))
                    arrays[f"{layer}.{factor}_mean"] = np.float32(values.mean())
                    arrays[f"{layer}.{factor}_std"] = np.float32(values.std())
                    arrays[f"{layer}.{factor}_dev"] = np.float32(np.abs(deviation).mean())
            store.append_probe("bn_parameters", network, step, arrays)


def _write_ics(store, rng, steps, probe_every, networks, diverge) -> None:
    """S18 ICS: (layers,) vectors l2, cosine, grad_norm, shifted_grad_norm and cosine_mean."""
    meta = {"available": True, "bn_mode": "train", "layers": list(WEIGHT_LAYERS)}
    store.set_probe_meta("ics", {"networks": {n: meta for n in networks}})
    k = len(WEIGHT_LAYERS)
    for network in networks:
        for step in _probe_steps(steps, probe_every, network, diverge):
            grad_norm = rng.uniform(0.5, 1.5, k).astype(np.float32)
            l2 = (grad_norm * rng.uniform(0.05, 0.5, k)).astype(np.float32)
            l2[0] = 0.0  # nothing precedes the first layer
            cosine = rng.uniform(0.5, 1.0, k).astype(np.float32)
            cosine[0] = 1.0
            store.append_probe("ics", network, step, {
                "l2": l2, "cosine": cosine, "grad_norm": grad_norm, "shifted_grad_norm": grad_norm,
                "cosine_mean": np.float32(cosine[1:].mean()),
            })


def _walk_meta(multipliers, unit: str) -> dict:
    return {"available": True, "bn_mode": "train", "layers": list(WEIGHT_LAYERS), "step_sizes": list(multipliers),
            "step_size_unit": unit, "spacing": "linear"}


def _write_walk_probes(store, rng, steps, probe_every, networks, diverge) -> None:
    """landscape, predictiveness, beta_smoothness (S18 Fig. 4): K = 4 step sizes, 0.5..4 x lr."""
    multipliers = np.linspace(0.5, 4.0, 4)
    for name in ("landscape", "predictiveness", "beta_smoothness"):
        store.set_probe_meta(name, {"networks": {n: _walk_meta(multipliers, "x learning rate") for n in networks}})
    for index, network in enumerate(networks):
        roughness = 1.0 / (1 + 3 * index)  # BN: a smoother landscape
        for step in _probe_steps(steps, probe_every, network, diverge):
            etas = (multipliers * 1e-3).astype(np.float32)
            loss = (2.0 * np.exp(-step / steps) * (1 + roughness * rng.uniform(0, 2, 4))).astype(np.float32)
            distance = (roughness * rng.uniform(0.1, 1.0, 4)).astype(np.float32)
            ratio = (distance / (etas * 1.3)).astype(np.float32)
            store.append_probe("landscape", network, step, {
                "loss": loss, "min": loss.min(), "max": loss.max(), "spread": loss.max() - loss.min(),
                "loss0": np.float32(loss[0]), "etas": etas})
            store.append_probe("predictiveness", network, step, {
                "distance": distance, "min": distance.min(), "max": distance.max(),
                "grad_norm": np.float32(1.3), "etas": etas})
            store.append_probe("beta_smoothness", network, step, {"beta": ratio.max(), "ratio": ratio, "etas": etas})


def _write_divergence(store, rng, steps, probe_every, networks, diverge) -> None:
    """B18 divergence: relative loss at 5 absolute step sizes 1e-5..1e-1, at steps 0..2."""
    etas = np.geomspace(1e-5, 1e-1, 5).astype(np.float32)
    store.set_probe_meta("divergence", {"networks": {n: _walk_meta(etas, "absolute") for n in networks}})
    for index, network in enumerate(networks):
        for step in range(3):
            ratio = (1 + (etas / 1e-3) ** (2 - index) * rng.uniform(0.5, 1.5)).astype(np.float32)
            store.append_probe("divergence", network, step, {
                "ratio": ratio, "loss": 2.3 * ratio, "loss0": np.float32(2.3), "max_ratio": ratio.max(), "etas": etas})


_PROBE_WRITERS = {
    "activations": _write_activations,
    "gradients": _write_gradients,
    "distance": _write_distance,
    "bn_parameters": _write_bn_parameters,
    "ics": _write_ics,
    "landscape": _write_walk_probes,
    "divergence": _write_divergence,
}
