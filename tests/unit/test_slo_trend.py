"""The RMSE trend: Theil-Sen slopes per day (against scipy and by hand) and the
``rmse_trend`` SLI's verdicts and alerts.

Windows are hourly and start at the epoch (window i is [i h, (i + 1) h)), as in
test_slo_kernel.py; a slope is RMSE per day, so RMSE rising 1 per hour is 24 per day.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm, theilslopes

from msewatch.transforms.slo import trend as trend_module
from msewatch.transforms.slo.kernel import SloEvaluator, evaluate_history
from msewatch.transforms.slo.sli import SLI_RULES
from msewatch.transforms.slo.spec import Alerting, BurnWindow, Slo, Suppression
from msewatch.transforms.slo.trend import DAY_MS, rolling_points, theil_sen

H = 3_600_000


def scipy_trend(end_ms, y) -> tuple[float, float, float]:
    r = theilslopes(np.asarray(y, float), np.asarray(end_ms, float) / DAY_MS, 0.95)
    return r.slope, r.low_slope, r.high_slope


# --- Theil-Sen ------------------------------------------------------------------------


def test_rmse_rising_exactly_one_per_day_has_slope_one_inside_its_interval():
    # every pairwise slope is (11 - 10) / 1 day, (12 - 10) / 2 days, (12 - 11) / 1 day = 1;
    # with 3 points Sen's interval is every pairwise slope: [1, 1]
    t = theil_sen([[0, DAY_MS, 2 * DAY_MS]], [[10.0, 11.0, 12.0]])
    assert (t.slope[0], t.low[0], t.high[0]) == (1.0, 1.0, 1.0)


def test_a_hand_derived_slope_and_interval():
    # points (0 d, 10), (1 d, 12), (2 d, 11): pairwise slopes 2, 0.5 and -1, median 0.5.
    # n = 3, N = 3 slopes, sigma^2 = 3 * 2 * 11 / 18 = 3.667, 1.96 sigma = 3.75: the
    # interval runs from rank max(round((3 - 3.75) / 2) - 1, 0) = 0 to min(round((3 +
    # 3.75) / 2), 2) = 2 of the sorted slopes: [-1, 2]
    t = theil_sen([[0, DAY_MS, 2 * DAY_MS]], [[10.0, 12.0, 11.0]])
    assert (t.slope[0], t.low[0], t.high[0]) == (0.5, -1.0, 2.0)


def test_a_flat_series_has_a_zero_slope_and_a_zero_width_interval():
    # all y tie: Sen's variance is n(n-1)(2n+5) less the same for the run of n ties = 0
    t = theil_sen([np.arange(24) * H], [np.full(24, 7.0)])
    assert (t.slope[0], t.low[0], t.high[0]) == (0.0, 0.0, 0.0)


def test_the_normal_quantile_is_scipys():
    # theilslopes takes z = norm.ppf(alpha / 2) for alpha = 0.05 (the last bit differs
    # from norm.ppf(0.975))
    assert trend_module._Z == -norm.ppf((1 - trend_module.CONFIDENCE) / 2)


def test_fewer_than_three_points_give_nan():
    t = theil_sen([[0, H, np.nan], [0, H, 2 * H]], [[1.0, 2.0, 3.0], [1.0, np.nan, 3.0]])
    assert np.isnan([t.slope, t.low, t.high]).all()


@pytest.mark.parametrize("seed", range(40))
def test_every_row_of_a_batch_equals_scipy_theilslopes(seed):
    # random lengths (NaN-padded rows), ties in x and y, several chunks of the batch
    rng = np.random.default_rng(seed)
    k = int(rng.integers(3, 40))
    rows = 50
    ends = np.full((rows, k), np.nan)
    ys = np.full((rows, k), np.nan)
    for r in range(rows):
        n = int(rng.integers(3, k + 1))
        hours = np.sort(rng.choice(200, size=n, replace=bool(rng.random() < 0.3)))
        ends[r, :n] = 1_700_000_000_000 + hours * H
        ys[r, :n] = np.round(10 + rng.normal(0, 2, n) + rng.normal() * hours / 24, 1)
    t = theil_sen(ends, ys)
    for r in range(rows):
        keep = ~np.isnan(ys[r])
        expected = scipy_trend(ends[r, keep], ys[r, keep])
        np.testing.assert_allclose((t.slope[r], t.low[r], t.high[r]), expected, rtol=1e-9)


def test_the_newest_k_points_within_the_span_are_picked():
    ends = np.array([1, 2, 3, 4, 9, 10]) * H
    points = np.array([True, True, False, True, True, True])
    full, index = rolling_points(ends, points, 3, 7 * H)
    # window ending 4h: points ending 1h, 2h, 4h (3h is no point); 9h: 4h, 9h only within
    # (2h, 9h]; 10h: 4h, 9h, 10h within (3h, 10h]
    assert full.tolist() == [False, False, False, True, False, True]
    assert index[3].tolist() == [0, 1, 3] and index[5].tolist() == [3, 4, 5]


# --- the rmse_trend SLI -------------------------------------------------------------------


def window(i: int, rmse: float, settled: bool = True) -> dict:
    return {
        "window_start_ms": i * H,
        "window_end_ms": (i + 1) * H,
        "label_coverage": 1.0 if settled else 0.5,
        "complete": settled,
        "scored": 100 if settled else 50,
        "rmse": rmse,
    }


def trend_slo(**kw) -> Slo:
    args = dict(name="t", sli="rmse_trend", threshold=0.5, objective=0.9, trend_windows=24)
    args.update(kw)
    return Slo(**args)


def verdicts(slo: Slo, series, settled=None):
    settled = [True] * len(series) if settled is None else settled
    rows = [window(i, y, s) for i, (y, s) in enumerate(zip(series, settled, strict=True))]
    columns = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    return SLI_RULES["rmse_trend"].verdicts(slo, columns, np.inf)


RNG = np.random.default_rng(3)
NOISE = RNG.normal(0, 1.0, 48)  # RMSE noise, sd 1
DAYS = np.arange(48) / 24  # window i's position in days (its end less 1 h)


@pytest.mark.parametrize(
    "name, series, bad",
    [
        ("rising 3 per day", 10 + 3 * DAYS, True),
        ("flat", np.full(48, 10.0), False),
        ("flat and noisy", 10 + NOISE, False),
        ("rising 3 per day and noisy", 10 + 3 * DAYS + NOISE, True),
        ("falling", 20 - 3 * DAYS, False),
    ],
)
def test_the_newest_window_is_bad_when_the_error_rises_faster_than_the_threshold(name, series, bad):
    v = verdicts(trend_slo(), series)
    ends = (np.arange(48) + 1) * H
    slope, low, high = scipy_trend(ends[-24:], series[-24:])  # the 24 newest windows
    assert v.value[-1] == pytest.approx(slope, rel=1e-9)
    assert bool(v.bad[-1]) is bad
    assert bool(low > 0.5) is bad  # the reference agrees: bad means the low end above 0.5/day


def test_a_window_settles_once_trend_windows_settled_windows_end_at_it():
    # windows 2 and 5 have no labels: they are skipped, not fitted; window i settles
    # once 3 gated windows end at or before it: windows 0, 1, 3 -> window 3 first
    settled = [True, True, False, True, True, False, True]
    v = verdicts(trend_slo(trend_windows=3), [10.0 + i for i in range(7)], settled)
    assert v.settled.tolist() == [False, False, False, True, True, False, True]
    # window 6 fits windows 3, 4, 6 (RMSE 13, 14, 16 at 4 h, 5 h, 7 h)
    expected, _, _ = scipy_trend(np.array([4, 5, 7]) * H, [13.0, 14.0, 16.0])
    assert v.value[6] == pytest.approx(expected, rel=1e-12)


def test_the_fit_of_a_window_reaches_back_one_period_at_most():
    # period 4h: window 5 (ending 6h) sees windows ending in (2h, 6h]: 4 of them; with
    # windows 2-3 unlabeled only windows 4 and 5 are points: not enough for 3
    settled = [True, True, False, False, True, True]
    slo = trend_slo(trend_windows=3, period_s=4 * 3600, alerting=Alerting(page=(), ticket=()))
    v = verdicts(slo, [10.0] * 6, settled)
    assert not v.settled.any()


def test_a_suppressed_window_is_no_point_of_any_fit():
    # window 3 (a backfill spike) is suppressed: window 4 fits windows 1, 2, 4, flat
    slo = trend_slo(trend_windows=3, suppress=(Suppression(3 * H, 4 * H),))
    v = verdicts(slo, [10.0, 10.0, 10.0, 90.0, 10.0])
    assert v.value[4] == 0.0 and v.bad[4] == 0


def test_rising_rmse_pages_when_the_slope_is_confidently_above_the_threshold():
    # RMSE 10 for windows 0-5, then rises 1 per hour (24 per day). trend_windows 3:
    # window 6 fits RMSE 10, 10, 11: slopes 0, 12, 24 per day, low end 0 (good);
    # window 7 fits 10, 11, 12: every slope 24, low end 24 > 0.5 (bad). At frontier 8h
    # (window 7's end) the 1h lookback is window 7 alone: burn 1 / 0.1 = 10 >= 5; the
    # 2h lookback windows 6 and 7: 0.5 / 0.1 = 5 >= 5: the page fires there.
    slo = trend_slo(
        trend_windows=3,
        alerting=Alerting(page=(BurnWindow(7200, 3600, 5),), ticket=()),
    )
    series = [10.0] * 6 + [11.0, 12.0, 13.0]
    transitions, statuses = evaluate_history(
        slo, "overall", [window(i, y) for i, y in enumerate(series)]
    )
    assert [(t.state, t.frontier_ms // H) for t in transitions] == [("firing", 8)]
    assert transitions[0].value == pytest.approx(24.0)
    assert "RMSE slope +24/day over 3 windows" in transitions[0].summary
    assert statuses[0].frontier_ms == 3 * H  # windows 0 and 1 never settle (too few)


def test_the_evaluator_keeps_the_windows_the_trend_reads_one_period_back():
    # period 8h, windows fed one by one: the fit of the oldest window of the period
    # needs windows from before it, which the evaluator must not have forgotten
    slo = trend_slo(
        trend_windows=3,
        period_s=8 * 3600,
        alerting=Alerting(page=(BurnWindow(7200, 3600, 2),), ticket=()),
    )
    rows = [window(i, 10.0 + (i % 3)) for i in range(20)]
    expected = evaluate_history(slo, "overall", rows)[1]
    ev, statuses = SloEvaluator(slo, "overall"), []
    for r in rows:
        statuses += ev.update([r])[1]
    assert [(s.frontier_ms, s.eligible, s.budget_consumed) for s in statuses] == [
        (s.frontier_ms, s.eligible, s.budget_consumed) for s in expected
    ]
    assert expected[-1].eligible == 8  # the 8 windows of the period all settled
