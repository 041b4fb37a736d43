"""prediction_drift inside the pipeline, bounded and replayed.

Ten hourly windows of 400 predictions per region. region=shift's predictions move from
N(100, 10) to N(115, 10) at 06:00 (1.5 sd: a major shift, PSI far above 0.25);
region=steady's stay put. Labels follow the predictions but arrive 6 hours late. The
SLO compares each window with the 4 hours before it (PSI above 0.25 is bad) and pages at
5x over 2 h and 1 h: at the frontier 07:00 the 2 h lookback holds the windows ending
06:00 (good) and 07:00 (bad): 1/2 / (1 - 0.9) = 5, the 1 h lookback 1 / 0.1 = 10.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.harness import H, alerts_and_status, labels, predictions, run_both
from tests.slo_examples import paging, slo_file

SLO = slo_file(
    paging(
        name="drift",
        sli="prediction_drift",
        reference={"trailing": "4h"},
        threshold=0.25,
        min_scored=100,
    )
)
PER_HOUR, HOURS, SHIFT_HOUR, LABEL_DELAY = 400, 10, 6, 6 * H


def _records():
    rng = np.random.default_rng(11)
    preds, labs = [], []
    for hour in range(HOURS):
        for region in ("shift", "steady"):
            mean = 115.0 if region == "shift" and hour >= SHIFT_HOUR else 100.0
            y = rng.normal(mean, 10.0, PER_HOUR)
            for i in range(PER_HOUR):
                pid, t = f"{region}-{hour}-{i}", hour * H + i * 9_000
                preds.append({"id": pid, "t": t, "y": y[i], "region": region})
                labs.append({"id": pid, "t": t + LABEL_DELAY, "y": y[i] + rng.normal()})
    return predictions(preds, segment_keys=("region",)), labels(labs)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    preds, labs = _records()
    cfg = {"slices": ("region",), "ttl_ms": 12 * H, "slo": SLO}
    return alerts_and_status(run_both(tmp_path_factory, preds, labs, 400, **cfg))


@pytest.mark.parametrize("mode", ["bounded", "replay"])
def test_the_shifted_slice_pages_and_nothing_else(runs, mode):
    alerts, status = runs[mode]
    firing = alerts[alerts.state == "firing"]
    assert list(firing.alert) == ["drift/page/region=shift"]
    assert firing.frontier.iloc[0] == pd.Timestamp("1970-01-01 07:00", tz="UTC")
    assert firing.burn_rate_long.iloc[0] == pytest.approx(5.0)
    assert firing.value.iloc[0] > 1.0  # PSI of a 1.5 sd shift: ~2 (far above 0.25)
    assert "PSI" in firing.summary.iloc[0] and "trailing 4h" in firing.summary.iloc[0]
    steady = status[status.slice == "region=steady"]
    assert len(steady) == HOURS - 1 and (steady.value < 0.1).all()  # windows 1..9 settle


def test_prediction_drift_fires_before_the_first_label_of_the_drifted_window(runs):
    alerts, _ = runs["replay"]
    (alert,) = alerts[alerts.state == "firing"].itertuples()
    first_label = pd.Timestamp(SHIFT_HOUR * H + LABEL_DELAY, unit="ms", tz="UTC")  # 12:00
    # The watermark the panes had proven when the page was emitted: the window closed
    # (07:00), hours before any of its labels (the first at 12:00) could have arrived.
    assert pd.Timestamp("1970-01-01 07:00", tz="UTC") <= alert.watermark < first_label
