"""feature_drift inside the pipeline, bounded and replayed, from the predictions' features.

Ten hourly windows of 400 predictions. Each prediction carries two features: ``price``
moves from N(50, 5) to N(60, 5) at 06:00 (2 sd: a major shift, PSI far above 0.25) and
``age`` stays N(40, 8) throughout; y_pred does not move. Labels arrive 6 hours late. One
feature_drift SLO per feature compares each window with the 4 hours before it (PSI above
0.25 is bad) and pages at 5x over 2 h and 1 h: at the frontier 07:00 the 2 h lookback
holds the windows ending 06:00 (good) and 07:00 (bad): 1/2 / (1 - 0.9) = 5.

The metrics rows' feature sketches are checked against sketches built with numpy from
the values written, per hour: a repeated prediction id (a duplicate, with a price of
1e6) and a NaN price must not be in them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from msewatch.transforms.metrics.sketch import ValueSketch
from tests.harness import (
    H,
    alerts_and_status,
    labels,
    latest,
    predictions,
    read_metrics,
    run_both,
)
from tests.slo_examples import paging, slo_file

SLO = slo_file(
    *(
        paging(
            name=name,
            sli="feature_drift",
            feature=name,
            reference={"trailing": "4h"},
            threshold=0.25,
            slices=None,
            min_scored=100,
        )
        for name in ("price", "age")
    )
)
PER_HOUR, HOURS, SHIFT_HOUR, LABEL_DELAY = 400, 10, 6, 6 * H


def _records():
    rng = np.random.default_rng(12)
    preds, labs, prices = [], [], {}
    for hour in range(HOURS):
        price = rng.normal(60.0 if hour >= SHIFT_HOUR else 50.0, 5.0, PER_HOUR)
        price[7] = np.nan  # no value: left out of the sketch
        prices[hour] = price[np.isfinite(price)]
        age = rng.normal(40.0, 8.0, PER_HOUR)
        y = rng.normal(100.0, 10.0, PER_HOUR)
        for i in range(PER_HOUR):
            pid, t = f"p-{hour}-{i}", hour * H + i * 9_000
            features = {"price": price[i], "age": age[i]}
            preds.append({"id": pid, "t": t, "y": y[i], "features": features})
            labs.append({"id": pid, "t": t + LABEL_DELAY, "y": y[i] + rng.normal()})
    late = {"id": "p-3-0", "t": 3 * H + 60_000, "y": 1.0, "features": {"price": 1e6}}
    preds.append(late)  # a duplicate of p-3-0 (a later event time: the first one wins)
    return predictions(preds, features=("price", "age")), labels(labs), prices


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    preds, labs, prices = _records()
    out = {"prices": prices}
    outputs = run_both(tmp_path_factory, preds, labs, 400, ttl_ms=12 * H, slo=SLO)
    for mode, (alerts, status) in alerts_and_status(outputs).items():
        out[mode] = (alerts, status, latest(read_metrics(outputs[mode])))
    return out


@pytest.mark.parametrize("mode", ["bounded", "replay"])
def test_the_feature_sketches_are_those_of_the_values_written(runs, mode):
    metrics = runs[mode][2]
    metrics = metrics[metrics.slice == "overall"]  # model_version=v1 holds the same
    assert len(metrics) == HOURS
    for hour, row in enumerate(metrics.itertuples()):
        entries = {e["feature"]: e["sketch"] for e in row.feature_sketches}
        assert list(entries) == ["price", "age"]  # the SLO file's features, in its order
        want = ValueSketch.from_values(runs["prices"][hour])
        assert ValueSketch.from_bytes(entries["price"]) == want, hour
        assert want.count == PER_HOUR - 1 and want.max < 1e3


@pytest.mark.parametrize("mode", ["bounded", "replay"])
def test_the_shifted_feature_pages_and_the_steady_one_does_not(runs, mode):
    alerts, status, _ = runs[mode]
    firing = alerts[alerts.state == "firing"]
    assert list(firing.alert) == ["price/page/overall"]
    assert firing.frontier.iloc[0] == pd.Timestamp("1970-01-01 07:00", tz="UTC")
    assert firing.burn_rate_long.iloc[0] == pytest.approx(5.0)
    assert firing.value.iloc[0] > 1.0  # PSI of a 2 sd shift: far above 0.25
    age = status[status.slo == "age"]
    assert len(age) == HOURS - 1 and (age.value < 0.1).all()  # windows 1..9 settle


def test_feature_drift_fires_before_the_first_label_of_the_drifted_window(runs):
    alerts = runs["replay"][0]
    (alert,) = alerts[alerts.state == "firing"].itertuples()
    first_label = pd.Timestamp(SHIFT_HOUR * H + LABEL_DELAY, unit="ms", tz="UTC")  # 12:00
    assert pd.Timestamp("1970-01-01 07:00", tz="UTC") <= alert.watermark < first_label
