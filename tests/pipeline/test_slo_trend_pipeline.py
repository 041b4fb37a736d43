"""An rmse_trend SLO in the pipeline: a drifting segment pages, a flat one does not, and
the bounded run and the streaming replay agree.

Ten hourly windows of 40 labeled predictions per region (labels 10 minutes late). In
region=drift every prediction of hour h is off by 1 for h <= 4, then by 1 + 2 (h - 4):
window RMSEs 1, 1, 1, 1, 1, 3, 5, 7, 9, 11, rising 2 an hour (48 a day) from 04:00.
In region=flat every error is 1.
"""

from __future__ import annotations

import pandas as pd
import pytest

from tests.harness import H, alerts_and_status, labels, predictions, run_both
from tests.slo_examples import paging, slo_file

# bad when the RMSE rises faster than 1 per day, confidently (over 3 windows)
SLO = slo_file(
    paging(name="trend", sli="rmse_trend", threshold=1, trend_windows=3, keep_firing_for="1h")
)


def _records():
    preds, labs = [], []
    for hour in range(10):
        for i in range(40):
            t = hour * H + i * 60_000
            for region in ("drift", "flat"):
                error = 1.0 + 2.0 * max(hour - 4, 0) if region == "drift" else 1.0
                pid = f"{region}-{hour}-{i}"
                preds.append({"id": pid, "t": t, "y": error, "region": region})
                labs.append({"id": pid, "t": t + 600_000, "y": 0.0})
    return predictions(preds, segment_keys=("region",)), labels(labs)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    preds, labs = _records()
    cfg = {"slices": ("region",), "ttl_ms": 3 * H, "slo": SLO}
    return alerts_and_status(run_both(tmp_path_factory, preds, labs, 80, **cfg))


def _firing(alerts: pd.DataFrame) -> list[tuple[str, pd.Timestamp]]:
    rows = alerts[alerts.state == "firing"].sort_values(["frontier", "alert"])
    return [(r.alert, r.frontier) for r in rows.itertuples()]


def test_the_drifting_region_pages_once_its_rmse_rises_with_confidence(runs):
    # Window 05:00-06:00 fits RMSEs 1, 1, 3 (at 04:00, 05:00, 06:00 ends): slopes 0, 24
    # and 48 per day; with 3 points the 95 % interval is all of them, low end 0 <= 1:
    # good. Window 06:00-07:00 fits 1, 3, 5: every slope 48, low end 48 > 1: bad. At
    # frontier 07:00 the 1h lookback (that window alone) burns 1 / 0.1 = 10 >= 5 and the
    # 2h one (05:00-07:00, one bad of two) 0.5 / 0.1 = 5 >= 5: the page fires.
    alerts, status = runs["bounded"]
    assert _firing(alerts) == [
        ("trend/page/region=drift", pd.Timestamp("1970-01-01 07:00", tz="UTC"))
    ]
    last = status[status.slice == "region=drift"].sort_values("frontier").iloc[-1]
    assert last.value == pytest.approx(48.0)  # RMSE 7, 9, 11 two a hour apart: 48/day


def test_the_flat_region_never_pages_and_settles_from_its_third_window(runs):
    alerts, status = runs["bounded"]
    assert not alerts["slice"].eq("region=flat").any()
    flat = status[status.slice == "region=flat"].sort_values("frontier")
    assert flat.frontier.iloc[0] == pd.Timestamp("1970-01-01 03:00", tz="UTC")
    assert (flat.value == 0).all() and (flat.budget_consumed == 0).all()


def test_the_replay_fires_the_same_page_at_the_same_frontier(runs):
    bounded, _ = runs["bounded"]
    replay, _ = runs["replay"]
    assert _firing(replay) == _firing(bounded)
