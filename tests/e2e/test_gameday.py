"""``msewatch gameday`` end to end: real bounded and replayed runs of three scenarios.

One game day (drift, label-outage, stationary) runs once for the module, in-process,
with ``--keep`` so that each run's ``alerts`` table is read back here with DuckDB
(``read_transitions``) besides the printed report. What must hold, per the scenarios'
definitions in msewatch/commands/scenarios.py: the drift pages for region=apac only; the label
outage raises no rmse or error_rate alert and a label_freshness page for region=eu
only; the stationary month raises nothing; bounded and replay fire in the same
event-time periods.
"""

from __future__ import annotations

import contextlib
import io

import pytest

from msewatch import cli
from msewatch.commands import gameday

pytestmark = pytest.mark.slow

SCENARIOS = ("drift", "label-outage", "stationary")
FAULT = "2026-11-02 06:00"  # START + FAULT_START_HOURS, UTC


@pytest.fixture(scope="module")
def game_day(tmp_path_factory):
    """``(exit code, printed report, {(scenario, mode): transitions})``."""
    root = tmp_path_factory.mktemp("gameday")
    argv = ["gameday", "--keep", str(root)]
    for name in SCENARIOS:
        argv += ["--scenario", name]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(argv)
    tables = {
        (name, mode): gameday.read_transitions(str(root / name / f"out-{mode}"))
        for name in SCENARIOS
        for mode in gameday.MODES
    }
    return code, printed.getvalue(), tables


def _fired(tables, name, mode) -> set[str]:
    return {t.alert for t in tables[name, mode] if t.state == "firing"}


def test_the_game_day_passes_and_says_so(game_day):
    code, report, _ = game_day
    assert code == 0, report
    assert "game day passed: 3 scenarios, bounded and replayed" in report
    assert report.count("firing periods (event time): bounded = replay") == 3
    for word in ("MISSING", "FALSE ALARM", "FAILED", "early", "late", "FLAPPING", "flapping"):
        assert f"  {word}" not in report  # the shipped SLO files do not flap either


@pytest.mark.parametrize("mode", gameday.MODES)
def test_the_drift_pages_the_drifted_region_only_an_hour_after_it_starts(game_day, mode):
    _, _, tables = game_day
    fired = _fired(tables, "drift", mode)
    pages = {a for a in fired if "/page/" in a}
    assert pages == {"forecast-rmse/page/region=apac", "forecast-error-rate/page/region=apac"}
    assert all(a.endswith("/region=apac") for a in fired)
    first = min(t.frontier_ms for t in tables["drift", mode] if t.state == "firing")
    # the first drifted hour [06:00, 07:00) is bad: it settles as the frontier 07:00
    assert first == gameday._ms("2026-11-02T07:00:00Z")


def test_the_replay_records_the_watermark_of_each_firing(game_day):
    _, report, tables = game_day
    assert all(t.watermark_ms is None for t in tables["drift", "bounded"])
    replay = [t for t in tables["drift", "replay"] if t.state == "firing"]
    assert replay and all(t.watermark_ms >= t.frontier_ms for t in replay)
    drift_block = report.split("== drift")[1].split("== ")[0]
    assert f"from {FAULT} UTC" in drift_block


@pytest.mark.parametrize("mode", gameday.MODES)
def test_the_label_outage_fires_label_freshness_for_its_region_and_no_error_alert(game_day, mode):
    _, _, tables = game_day
    fired = _fired(tables, "label-outage", mode)
    assert "label-freshness/page/region=eu" in fired
    assert all(a.startswith("label-freshness/") and a.endswith("/region=eu") for a in fired)


def test_label_freshness_waits_for_within_after_the_window_in_the_replay(game_day):
    _, _, tables = game_day
    [page] = [
        t
        for t in tables["label-outage", "replay"]
        if t.alert == "label-freshness/page/region=eu" and t.state == "firing"
    ]
    six_hours = 6 * 3_600_000  # the scenario SLO's within: 6h
    assert page.watermark_ms >= page.frontier_ms + six_hours


@pytest.mark.parametrize("mode", gameday.MODES)
def test_the_stationary_month_fires_nothing(game_day, mode):
    _, _, tables = game_day
    assert tables["stationary", mode] == []
