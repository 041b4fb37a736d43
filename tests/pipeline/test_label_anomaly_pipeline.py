"""The label_anomaly SLO in the pipeline, bounded and replayed: each region pages on the
check its labels break, and ``msewatch query OUT label_anomalies`` finds those windows.

Six hourly windows of 40 labeled predictions per region (labels 10 minutes late), y_pred
12 and y_true 10 + i/100 for the i-th prediction of the hour (in range [0, 100], not
constant, ratio 12 / 10.195 = 1.18), except:

* region=out: in hour 3, 10 of its 40 labels are -5: outside [0, 100], a share 0.25
  above the threshold 0.05 (the scale holds: 480 / (307.35 + 50) = 1.34; labels of 500
  would also be a scale mismatch, 480 / 5307.35 < 1/10);
* region=flat: in hour 2 all 40 labels are 10.0: constant labels (40 >= min_scored 30);
* region=unit: in hour 4 its predictions are 1200 (cents against dollars): mean |y_pred|
  / mean |y_true| = 120 > 10;
* region=ok: nothing.

Each bad window pages like the rmse example (tests/pipeline/test_slo_pipeline.py): the
2 h lookback holds one good and one bad window (burn 0.5 / 0.1 = 5 >= 5), the 1 h one the
bad window alone (10 >= 5), at the frontier that is the bad window's end.
"""

from __future__ import annotations

import pandas as pd
import pytest

from msewatch.commands import query as query_cli
from msewatch.schemas.records import METRICS_FIELDS
from tests.harness import H, labels, predictions, read_table, run_both
from tests.slo_examples import paging, slo_file

pytestmark = pytest.mark.skipif(
    "label_range" not in {f.name for f in METRICS_FIELDS},
    reason="the metrics stage does not write label_range, sum_abs_*, y_true_min/max yet",
)

SLO = slo_file(paging(name="labels", sli="label_anomaly", valid_range=[0, 100], threshold=0.05))
REGIONS = ("out", "flat", "unit", "ok")


def _records():
    preds, labs = [], []
    for hour in range(6):
        for i in range(40):
            t = hour * H + i * 60_000
            for region in REGIONS:
                pid = f"{region}-{hour}-{i}"
                y_pred = 1200.0 if (region, hour) == ("unit", 4) else 12.0
                y_true = 10.0 + i / 100
                if region == "out" and hour == 3 and i < 10:
                    y_true = -5.0
                if region == "flat" and hour == 2:
                    y_true = 10.0
                preds.append({"id": pid, "t": t, "y": y_pred, "region": region})
                labs.append({"id": pid, "t": t + 600_000, "y": y_true})
    return predictions(preds, segment_keys=("region",)), labels(labs)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    preds, labs = _records()
    cfg = {"slices": ("region",), "ttl_ms": 3 * H, "slo": SLO}
    return run_both(tmp_path_factory, preds, labs, 40, **cfg)


def _hour(h):
    return pd.Timestamp(h * H, unit="ms", tz="UTC")


@pytest.mark.parametrize("mode", ["bounded", "replay"])
def test_each_region_pages_on_its_own_check(runs, mode):
    alerts = read_table(runs[mode], "alerts")
    firing = alerts[alerts.state == "firing"].sort_values("frontier")
    assert [(r.slice, r.frontier) for r in firing.itertuples()] == [
        ("region=flat", _hour(3)),  # window 02:00-03:00 constant
        ("region=out", _hour(4)),  # window 03:00-04:00: 25 % out of range
        ("region=unit", _hour(5)),  # window 04:00-05:00: ratio 120
    ]
    by_slice = {r.slice: r for r in firing.itertuples()}
    # the value: the anomalous share, + 10 for constant labels, + 100 for the scale
    assert by_slice["region=out"].value == pytest.approx(0.25)
    assert by_slice["region=flat"].value == 10.0
    assert by_slice["region=unit"].value == 100.0
    assert "constant labels" in by_slice["region=flat"].summary
    assert "scale mismatch" in by_slice["region=unit"].summary
    assert "25.00% of labels outside [0, 100]" in by_slice["region=out"].summary


def test_label_anomalies_finds_the_windows(runs):
    # the query reads every slice, overall and model_version=v1 (the one version) too: in
    # hour 3, 10 of their 160 labels are out; in hour 4 their ratio is (40 * 1200 + 120 *
    # 12) / (4 * the sum of 10 + i/100 over i < 40, 400 + 7.8); region=unit's is
    # 40 * 1200 / 407.8
    got = query_cli.query(runs["bounded"], "label_anomalies")
    rows = [(r.window_start, r.slice, r.reason) for r in got.itertuples()]
    assert rows == [
        (_hour(2), "region=flat", "constant"),
        (_hour(3), "model_version=v1", "out_of_range"),
        (_hour(3), "overall", "out_of_range"),
        (_hour(3), "region=out", "out_of_range"),
        (_hour(4), "model_version=v1", "scale"),
        (_hour(4), "overall", "scale"),
        (_hour(4), "region=unit", "scale"),
    ]
    overall = 49_440 / (4 * 407.8)
    expected = [10.0, 10 / 160, 10 / 160, 10 / 40, overall, overall, 48_000 / 407.8]
    assert got.value.tolist() == pytest.approx(expected, rel=1e-12)
    assert got[got.reason == "out_of_range"][["low", "high"]].values.tolist() == [[0, 100]] * 3
