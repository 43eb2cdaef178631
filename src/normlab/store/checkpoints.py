"""Checkpoints: any pytree of arrays (``nnx.State``, optax states, dicts) as msgpack.

The tree is flattened with ``jax.tree_util`` into ``{key path: numpy array}`` and encoded with
``flax.serialization.msgpack_serialize``. Restoring walks the *target* tree's key paths, so the
caller's tree structure (``nnx.State``, named tuples of optax) comes back exactly, and a
mismatched target fails with a message naming the first path that differs. (``flax``'s
``to_bytes`` cannot be used directly: ``nnx.State`` has no state-dict registration.)

JAX and flax are imported inside the functions: a process that only writes metrics (or only
reads a run) should not pay for starting JAX.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from normlab.errors import NormlabError
from normlab.store.files import encode_json, read_json, write_bytes_atomically
from normlab.store.layout import checkpoint_extra_name, checkpoint_name

CHECKPOINT_FORMAT = 1


def encode_checkpoint(step: int, tree) -> bytes:
    """``tree`` (with its step) as msgpack bytes."""
    import jax
    from flax import serialization

    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    arrays = {jax.tree_util.keystr(path): _as_numpy(leaf) for path, leaf in leaves}
    return serialization.msgpack_serialize({"format": CHECKPOINT_FORMAT, "step": step, "leaves": arrays})


def decode_checkpoint(data: bytes, target_tree, *, source: Path, prefix: str = ""):
    """``(step, tree)`` from checkpoint bytes, shaped like ``target_tree`` (leaves: NumPy arrays).

    With a ``prefix`` (a key path such as ``"[0].params"``), only that part of the stored tree
    is read into ``target_tree``: one network's parameters out of a group's checkpoint.
    """
    import jax
    from flax import serialization

    stored = serialization.msgpack_restore(data)
    arrays = stored["leaves"]
    target_leaves, treedef = jax.tree_util.tree_flatten_with_path(target_tree)
    restored = [
        _restored_leaf(arrays, prefix + jax.tree_util.keystr(path), leaf, source) for path, leaf in target_leaves
    ]
    unused = len(arrays) - len(target_leaves)
    if unused and not prefix:
        raise NormlabError(f"checkpoint {source} holds {unused} more array(s) than the target tree")
    return int(stored["step"]), jax.tree_util.tree_unflatten(treedef, restored)


def save(directory: Path, step: int, tree, extra: dict | None) -> None:
    """Write checkpoint ``step`` and its ``extra`` dict, each atomically.

    The ``extra`` file goes first: a checkpoint exists once its ``.msgpack`` exists, and then its
    ``extra`` is already there.
    """
    directory.mkdir(parents=True, exist_ok=True)
    payload = encode_checkpoint(step, tree)  # encode before touching files: a failure writes nothing
    write_bytes_atomically(directory / checkpoint_extra_name(step), encode_json(extra or {}))
    write_bytes_atomically(directory / checkpoint_name(step), payload)


def load_extra(directory: Path, step: int) -> dict:
    """The ``extra`` dict saved with checkpoint ``step`` (empty if there is none)."""
    path = directory / checkpoint_extra_name(step)
    return read_json(path) if path.is_file() else {}


def delete(directory: Path, step: int) -> None:
    """Remove checkpoint ``step``: the checkpoint first, so no checkpoint loses its ``extra``."""
    (directory / checkpoint_name(step)).unlink(missing_ok=True)
    (directory / checkpoint_extra_name(step)).unlink(missing_ok=True)


def _is_prng_key(leaf) -> bool:
    """Whether ``leaf`` is a typed JAX PRNG key array (``jax.random.key``, ``nnx.Rngs`` state)."""
    import jax

    return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _as_numpy(leaf) -> np.ndarray:
    """A host copy of ``leaf``; typed PRNG keys are stored as their raw key data."""
    import jax

    if _is_prng_key(leaf):
        leaf = jax.random.key_data(leaf)
    return np.asarray(leaf)


def _restored_leaf(arrays: dict, key: str, target_leaf, source: Path):
    """The stored array for ``key``, checked against the target leaf's shape and dtype."""
    import jax

    if key not in arrays:
        raise NormlabError(f"checkpoint {source} has no array {key}; was it saved from another model?")
    value = np.array(arrays[key])  # msgpack gives read-only views of its buffer
    if _is_prng_key(target_leaf):
        return jax.random.wrap_key_data(jax.numpy.asarray(value), impl=jax.random.key_impl(target_leaf))
    expected_shape = np.shape(target_leaf)
    if value.shape != expected_shape:
        raise NormlabError(f"checkpoint {source}: {key} has shape {value.shape}, the target {expected_shape}")
    if isinstance(target_leaf, int | float | bool | complex):
        return value.item()  # a Python scalar leaf comes back as one
    expected_dtype = target_leaf.dtype if hasattr(target_leaf, "dtype") else np.asarray(target_leaf).dtype
    if value.dtype != expected_dtype:
        raise NormlabError(f"checkpoint {source}: {key} has dtype {value.dtype}, the target {expected_dtype}")
    return value
