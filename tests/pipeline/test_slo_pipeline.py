"""SLO evaluation inside the pipeline: bounded history and streaming replay agree.

Six hourly windows of 40 labeled predictions each (labels 10 minutes late); the error
is 1 in hours 0-2 and 10 in hours 3-5, so windows ending at 04:00, 05:00 and 06:00 are
bad for an RMSE threshold of 5. A second segment never gets labels.
"""

from __future__ import annotations

import pandas as pd
import pytest

from msewatch.transforms.slo.config import parse_slo_file
from tests.harness import H, alerts_and_status, labels, predictions, run_both
from tests.slo_examples import RMSE_PAGE

SLO = parse_slo_file(RMSE_PAGE)


def _records():
    preds, labs = [], []
    for hour in range(6):
        for i in range(40):
            t = hour * H + i * 60_000
            error = 1.0 if hour < 3 else 10.0
            for region in ("lit", "dark"):
                pid = f"{region}-{hour}-{i}"
                preds.append({"id": pid, "t": t, "y": error, "region": region})
                if region == "lit":
                    labs.append({"id": pid, "t": t + 600_000, "y": 0.0})
    return predictions(preds, segment_keys=("region",)), labels(labs)


def _firing(alerts: pd.DataFrame) -> list[tuple[str, str, pd.Timestamp]]:
    rows = alerts.sort_values(["frontier", "alert"])
    return [(r.alert, r.state, r.frontier) for r in rows.itertuples()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    preds, labs = _records()
    cfg = {"slices": ("region",), "ttl_ms": 3 * H, "slo": SLO}
    return alerts_and_status(run_both(tmp_path_factory, preds, labs, 40, **cfg))


def test_the_page_fires_at_the_first_window_that_burns_fast_enough(runs):
    # Frontier 04:00 (window 03:00-04:00 settled): the 2h lookback holds the windows
    # ending 03:00 (good) and 04:00 (bad): bad share 1/2, burn 0.5 / (1 - 0.9) = 5 >= 5;
    # the 1h lookback holds 04:00 alone: burn 1 / 0.1 = 10 >= 5. At 03:00 nothing is bad.
    alerts, _ = runs["bounded"]
    assert _firing(alerts) == [
        ("rmse/page/region=lit", "firing", pd.Timestamp("1970-01-01 04:00", tz="UTC"))
    ]
    (row,) = alerts.itertuples()
    assert (row.burn_rate_long, row.burn_rate_short) == pytest.approx((5.0, 10.0))
    assert row.watermark is pd.NaT or pd.isna(row.watermark)  # bounded: no watermark


def test_a_slice_without_labels_never_counts_and_never_pages(runs):
    for alerts, status in runs.values():
        assert not alerts["slice"].eq("region=dark").any()
        assert not status["slice"].eq("region=dark").any()


def test_the_replay_fires_the_same_alert_at_the_same_frontier_with_a_watermark(runs):
    bounded, _ = runs["bounded"]
    replay, _ = runs["replay"]
    firing = replay[replay.state == "firing"]
    assert _firing(firing) == _firing(bounded[bounded.state == "firing"])
    # Labels come 10 minutes late, so the 03:00-04:00 window settles (coverage >= 0.8)
    # in an EARLY pane, before it closes: the page is decided while the watermark is
    # known to have passed only 03:00, the end of the newest window with an ON_TIME pane.
    assert list(firing.watermark) == [pd.Timestamp("1970-01-01 03:00", tz="UTC")]


def test_budget_and_burn_rates_in_the_last_status(runs):
    _, status = runs["bounded"]
    last = status[status.slice == "region=lit"].sort_values("frontier").iloc[-1]
    # period 1d holds all six windows: 3 bad of 6, budget (1 - 0.9) * 6 = 0.6 windows,
    # consumed 3: remaining 1 - 3 / 0.6 = -4.
    assert last.frontier == pd.Timestamp("1970-01-01 06:00", tz="UTC")
    assert (last.eligible, last.budget_consumed) == (6, 3)
    assert last.budget_remaining == pytest.approx(-4.0)
    assert last.page_state == "firing"
