"""The SLO evaluation: burn rates, budget, settling, alert lifecycle, suppression.

Windows are hourly and start at the epoch (window i is [i h, (i + 1) h)), so a frontier
of ``k * H`` is the end of window ``k - 1``. Every expected number is derived in a
comment from the definitions in docs/slo.md.
"""

from __future__ import annotations

import datetime
import math
import pickle

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msewatch.schemas.slo import ALERT_COLUMNS
from msewatch.transforms.slo.kernel import SloEvaluator, evaluate_history
from msewatch.transforms.slo.spec import Alerting, BurnWindow, Slo, Suppression

H = 3_600_000  # one hour in ms
PAGE_ONLY = Alerting(page=(BurnWindow(3600, 300, 14.4),), ticket=())


def row(i: int, *, bad=False, settled=True, **overrides) -> dict:
    """Window i: 100 predictions, all labeled and scored (or half labeled: unsettled)."""
    r = {
        "window_start_ms": i * H,
        "window_end_ms": (i + 1) * H,
        "predictions": 100,
        "labeled": 100 if settled else 50,
        "scored": 100 if settled else 50,
        "label_coverage": 1.0 if settled else 0.5,
        "complete": settled,
        "rmse": 80.0 if bad else 10.0,
        "nan_predictions": 0,
        "sum_w": 100.0 if settled else 50.0,
        "bad_w": 100.0 if bad else 0.0,
        "fresh": 100,
    }
    r.update(overrides)
    return r


def rows(n: int, bad=(), unsettled=(), start=0) -> list[dict]:
    return [row(i, bad=i in bad, settled=i not in unsettled) for i in range(start, start + n)]


def rmse_slo(**kw) -> Slo:
    args = dict(name="fc", sli="rmse", threshold=40, objective=0.99, min_scored=30)
    args.update(kw)
    return Slo(**args)


