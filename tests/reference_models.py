"""Small models written in the tests, following normlab's model contract (a user's own model)."""

from __future__ import annotations

import jax
from flax import nnx


class TinyMLP(nnx.Module):
    """4 -> 6 -> 5 -> 3 with an optional BatchNorm after each hidden Dense (flax's own BN).

    Follows the model contract: ``__call__(x, *, train)``, ``weight_layers``, sown
    ``activations`` named by ``activation_names``.
    """

    def __init__(self, *, batch_norm: bool, rngs: nnx.Rngs, inputs: int = 4, outputs: int = 3):
        self.dense0 = nnx.Linear(inputs, 6, rngs=rngs)
        self.dense1 = nnx.Linear(6, 5, rngs=rngs)
        self.dense2 = nnx.Linear(5, outputs, rngs=rngs)
        self.norms = nnx.List([nnx.BatchNorm(6, rngs=rngs), nnx.BatchNorm(5, rngs=rngs)] if batch_norm else [])
        self.activation_names = ("dense0", "dense1")

    @property
    def weight_layers(self):
        return [self.dense0, self.dense1, self.dense2]

    def __call__(self, x, *, train: bool):
        h = x.reshape(x.shape[0], -1)
        for i, layer in enumerate((self.dense0, self.dense1)):
            h = layer(h)
            if len(self.norms):
                h = self.norms[i](h, use_running_average=not train)
            self.sow(nnx.Intermediate, "activations", h)
            h = jax.nn.relu(h)
        return self.dense2(h)
