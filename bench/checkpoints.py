"""normlab's checkpoint format against orbax-checkpoint, for what normlab needs of checkpoints.

    python bench/checkpoints.py [--width 1.0] [--repeats 5]

On a VGG-with-batch-norm pair's state (parameters, running statistics, rng keys, Adam state;
``--width 1.0`` is the paper's 9.5M-parameter VGG) it checks, for both formats:

- exact resume: every restored leaf equal to the saved one, bit for bit;
- key-path fidelity for typed PRNG keys (``nnx.Rngs`` state): restored as keys of the same impl;
- keep-N: normlab's ``save_checkpoint(keep=2)``; orbax's ``CheckpointManager(max_to_keep=2)``;
- atomic replace: normlab writes a temp file and ``os.replace``; orbax writes a temp directory
  and renames it (both leave no half-written checkpoint visible under its final name);

and prints save and restore times (interleaved repeats, medians) and their ratio orbax/normlab.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, str(Path(__file__).parent))
from timing import interleaved_medians, print_table  # noqa: E402

from normlab.models import build_model
from normlab.store import RunStore
from normlab.train import make_network, make_optimizer


def vgg_states(width: float):
    tx, schedule = make_optimizer("adam", 1e-3, total_steps=10)
    states = []
    for norm in ("none", "batch"):
        model = build_model("vgg", input_shape=(32, 32, 3), num_classes=10, norm=norm, width=width,
                            rngs=nnx.Rngs(params=0, dropout=1, noise=2))
        states.append(make_network(norm, model, tx, schedule)[1])
    # one typed PRNG key leaf, as an nnx.Rngs stream in the model state holds
    return {"networks": tuple(states), "rng": jax.random.key(7)}


def exact(saved, restored) -> bool:
    a, b = jax.tree.leaves(saved), jax.tree.leaves(restored)
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            if not (jax.dtypes.issubdtype(y.dtype, jax.dtypes.prng_key)
                    and np.array_equal(jax.random.key_data(x), jax.random.key_data(y))):
                return False
        elif not np.array_equal(np.asarray(x), np.asarray(y)) or np.asarray(x).dtype != np.asarray(y).dtype:
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import orbax.checkpoint as ocp

    tree = vgg_states(args.width)
    params = sum(int(np.size(leaf)) for s in tree["networks"] for leaf in jax.tree.leaves(s.params))
    root = Path(tempfile.mkdtemp(prefix="normlab-ckpt-bench-"))
    store = RunStore.create(root / "run", config={}, provenance={}, metric_columns=["loss"])
    manager = ocp.CheckpointManager(root / "orbax", options=ocp.CheckpointManagerOptions(max_to_keep=2))
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
    counter = {"normlab": 0, "orbax": 0}

    def save_normlab():
        counter["normlab"] += 1
        store.save_checkpoint(counter["normlab"], tree, keep=2)

    def save_orbax():
        counter["orbax"] += 1
        manager.save(counter["orbax"], args=ocp.args.StandardSave(tree))
        manager.wait_until_finished()

    def restore_normlab():
        return jax.tree.map(jnp.asarray, store.restore_checkpoint(tree)[1])

    def restore_orbax():
        return manager.restore(manager.latest_step(), args=ocp.args.StandardRestore(abstract))

    saves = interleaved_medians({"normlab": save_normlab, "orbax": save_orbax}, repeats=args.repeats)
    restores = interleaved_medians({"normlab": restore_normlab, "orbax": restore_orbax}, repeats=args.repeats)
    kept = {"normlab": len(store.checkpoint_steps()), "orbax": len(manager.all_steps())}
    fidelity = {"normlab": exact(tree, restore_normlab()), "orbax": exact(tree, restore_orbax())}
    rows = [(name, f"{saves[name]:.3f}", f"{restores[name]:.3f}", kept[name], fidelity[name]) for name in saves]
    print_table(f"checkpoints of a VGG pair + Adam state, width {args.width} ({params:,} parameters)", rows,
                ("format", "save s", "restore s", "kept (keep 2)", "exact incl. PRNG keys"))
    print(f"\norbax/normlab: save {saves['orbax'] / saves['normlab']:.2f}x, "
          f"restore {restores['orbax'] / restores['normlab']:.2f}x")
    manager.close()
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