def fired(transitions) -> list[tuple[str, str, int]]:
    return [(t.severity, t.state, t.frontier_ms // H) for t in transitions]


def test_a_burn_of_14_4_for_one_hour_of_30_days_spends_2_percent_of_the_budget():
    # error_rate, objective 0.99, 720 hourly windows (30 d) of weight 1000 each; the last
    # hour has 144 bad: bad share over 1 h = 144 / 1000 = 0.144 -> burn 0.144 / 0.01 = 14.4.
    # Budget over 30 d: total = 0.01 * 720 * 1000 = 7200, consumed = 144,
    # consumed / total = 144 / 7200 = 0.02 (= 14.4 * 1 h / 720 h), remaining 0.98.
    slo = Slo(name="er", sli="error_rate", threshold=5, objective=0.99, alerting=PAGE_ONLY)
    windows = [row(i, sum_w=1000.0, bad_w=144.0 if i == 719 else 0.0) for i in range(720)]
    transitions, statuses = evaluate_history(slo, "overall", windows)
    last = statuses[-1]
    assert last.frontier_ms == 720 * H
    assert last.burn_rates[last.lookbacks_s.index(3600)] == pytest.approx(14.4, rel=1e-12)
    assert last.budget_total == pytest.approx(7200, rel=1e-12)
    assert last.budget_consumed == 144
    assert last.budget_consumed / last.budget_total == pytest.approx(0.02, rel=1e-12)
    assert last.budget_remaining == pytest.approx(0.98, rel=1e-12)
    assert last.good_share == pytest.approx(1 - 144 / 720_000)
    # 14.4 over 1 h and over 5 m (the newest window): the page holds at exactly 14.4
    assert fired(transitions) == [("page", "firing", 720)]


def test_lookbacks_end_at_the_frontier_and_round_up_to_the_window_grid():
    # 10 windows, bad: window 7 (ends 8 h) and window 9 (ends 10 h, the frontier).
    # 5 m and 30 m: the newest window alone, bad -> 1 / 1 / 0.01 = 100.
    # 90 m: ends in (8.5 h, 10 h] -> windows 8, 9 -> 1 / 2 / 0.01 = 50.
    # 6 h: ends in (4 h, 10 h] -> windows 4..9 -> 2 / 6 / 0.01 = 33.33.
    alerting = Alerting(page=(BurnWindow(5400, 300, 1000), BurnWindow(21600, 1800, 1000)))
    slo = rmse_slo(alerting=alerting)
    _, statuses = evaluate_history(slo, "overall", rows(10, bad={7, 9}))
    last = statuses[-1]
    assert last.lookbacks_s == (300, 1800, 5400, 21600, 3 * 86400)
    assert last.burn_rates[:4] == pytest.approx((100, 100, 50, 100 * 2 / 6))
    # 3 d covers all 10 windows: 2 / 10 / 0.01 = 20
    assert last.burn_rates[4] == pytest.approx(20)


def test_the_budget_counts_windows_of_the_period_only():
    # 730 hourly windows, bad: 2 (ends 3 h, before the period) and 100 and 400.
    # Frontier 730 h, period 30 d = 720 h: windows ending in (10 h, 730 h] -> 720 windows,
    # 2 bad. total = 0.01 * 720 = 7.2 windows, remaining = 1 - 2 / 7.2 = 0.7222...
    slo = rmse_slo(alerting=Alerting(page=(), ticket=()))
    _, statuses = evaluate_history(slo, "overall", rows(730, bad={2, 100, 400}))
    last = statuses[-1]
    assert (last.eligible, last.budget_consumed) == (720, 2)
    assert last.budget_total == pytest.approx(7.2)
    assert last.budget_remaining == pytest.approx(1 - 2 / 7.2)
    assert last.good_share == pytest.approx(718 / 720)
    assert (last.page_state, last.ticket_state) == ("off", "off")


def test_the_worked_example_of_the_docs():
    # docs/slo.md "A worked example": default alerting, window 05:00-06:00 bad.
    # 06:00: 1h/5m = 1/1 / 0.01 = 100 >= 14.4 (page), 3d/6h = 1/6 / 0.01 = 16.7 >= 1
    # (ticket). 07:00: page conditions fail (1h: 0; 30m: 0), 7 - 6 >= 1 h: resolved.
    # The ticket's 6h lookback holds the bad window up to frontier 11:00 ((5 h, 11 h]),
    # not at 12:00: 12 - 11 >= 1 h, resolved at 12:00.
    transitions, statuses = evaluate_history(rmse_slo(), "overall", rows(20, bad={5}))
    assert fired(transitions) == [
        ("page", "firing", 6),
        ("ticket", "firing", 6),
        ("page", "resolved", 7),
        ("ticket", "resolved", 12),
    ]
    at_7 = statuses[6]
    assert at_7.frontier_ms == 7 * H
    assert at_7.burn_rates == pytest.approx((0, 0, 0, 100 / 6, 100 / 7))
    assert (at_7.page_state, at_7.ticket_state) == ("ok", "firing")


def test_a_window_without_its_labels_never_counts():
    # window 5 has RMSE 80 but only half its labels: unsettled, neither good nor bad.
    # It is never a frontier and nothing fires: 9 frontiers (windows 0-4 and 6-9).
    windows = rows(10, bad={5}, unsettled={5})
    transitions, statuses = evaluate_history(rmse_slo(), "overall", windows)
    assert transitions == []
    assert [s.frontier_ms // H for s in statuses] == [1, 2, 3, 4, 5, 7, 8, 9, 10]
    assert all(b == 0 for s in statuses for b in s.burn_rates)
    assert statuses[-1].eligible == 9


def test_a_complete_window_with_too_few_scored_never_counts():
    # complete (all resolved) but scored 20 < min_scored 30: a small segment stays out
    windows = rows(4) + [row(4, bad=True, scored=20, complete=True)]
    transitions, statuses = evaluate_history(rmse_slo(), "overall", windows)
    assert transitions == [] and statuses[-1].frontier_ms == 4 * H


def test_a_window_settles_on_coverage_or_completeness():
    # coverage 0.8 >= min_coverage 0.8 settles; coverage 0.5 but complete settles too
    slo = rmse_slo(alerting=PAGE_ONLY)
    covered = [row(0, bad=True, label_coverage=0.8, complete=False)]
    complete = [row(0, bad=True, label_coverage=0.5, complete=True)]
    assert fired(evaluate_history(slo, "overall", covered)[0]) == [("page", "firing", 1)]
    assert fired(evaluate_history(slo, "overall", complete)[0]) == [("page", "firing", 1)]


def test_a_late_label_that_turns_a_settled_window_bad_fires_at_that_update():
    # windows 0-5 settle good: frontier 6 h, nothing fires. A late pane of window 5
    # (RMSE 80): 1 h and 5 m both see window 5 alone -> 100 >= 14.4: the page fires at
    # the same frontier, with that update's watermark.
    ev = SloEvaluator(rmse_slo(alerting=PAGE_ONLY), "region=eu")
    assert ev.update(rows(6), watermark_ms=6 * H)[0] == []
    transitions, statuses = ev.update([row(5, bad=True)], watermark_ms=9 * H)
    assert fired(transitions) == [("page", "firing", 6)]
    assert transitions[0].watermark_ms == 9 * H and transitions[0].value == 80
    assert transitions[0].alert == "fc/page/region=eu"
    assert [s.page_state for s in statuses] == ["firing"]
    # the late pane replaced window 5's row: still 6 windows over the period, 1 bad
    assert (statuses[0].eligible, statuses[0].budget_consumed) == (6, 1)


def test_a_late_label_that_settles_an_older_bad_window_fires_the_ticket():
    # window 3 is unsettled at first; frontier 6 h. Its late pane settles it bad.
    # page: 1 h and 5 m see window 5 only (good) -> 0: no page.
    # ticket (3 d, 6 h, 1x): both see windows 0-5, 1 bad -> 1 / 6 / 0.01 = 16.7 >= 1.
    ev = SloEvaluator(rmse_slo(), "overall")
    assert ev.update(rows(6, unsettled={3}))[0] == []
    transitions, _ = ev.update([row(3, bad=True)])
    assert fired(transitions) == [("ticket", "firing", 6)]
    assert transitions[0].burn_rate_long == pytest.approx(100 / 6)


def test_an_outage_freezes_the_state_and_label_freshness_fires():
    # window 9 bad: the page fires at 10 h. Then labels stop: windows 10-39 never settle,
    # so the frontier stays at 10 h and the page neither resolves nor fires again,
    # whatever keep_firing_for says.
    windows = rows(10, bad={9}) + [
        row(i, settled=False, labeled=0, scored=0, label_coverage=0.0, rmse=math.nan, fresh=0)
        for i in range(10, 40)
    ]
    transitions, statuses = evaluate_history(rmse_slo(alerting=PAGE_ONLY), "overall", windows)
    assert fired(transitions) == [("page", "firing", 10)]
    assert statuses[-1].frontier_ms == 10 * H
    # label_freshness (threshold 0.9, objective 0.95): window 10 has fresh 0 / 100 < 0.9,
    # bad; at frontier 11 h both 1 h and 5 m see it alone: 1 / 1 / 0.05 = 20 >= 14.4.
    fresh = Slo(
        name="fresh",
        sli="label_freshness",
        threshold=0.9,
        within_s=86400,
        objective=0.95,
        alerting=PAGE_ONLY,
    )
    assert fired(evaluate_history(fresh, "overall", windows)[0]) == [("page", "firing", 11)]


def test_label_freshness_waits_for_the_watermark_to_pass_window_end_plus_within():
    fresh = Slo(
        name="fresh",
        sli="label_freshness",
        threshold=0.9,
        within_s=3600,
        objective=0.95,
        alerting=PAGE_ONLY,
    )
    ev = SloEvaluator(fresh, "overall")
    window = [row(0, fresh=0)]  # ends at 1 h, evaluable when the watermark reaches 2 h
    assert ev.update(window, watermark_ms=2 * H - 1) == ([], [])
    transitions, _ = ev.update(None, watermark_ms=2 * H)
    assert fired(transitions) == [("page", "firing", 1)]


def test_nan_rate_waits_for_the_window_to_close():
    nan = Slo(name="nan", sli="nan_rate", threshold=0.01, objective=0.999, alerting=PAGE_ONLY)
    ev = SloEvaluator(nan, "overall")
    window = [row(0, nan_predictions=2)]  # 2 / 100 = 0.02 > 0.01: bad once closed
    assert ev.update(window, watermark_ms=H - 1) == ([], [])
    assert fired(ev.update(None, watermark_ms=H)[0]) == [("page", "firing", 1)]


def test_an_alert_resolves_after_keep_firing_for_of_frontier_time():
    # window 5 bad: fires at 6 h (last held at 6 h). Windows 6, 9, 10 good and 7, 8
    # unsettled, so the next frontiers are 7 h, 10 h, 11 h. keep 3 h: at 7 h, 7 - 6 = 1 h
    # < 3 h; at 10 h, 10 - 6 = 4 h >= 3 h: resolved at 10 h (the gap in settled windows
    # is frontier time like any other).
    slo = rmse_slo(alerting=PAGE_ONLY, keep_firing_for_s=3 * 3600)
    windows = rows(11, bad={5}, unsettled={7, 8})
    transitions, _ = evaluate_history(slo, "overall", windows)
    assert fired(transitions) == [("page", "firing", 6), ("page", "resolved", 10)]
    resolved = transitions[1]
    assert resolved.burn_rate_long == 0 and resolved.long_window_s == 3600
    assert "resolved for overall" in resolved.summary and "3h" in resolved.summary


@pytest.mark.parametrize("keep_h, resolved_at", [(0, 7), (1, 7), (2, 8)])
def test_an_alert_resolves_once_no_condition_has_held_for_keep_firing_for(keep_h, resolved_at):
    # fires at 6 h (window 5 bad), then good windows: frontiers 7 h, 8 h, ...; it resolves
    # at the first frontier F with F - 6 h >= keep_firing_for.
    slo = rmse_slo(alerting=PAGE_ONLY, keep_firing_for_s=keep_h * 3600)
    transitions, _ = evaluate_history(slo, "overall", rows(10, bad={5}))
    assert fired(transitions) == [("page", "firing", 6), ("page", "resolved", resolved_at)]


def test_suppressed_windows_spend_no_budget_and_do_not_fire():
    # window 5 is bad but inside the suppression [5 h, 6 h): no alert, not eligible
    slo = rmse_slo(suppress=(Suppression(5 * H, 6 * H, "backfill"),))
    transitions, statuses = evaluate_history(slo, "overall", rows(10, bad={5}))
    assert transitions == []
    assert (statuses[-1].eligible, statuses[-1].budget_consumed) == (9, 0)
    assert [s.suppressed for s in statuses] == [i == 5 for i in range(10)]


def test_nothing_fires_while_the_frontier_window_is_suppressed():
    # condition: 6 h and 3 h both >= 14.4. Window 9 (ends 10 h) is suppressed; window 8
    # settles late, bad. At frontier 10 h the condition holds -- 3 h: windows 7, 8 (9 is
    # suppressed) -> 1 / 2 / 0.01 = 50; 6 h: windows 4-8 -> 1 / 5 / 0.01 = 20 -- but the
    # frontier's window is suppressed: no firing. At 11 h (window 10, good): 3 h sees
    # windows 8, 10 -> 50; 6 h windows 5-8, 10 -> 20: fires.
    alerting = Alerting(page=(BurnWindow(6 * 3600, 3 * 3600, 14.4),), ticket=())
    slo = rmse_slo(alerting=alerting, suppress=(Suppression(9 * H, 10 * H),))
    ev = SloEvaluator(slo, "overall")
    assert ev.update(rows(10, unsettled={8}))[0] == []
    transitions, statuses = ev.update([row(8, bad=True)])
    assert transitions == [] and statuses[-1].suppressed
    assert statuses[-1].burn_rates == pytest.approx((50, 20))
    assert fired(ev.update([row(10)])[0]) == [("page", "firing", 11)]


def test_a_transition_row_has_every_column_of_the_alerts_table():
    transitions, _ = evaluate_history(rmse_slo(alerting=PAGE_ONLY), "overall", rows(3, bad={2}))
    when = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
    out = transitions[0].as_row(when)
    assert tuple(out) == ALERT_COLUMNS
    # the record and the table's field list name the same columns (times renamed)
    renamed = {"frontier_ms": "frontier", "watermark_ms": "watermark"}
    record = {renamed.get(name, name) for name in type(transitions[0])._fields}
    assert record | {"emitted_at"} == set(ALERT_COLUMNS)
    assert out["frontier"] == datetime.datetime(1970, 1, 1, 3, tzinfo=datetime.UTC)
    assert out["watermark"] is None and out["emitted_at"] == when
    assert out["state"] == "firing" and out["severity"] == "page"
    assert out["summary"].startswith("fc page firing for overall")


def test_an_evaluator_pickles_mid_stream():
    ev = SloEvaluator(rmse_slo(alerting=PAGE_ONLY), "overall")
    ev.update(rows(5))
    restored = pickle.loads(pickle.dumps(ev))
    assert fired(restored.update([row(5, bad=True)])[0]) == [("page", "firing", 6)]


_SLIS = st.sampled_from(
    ["rmse", "error_rate", "nan_rate", "label_freshness", "rmse_trend", "label_anomaly"]
)
_THRESHOLDS = {"label_freshness": 0.5, "nan_rate": 0.5, "rmse_trend": 0.0, "label_anomaly": 0.5}
# label_anomaly: a bad window has 60 of its labels outside the range; none are NaN, none
# constant, no scale mismatch
_LABELS = {"nan_labels": 0, "y_true_min": 1.0, "y_true_max": 9.0}
_LABELS.update(sum_abs_pred=100.0, sum_abs_true=100.0)


@st.composite
def _cases(draw, slis=_SLIS, min_windows=1):
    n = draw(st.integers(min_windows, 40))
    kinds = draw(st.lists(st.sampled_from("gbu"), min_size=n, max_size=n))  # good/bad/unsettled
    conditions = []
    for _ in range(draw(st.integers(1, 2))):
        long_h = draw(st.integers(2, 8))
        short_h = draw(st.integers(1, long_h - 1))
        conditions.append(BurnWindow(long_h * 3600, short_h * 3600, draw(st.sampled_from([2, 5]))))
    suppress = ()
    if draw(st.booleans()):
        a = draw(st.integers(0, n))
        suppress = (Suppression(a * H, (a + draw(st.integers(1, 5))) * H),)
    sli = draw(slis)
    slo = Slo(
        name="p",
        sli=sli,
        threshold=_THRESHOLDS.get(sli, 40),
        within_s=3600 if sli == "label_freshness" else None,
        trend_windows=draw(st.integers(3, 5)) if sli == "rmse_trend" else None,
        valid_range=(0, 10) if sli == "label_anomaly" else None,
        objective=draw(st.sampled_from([0.5, 0.9])),
        # a period shorter than the history makes the updates forget old windows
        period_s=draw(st.sampled_from([8 * 3600, 12 * 3600, 30 * 86400])),
        alerting=Alerting(page=tuple(conditions), ticket=()),
        keep_firing_for_s=draw(st.sampled_from([0, 3600, 3 * 3600])),
        suppress=suppress,
    )
    windows = []
    for i, k in enumerate(kinds):
        w = row(i, bad=k == "b", settled=k != "u")
        if k == "u" and sli in ("label_freshness", "nan_rate"):
            w["predictions"] = 0  # those SLIs skip windows without predictions
        w["fresh"], w["nan_predictions"] = (10, 90) if k == "b" else (100, 0)
        w.update(_LABELS, outside=60 if k == "b" else 0)
        w["rmse"] += draw(st.sampled_from([0.0, 5.0]))  # rmse_trend: ties and rising runs
        windows.append(w)
    chunks = draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))
    return slo, windows, chunks


@settings(max_examples=60, deadline=None)
@given(_cases())
def test_the_history_equals_updates_fed_the_final_rows_in_window_order(case):
    _history_equals_updates(*case)


@settings(max_examples=60, deadline=None)
@given(_cases(st.just("rmse_trend"), min_windows=10))
def test_rmse_trend_history_equals_updates_though_the_updates_forget_old_windows(case):
    # rmse_trend judges a window by the windows before it, which the updates must keep
    _history_equals_updates(*case)


def _history_equals_updates(slo, windows, chunks):
    expected = evaluate_history(slo, "overall", windows)
    ev, transitions, statuses, i = SloEvaluator(slo, "overall"), [], [], 0
    for size in chunks:
        if i >= len(windows):
            break
        t, s = ev.update(windows[i : i + size])
        transitions += t
        statuses += s
        i += size
    assert transitions == expected[0]
    assert [_plain(s) for s in statuses] == [_plain(s) for s in expected[1]]


def _plain(status) -> tuple:
    """A status with NaN written as None (NaN != NaN)."""

    def plain(v):
        if isinstance(v, tuple):
            return tuple(plain(x) for x in v)
        return None if isinstance(v, float) and math.isnan(v) else v

    return plain(tuple(status))


def test_arrow_tables_and_row_dicts_give_the_same_evaluation():
    windows = rows(12, bad={4, 10}, unsettled={6})
    as_table = pa.Table.from_pylist(windows)
    assert evaluate_history(rmse_slo(), "overall", as_table) == evaluate_history(
        rmse_slo(), "overall", windows
    )


def test_window_rows_without_a_column_the_sli_reads_are_refused():
    without = [{k: v for k, v in r.items() if k != "bad_w"} for r in rows(2)]
    slo = Slo(name="e", sli="error_rate", threshold=1, objective=0.9)
    with pytest.raises(ValueError, match="window rows lack bad_w"):
        evaluate_history(slo, "overall", without)


def test_firing_lists_the_alerts_that_fire_now():
    ev = SloEvaluator(rmse_slo(alerting=PAGE_ONLY, keep_firing_for_s=0), "overall")
    transitions, _ = ev.update(rows(3, bad={2}))
    assert ev.firing() == transitions
    ev.update([row(3)])  # the next window is good: resolved (keep_firing_for 0)
    assert ev.firing() == []
