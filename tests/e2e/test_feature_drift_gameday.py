"""feature_drift in the prediction-drift game day (``msewatch/commands/scenarios_signals.py``):
from T, region=apac's ``price`` feature is 15 higher (5 of its standard deviations) with
its predictions, for 12 h, while ``tenure_days`` does not move. Read from the alerts
tables of the game day's real bounded and replayed runs: the price SLO pages apac, the
tenure SLO never fires, and in the replay the page comes before the first label of the
drifted hours could have arrived (they come 4.5 to 5.5 h late).
"""

from __future__ import annotations

import contextlib
import io
import pathlib

import pandas as pd
import pytest

from msewatch import cli
from msewatch.commands import gameday, scenarios
from msewatch.commands import scenarios_signals as signals
from tests import synthetic_output as so

pytestmark = pytest.mark.slow
T = pd.Timestamp(scenarios.START) + pd.Timedelta(hours=scenarios.FAULT_START_HOURS)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("feature-drift")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(["gameday", "--keep", str(root), "--scenario", "prediction-drift"])
    out = root / "prediction-drift"
    alerts = {m: so.read_table(pathlib.Path(out / f"out-{m}"), "alerts") for m in gameday.MODES}
    return code, printed.getvalue(), alerts


def test_the_game_day_passes(runs):
    code, printed, _ = runs
    assert code == 0, printed[-3000:]
    assert "price-drift/page/region=apac" in printed


@pytest.mark.parametrize("mode", gameday.MODES)
def test_the_shifted_feature_pages_apac_and_the_steady_one_stays_quiet(runs, mode):
    alerts = runs[2][mode]
    firing = alerts[alerts["state"] == "firing"]
    price = firing[firing["slo"] == "price-drift"]
    assert set(price["alert"]) == {"price-drift/page/region=apac"}
    assert T < price["frontier"].min() <= T + pd.Timedelta(hours=4)
    assert (price["sli"] == "feature_drift").all() and (price["value"] > 2.0).all()
    assert firing[firing["slo"] == "tenure-drift"].empty


def test_the_replayed_page_comes_before_the_drifted_hours_labels(runs):
    alerts = runs[2]["replay"]
    page = alerts[(alerts["slo"] == "price-drift") & (alerts["state"] == "firing")].iloc[0]
    first_label = T + pd.Timedelta(milliseconds=signals.SLOW_LABEL_LAG_MS[0])
    assert page["watermark"] < first_label
