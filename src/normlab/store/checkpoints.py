"""Checkpoints: any pytree of arrays (``nnx.State``, optax states, dicts) as msgpack.

The tree is flattened with ``jax.tree_util`` into ``{key path: numpy array}`` and encoded with
``flax.serialization.msgpack_serialize``. Restoring walks the *target* tree's key paths, so the
caller's tree structure (``nnx.State``, named tuples of optax) comes back exactly, and a
mismatched target fails with a message naming the first path that differs. (``flax``'s
``to_bytes`` cannot be used directly: ``nnx.State`` has no state-dict registration.)

Every checkpoint file is verifiable on its own: the msgpack payload (which also holds the SHA-256
of the ``extra`` JSON beside it) is followed by an 8-byte marker and the SHA-256 of the payload,
all written in one atomic replacement. :func:`damage` says why a file fails that check
(truncated, bytes changed, its extra changed or missing), so a resume can skip it and fall back
to an earlier checkpoint instead of continuing from garbage.

JAX and flax are imported inside the functions: a process that only writes metrics (or only
reads a run) should not pay for starting JAX.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from normlab.errors import NormlabError, fault_point
from normlab.store.files import encode_json, read_json, write_bytes_atomically
from normlab.store.layout import checkpoint_extra_name, checkpoint_name

CHECKPOINT_FORMAT = 2
CHECKSUM_MARKER = b"NLSHA256"  # then the 32-byte SHA-256 digest of everything before the marker
_TRAILER_SIZE = len(CHECKSUM_MARKER) + hashlib.sha256().digest_size


def encode_checkpoint(step: int, tree, extra_bytes: bytes = b"") -> bytes:
    """``tree`` (with its step and the SHA-256 of ``extra_bytes``) as msgpack bytes plus checksum."""
    import jax
    from flax import serialization

    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    arrays = {jax.tree_util.keystr(path): _as_numpy(leaf) for path, leaf in leaves}
    payload = serialization.msgpack_serialize({"format": CHECKPOINT_FORMAT, "step": step, "leaves": arrays,
                                               "extra_sha256": hashlib.sha256(extra_bytes).hexdigest()})
    return payload + CHECKSUM_MARKER + hashlib.sha256(payload).digest()


def verified_payload(data: bytes) -> bytes | None:
    """The payload of checkpoint bytes ``data`` if its trailing checksum matches, else None."""
    payload, trailer = data[:-_TRAILER_SIZE], data[-_TRAILER_SIZE:]
    if len(data) < _TRAILER_SIZE or not trailer.startswith(CHECKSUM_MARKER):
        return None
    return payload if hashlib.sha256(payload).digest() == trailer[len(CHECKSUM_MARKER):] else None


def damage(directory: Path, step: int) -> str | None:
    """Why checkpoint ``step`` in ``directory`` cannot be trusted, or None if it verifies."""
    from flax import serialization

    path = directory / checkpoint_name(step)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "missing"
    payload = verified_payload(data)
    if payload is None:
        return "checksum mismatch (truncated or changed)"
    extra_path = directory / checkpoint_extra_name(step)
    stored = serialization.msgpack_restore(payload)
    if not extra_path.is_file() or hashlib.sha256(extra_path.read_bytes()).hexdigest() != stored["extra_sha256"]:
        return f"its {extra_path.name} is missing or changed"
    return None


def decode_checkpoint(data: bytes, target_tree, *, source: Path, prefix: str = ""):
    """``(step, tree)`` from checkpoint bytes, shaped like ``target_tree`` (leaves: NumPy arrays).

    With a ``prefix`` (a key path such as ``"[0].params"``), only that part of the stored tree
    is read into ``target_tree``: one network's parameters out of a group's checkpoint.
    """
    import jax
    from flax import serialization

    payload = verified_payload(data)
    if payload is None:
        raise NormlabError(f"checkpoint {source} is damaged: checksum mismatch (truncated or changed)")
    stored = serialization.msgpack_restore(payload)
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
    extra_bytes = encode_json(extra or {})
    payload = encode_checkpoint(step, tree, extra_bytes)  # encode before touching files: a failure writes nothing
    write_bytes_atomically(directory / checkpoint_extra_name(step), extra_bytes)
    fault_point("checkpoint")
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
