"""Segment values that look like separators never merge two slices (bounded run)."""

from __future__ import annotations

from tests.harness import H, labels, latest, predictions, run_bounded


def test_a_value_with_separators_does_not_merge_into_a_cross_slice(tmp_path):
    # a: region eu, model v1, error 1 -> cross slice region=eu,model_version=v1
    # b: region "eu,model_version=v1", error 10 -> its own region slice. Before the
    # names were escaped both landed in "region=eu,model_version=v1": 2 predictions,
    # mse (1 + 100) / 2 = 50.5. The truth: 1 prediction, mse 1.0.
    preds = predictions(
        [
            {"id": "a", "t": 0, "y": 1.0, "mv": "v1", "region": "eu"},
            {"id": "b", "t": 0, "y": 10.0, "mv": "v2", "region": "eu,model_version=v1"},
        ],
        segment_keys=("region",),
    )
    labs = labels([{"id": "a", "t": 60_000, "y": 0.0}, {"id": "b", "t": 60_000, "y": 0.0}])
    metrics, outcomes = run_bounded(
        preds, labs, tmp_path, slices=("region", "region,model_version"), ttl_ms=H
    )
    rows = latest(metrics).set_index("slice")
    cross = rows.loc["region=eu,model_version=v1"]
    assert (cross.predictions, cross.mse) == (1, 1.0)
    hostile = rows.loc["region=eu%2Cmodel_version%3Dv1"]
    assert (hostile.predictions, hostile.mse) == (1, 100.0)
    assert outcomes["prediction"]["joined"] == 2
