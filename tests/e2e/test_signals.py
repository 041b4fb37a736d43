"""The signals beyond the error, end to end (issue: drift, silent slices, label anomalies,
flapping): the ``signals`` game-day stream has one fault per region — eu's labels shift
and its model follows (RMSE flat), na sends nothing for 6 h, apac's labels are a constant
-1, outside the valid range [0, 1000] — and ``signals-stationary`` is the same stream
without them (``msewatch/commands/scenarios_signals.py``). Read from the alerts tables of real
bounded and replayed runs: each faulty region pages on its own SLI, nothing else pages
beyond what the scenario allows (apac's wrong labels also spoil its RMSE and its label
distribution), and on the stationary stream nothing fires and nothing flaps.
"""

from __future__ import annotations

import contextlib
import io
import pathlib

import pandas as pd
import pytest

from msewatch import cli
from msewatch.commands import gameday
from tests import synthetic_output as so

pytestmark = pytest.mark.slow

# (SLO name as in the scenario's slo.yaml, its slice): the pages that must come
MUST_PAGE = {
    ("label-drift", "region=eu"),
    ("traffic", "region=na"),
    ("label-anomaly", "region=apac"),
}
# what else may page: eu's model followed its labels (prediction drift); apac's labels
# are wrong (its rmse, error_rate and label distribution too)
MAY_PAGE = {
    ("prediction-drift", "region=eu"),
    ("forecast-rmse", "region=apac"),
    ("forecast-error-rate", "region=apac"),
    ("label-drift", "region=apac"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``(exit code, {(scenario, mode): alerts table})`` of both scenarios, both modes."""
    root = tmp_path_factory.mktemp("signals")
    printed = io.StringIO()
    argv = ["gameday", "--keep", str(root), "--scenario", "signals"]
    with contextlib.redirect_stdout(printed):
        code = cli.main([*argv, "--scenario", "signals-stationary"])
    tables = {
        (name, mode, table): so.read_table(pathlib.Path(root / name / f"out-{mode}"), table)
        for name in ("signals", "signals-stationary")
        for mode in gameday.MODES
        for table in ("alerts", "slo_status")
    }
    return code, printed.getvalue(), tables


def _pages(alerts: pd.DataFrame) -> set[tuple[str, str]]:
    firing = alerts[(alerts["state"] == "firing") & (alerts["severity"] == "page")]
    return set(zip(firing["slo"], firing["slice"], strict=True))


def test_the_game_day_passes(runs):
    code, printed, _ = runs
    assert code == 0, printed[-3000:]


@pytest.mark.parametrize("mode", gameday.MODES)
def test_each_faulty_region_pages_on_its_own_sli_and_nothing_else_pages(runs, mode):
    pages = _pages(runs[2]["signals", mode, "alerts"])
    assert MUST_PAGE <= pages
    assert pages - MUST_PAGE <= MAY_PAGE, pages - MUST_PAGE - MAY_PAGE


@pytest.mark.parametrize("mode", gameday.MODES)
def test_the_stationary_stream_fires_nothing_and_flaps_nothing(runs, mode):
    alerts = runs[2]["signals-stationary", mode, "alerts"]
    assert alerts.empty or alerts[alerts["state"] == "firing"].empty, alerts  # no alerts table
    # not vacuous: every SLO, the new SLIs' included, was evaluated on every region
    status = runs[2]["signals-stationary", mode, "slo_status"]
    evaluated = status.groupby("sli")["slice"].nunique()
    for sli in ("prediction_drift", "label_drift", "traffic", "label_anomaly"):
        assert evaluated.get(sli) == 3, evaluated
    assert (status["page_state"] != "firing").all() and (status["ticket_state"] != "firing").all()
