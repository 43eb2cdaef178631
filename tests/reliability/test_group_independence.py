"""A network's trajectory does not depend on which networks share its group (bit-identical on CPU)."""

from __future__ import annotations

import pandas as pd
import pytest

from normlab.experiments import apply_overrides, get_preset, run_experiment
from normlab.store import load_run

GROUPS = ("batch", "none,batch", "none,batch,noisy")
MODELS = {
    "mlp": ("quickstart", ["dataset=synthetic", "model=mlp", "width=0.25", "batch_size=32"]),
    # the setting in which the fused group step gave the BN network another loss from step 4 on
    "vgg": ("santurkar_vgg", ["dataset=synthetic_cifar", "width=0.0625", "batch_size=16"]),
}


def batch_network_rows(tmp_path, model: str, networks: str, group_step: str) -> pd.DataFrame:
    preset, settings = MODELS[model]
    config = apply_overrides(get_preset(preset).config, settings + [
        f"networks={networks}", f"group_step={group_step}", "steps=10", "eval_every=5", "log_every=5",
        "probes=activations", "probe_every=5", "train_eval_size=32", "report=false"])
    path = run_experiment(config, run_dir=tmp_path / f"{model}-{networks}-{group_step}", quiet=True).path
    run = load_run(path)
    rows = run.metrics[run.metrics.network == "batch"].reset_index(drop=True)
    hist = run.probe("activations", "batch")
    return rows, hist


@pytest.mark.parametrize("model", MODELS)
def test_a_network_trains_bit_identically_alone_and_in_groups_of_two_and_three(tmp_path, model):
    alone_rows, alone_hist = batch_network_rows(tmp_path, model, GROUPS[0], "isolated")
    for networks in GROUPS[1:]:
        rows, hist = batch_network_rows(tmp_path, model, networks, "isolated")
        pd.testing.assert_frame_equal(alone_rows, rows, check_exact=True, obj=f"batch alone vs in {networks}")
        for key in alone_hist:
            assert (alone_hist[key] == hist[key]).all(), key
