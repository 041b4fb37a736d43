"""Tests of ``msewatch gameday``'s checks (no pipeline runs: the runs are faked here).

The real runs are in ``tests/e2e/test_gameday.py``.
"""

import pytest

from msewatch import cli
from msewatch.commands import gameday
from msewatch.commands.gameday import Transition

H = 3_600_000
T = 1_793_599_200_000  # 2026-11-02T06:00:00Z, the scenarios' fault start
APAC_PAGE = "forecast-rmse/page/region=apac"
EXPECTED = {
    "must_fire": [
        {
            "sli": "rmse",
            "severity": "page",
            "slice": "region=apac",
            "frontier_from": "2026-11-02T07:00:00Z",
            "frontier_to": "2026-11-02T09:00:00Z",
        }
    ],
    "may_fire": [{"sli": "*", "severity": "ticket", "slice": "region=apac"}],
    "must_not_fire": [{"sli": "*", "severity": "*", "slice": "*"}],
}


def _t(alert, state, frontier_ms, watermark_ms=None):
    slo, severity, slice_name = alert.split("/")
    sli = {"forecast-rmse": "rmse", "forecast-error-rate": "error_rate"}.get(slo, "label_freshness")
    return Transition(alert, slo, sli, severity, slice_name, state, frontier_ms, watermark_ms)


def test_the_scenarios_fault_start_is_the_constant_here():
    assert gameday._ms("2026-11-02T06:00:00Z") == T


def test_firing_periods_pair_each_firing_with_its_resolution():
    rows = [_t(APAC_PAGE, "firing", T + H), _t(APAC_PAGE, "resolved", T + 5 * H)]
    rows.append(_t(APAC_PAGE, "firing", T + 9 * H))
    assert gameday.firing_periods(rows) == {APAC_PAGE: ((T + H, T + 5 * H), (T + 9 * H, None))}


@pytest.mark.parametrize(
    ("frontier_ms", "verdict"),
    [(T + H, "ok"), (T + 3 * H, "ok"), (T, "early"), (T + 4 * H, "late")],
    ids=["first hour", "last allowed", "before the window", "after the window"],
)
def test_a_must_fire_alert_is_judged_by_its_first_firing_frontier(frontier_ms, verdict):
    [line] = gameday.check(EXPECTED, [_t(APAC_PAGE, "firing", frontier_ms)])
    assert (line.alert, line.expected, line.verdict) == (APAC_PAGE, "must", verdict)
    assert line.mismatch == (verdict != "ok")


def test_a_missing_expected_alert_and_a_false_alarm_are_mismatches():
    lines = gameday.check(EXPECTED, [_t("forecast-rmse/page/region=eu", "firing", T + H)])
    assert [(x.alert, x.verdict) for x in lines] == [
        ("forecast-rmse/page/region=eu", "FALSE ALARM"),
        ("rmse page region=apac", "MISSING"),
    ]
    assert all(x.mismatch for x in lines)


def test_may_fire_is_allowed_and_an_alert_no_list_names_is_other():
    ticket = _t("forecast-rmse/ticket/region=apac", "firing", T + H)
    other = _t("label-freshness/page/overall", "firing", T + H)
    page = _t(APAC_PAGE, "firing", T + H)
    lenient = {**EXPECTED, "must_not_fire": [{"slice": "region=*"}]}
    lines = gameday.check(lenient, [page, ticket, other])
    assert [(x.expected, x.verdict) for x in lines] == [
        ("must", "ok"),
        ("may", "ok"),
        ("other", "other"),
    ]
    assert not any(x.mismatch for x in lines)


def test_list_and_glob_patterns_match():
    t = _t(APAC_PAGE, "firing", T)
    assert gameday.matches({"sli": ["error_rate", "rmse"], "slice": "region=*"}, t)
    assert not gameday.matches({"sli": ["error_rate"]}, t)
    assert not gameday.matches({"slo": "forecast-error-rate"}, t)


def test_differing_firing_periods_are_reported():
    bounded = [_t(APAC_PAGE, "firing", T + H), _t(APAC_PAGE, "resolved", T + 5 * H)]
    same = [_t(APAC_PAGE, "firing", T + H, T + 2 * H), _t(APAC_PAGE, "resolved", T + 5 * H, T)]
    later = [_t(APAC_PAGE, "firing", T + 2 * H, T + 2 * H)]
    assert gameday.compare_periods(bounded, same) == []  # watermarks do not matter
    assert gameday.compare_periods(bounded, later) == [
        f"{APAC_PAGE}: bounded [2026-11-02 07:00 .. 2026-11-02 11:00], "
        "replay [2026-11-02 08:00 .. firing]"
    ]


ERROR_PAGE = "forecast-error-rate/page/region=apac"


def _fake_runs(monkeypatch, bounded_rows, replay_rows):
    """``msewatch run`` replaced: each mode's ``alerts`` table holds the rows given."""
    monkeypatch.setattr(gameday, "_run_once", lambda *args: 0)
    monkeypatch.setattr(
        gameday,
        "read_transitions",
        lambda out: bounded_rows if out.endswith("out-bounded") else replay_rows,
    )


def test_gameday_passes_when_both_runs_fire_as_expected(monkeypatch, tmp_path, capsys):
    bounded = [_t(APAC_PAGE, "firing", T + H), _t(ERROR_PAGE, "firing", T + H)]
    replay = [_t(APAC_PAGE, "firing", T + H, T + 3 * H), _t(ERROR_PAGE, "firing", T + H, T + H)]
    _fake_runs(monkeypatch, bounded, replay)
    code = cli.main(["gameday", "--scenario", "drift", "--keep", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "firing periods (event time): bounded = replay" in out
    assert "game day passed: 1 scenario" in out
    # the replay's watermark and its delay after the fault start (06:00)
    assert "2026-11-02 07:00  1h     2026-11-02 09:00  3h" in out


def test_gameday_exits_1_on_a_missing_alert_and_on_differing_periods(monkeypatch, tmp_path, capsys):
    _fake_runs(
        monkeypatch,
        [_t(APAC_PAGE, "firing", T + H)],
        [_t(APAC_PAGE, "firing", T + 2 * H, T + 3 * H)],
    )
    code = cli.main(["gameday", "--scenario", "drift", "--keep", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == gameday.EXIT_MISMATCH
    assert "error_rate page region=apac" in out and "MISSING" in out
    assert "firing periods (event time): DIFFER" in out
    assert "game day FAILED: drift (1 of 1 scenario)" in out
    assert (tmp_path / "drift" / "expected_alerts.json").exists()  # --keep keeps the data


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["gameday", "--scenario", "meteor"], "argument --scenario: invalid choice: 'meteor'"),
        (["gameday", "--slo", "no-such.yaml"], "no-such.yaml: no such file or directory"),
        (["generate", "--scenario", "drift", "--out", "x", "--days", "2"], "leave out --days"),
    ],
    ids=["unknown scenario", "missing SLO file", "generate option with --scenario"],
)
def test_user_errors_print_one_line_and_exit_2(argv, message, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("MSEWATCH_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("msewatch: error: ") and message in err and err.count("\n") == 1


def test_generate_scenario_writes_the_scenario(tmp_path, capsys):
    assert cli.main(["generate", "--scenario", "nan-burst", "--out", str(tmp_path)]) == 0
    assert "scenario nan-burst" in capsys.readouterr().out
    assert (tmp_path / "expected_alerts.json").exists() and (tmp_path / "slo.yaml").exists()
