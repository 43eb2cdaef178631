"""TensorBoard export, read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import numpy as np
import pytest
import report_synthetic as synthetic

from normlab.report.tensorboard import export_tensorboard, histogram_fields
from normlab.store import load_run

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator", reason="reading events back needs tensorboard"
)
pytest.importorskip("tensorboardX", reason="the export writes through tensorboardX")


@pytest.fixture(scope="module")
def exported(pair_run, tmp_path_factory):
    out = export_tensorboard(pair_run, tmp_path_factory.mktemp("tensorboard"))
    accumulators = {}
    for network in ("none", "batch"):
        accumulator = event_accumulator.EventAccumulator(
            str(out / network), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.HISTOGRAMS: 0}
        )
        accumulators[network] = accumulator.Reload()
    return out, accumulators


def test_every_metric_column_reads_back_with_its_steps_and_values(pair_run, exported):
    _out, accumulators = exported
    metrics = load_run(pair_run).metrics
    for network, accumulator in accumulators.items():
        rows = metrics[metrics.network == network]
        for column in synthetic.METRIC_COLUMNS:
            expected = rows[["step", column]].dropna()
            events = accumulator.Scalars(f"metrics/{column}")
            assert [e.step for e in events] == expected.step.tolist(), (network, column)
            np.testing.assert_allclose([e.value for e in events], expected[column].to_numpy(float), rtol=1e-6)


def test_probe_scalars_read_back(pair_run, exported):
    _out, accumulators = exported
    stored = load_run(pair_run).probe("activations", "batch")
    events = accumulators["batch"].Scalars(f"activations/{synthetic.LAYERS[1]}/std")
    assert [e.step for e in events] == stored["step"].tolist()
    np.testing.assert_allclose([e.value for e in events], stored[f"{synthetic.LAYERS[1]}.std"], rtol=1e-6)
    percentiles = accumulators["batch"].Scalars("activations/tracked/percentiles/p85")
    np.testing.assert_allclose([e.value for e in percentiles], stored["tracked.percentiles"][:, 2], rtol=1e-6)
    distance = accumulators["none"].Scalars("distance/total")
    assert [e.step for e in distance] == load_run(pair_run).probe("distance", "none")["step"].tolist()


def test_histograms_read_back_with_the_stored_counts_and_edges(pair_run, exported):
    _out, accumulators = exported
    run = load_run(pair_run)
    for probe, layer in (("activations", synthetic.LAYERS[0]), ("gradients", synthetic.WEIGHT_LAYERS[2])):
        stored = run.probe(probe, "none")
        edges = np.asarray(run.probe_meta(probe)["networks"]["none"]["edges"])
        events = accumulators["none"].Histograms(f"{probe}/{layer}/hist")
        assert [e.step for e in events] == stored["step"].tolist()
        for event, counts in zip(events, stored[f"{layer}.hist"]):
            histogram = event.histogram_value
            np.testing.assert_array_equal(histogram.bucket, counts)
            np.testing.assert_allclose(histogram.bucket_limit, edges[1:])
            assert histogram.num == counts.sum()
            filled = np.nonzero(counts)[0]
            assert histogram.min == pytest.approx(edges[filled[0]]) and histogram.max == pytest.approx(
                edges[filled[-1] + 1]
            )


def test_reexport_replaces_the_events(pair_run, exported):
    out, _ = exported
    export_tensorboard(pair_run, out)
    assert len(list((out / "none").glob("events.out.tfevents.*"))) == 1


def test_empty_histograms_are_skipped():
    assert histogram_fields(np.zeros(4), np.linspace(-1, 1, 5)) is None
    fields = histogram_fields(np.array([0, 2, 1, 0]), np.linspace(-2, 2, 5))
    assert fields["min"] == -1.0 and fields["max"] == 1.0 and fields["num"] == 3
    assert fields["sum"] == pytest.approx(2 * -0.5 + 1 * 0.5)


def test_tags_follow_the_probes_declared_shapes(tmp_path):
    """Per-layer vectors (ics, ("layers",)) become one series per layer, declared ("bins",) outputs
    histograms (bn_parameters' deviations too), declared per-unit vectors no scalars at all."""
    path = synthetic.make_run(tmp_path / "run", steps=20, probes=("ics", "bn_parameters"))
    run = load_run(path)
    out = export_tensorboard(path, tmp_path / "tensorboard")
    accumulator = event_accumulator.EventAccumulator(
        str(out / "batch"), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.HISTOGRAMS: 0}
    ).Reload()
    ics = run.probe("ics", "batch")
    for column, layer in enumerate(synthetic.WEIGHT_LAYERS):
        events = accumulator.Scalars(f"ics/l2/{layer}")
        assert [e.step for e in events] == ics["step"].tolist()
        np.testing.assert_allclose([e.value for e in events], ics["l2"][:, column], rtol=1e-6)
    np.testing.assert_allclose([e.value for e in accumulator.Scalars("ics/cosine_mean")], ics["cosine_mean"],
                               rtol=1e-6)
    bn = run.probe("bn_parameters", "batch")
    layer = synthetic.LAYERS[0]
    histograms = accumulator.Histograms(f"bn_parameters/{layer}/gamma_hist")
    for event, counts in zip(histograms, bn[f"{layer}.gamma_hist"]):
        np.testing.assert_array_equal(event.histogram_value.bucket, counts)
    tags = accumulator.Tags()
    assert f"bn_parameters/{layer}/gamma_std" in tags["scalars"]
    assert not [tag for tag in tags["scalars"] if tag.startswith(f"bn_parameters/{layer}/gamma/")]  # (units,)
