"""Flapping: the ``fired_24h`` count of the alerts table, in the SLO kernel.

Windows are hourly from the epoch (window i is [i h, (i + 1) h), its frontier (i + 1) h),
as in ``test_slo_kernel.py``. The SLO pages at 14.4x over 1 h and 5 m: both lookbacks are
the newest window alone, so a bad window (RMSE 80 > 40) burns 1 / 0.01 = 100 and fires,
and with ``keep_firing_for: 0`` the next good window (burn 0) resolves it. Every expected
count below is the firings whose frontier lies in (F - 24 h, F], counted by hand.
"""

from __future__ import annotations

import datetime
import pickle

import pytest

from msewatch.transforms import flapping
from msewatch.transforms.slo.kernel import SloEvaluator, evaluate_history
from msewatch.transforms.slo.spec import Alerting, BurnWindow, Slo

H = 3_600_000
PAGE_ONLY = Alerting(page=(BurnWindow(3600, 300, 14.4),), ticket=())
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
BAD = (2, 5, 8, 26, 40)  # bad windows: they fire at frontiers 3, 6, 9, 27 and 41 h


def window(i: int, bad: bool) -> dict:
    """Window i: 100 predictions, all labeled and scored; RMSE 80 when bad, else 10."""
    return {
        "window_start_ms": i * H,
        "window_end_ms": (i + 1) * H,
        "predictions": 100,
        "labeled": 100,
        "scored": 100,
        "label_coverage": 1.0,
        "complete": True,
        "rmse": 80.0 if bad else 10.0,
        "nan_predictions": 0,
        "sum_w": 100.0,
        "bad_w": 0.0,
        "fresh": 100,
    }


WINDOWS = [window(i, i in BAD) for i in range(44)]


def twitchy(keep_firing_for_s: int = 0) -> Slo:
    return Slo(name="fc", sli="rmse", threshold=40, objective=0.99, min_scored=30,
               alerting=PAGE_ONLY, keep_firing_for_s=keep_firing_for_s)  # fmt: skip


def counted(transitions) -> list[tuple[str, int, int]]:
    return [(t.state, t.frontier_ms // H, t.fired_24h) for t in transitions]


# (state, frontier h, fired_24h): firings in (F - 24, F]
FLAPS = [
    ("firing", 3, 1),  # {3}
    ("resolved", 4, 1),  # {3}
    ("firing", 6, 2),  # {3, 6}
    ("resolved", 7, 2),
    ("firing", 9, 3),  # {3, 6, 9}
    ("resolved", 10, 3),
    ("firing", 27, 3),  # (3, 27]: {6, 9, 27}; the firing at 3 h is exactly 24 h old, out
    ("resolved", 28, 3),  # (4, 28]: {6, 9, 27}
    ("firing", 41, 2),  # (17, 41]: {27, 41}
    ("resolved", 42, 2),  # (18, 42]: {27, 41}
]


def test_each_transition_counts_the_alerts_firings_of_the_trailing_day():
    transitions, _ = evaluate_history(twitchy(), "overall", WINDOWS)
    assert counted(transitions) == FLAPS


def test_firing_again_within_a_day_is_flapping_once_is_not():
    assert flapping.FLAPPING_FIRINGS == 2
    assert [flapping.is_flapping(n) for n in (None, float("nan"), 0, 1, 2, 3)] == [
        False, False, False, False, True, True,
    ]  # fmt: skip
    transitions, _ = evaluate_history(twitchy(), "overall", WINDOWS)
    flagged = [t.frontier_ms // H for t in transitions if flapping.is_flapping(t.fired_24h)]
    assert flagged == [6, 7, 9, 10, 27, 28, 41, 42]


def test_streaming_updates_window_by_window_count_as_the_history_does():
    slo = twitchy()
    evaluator, streamed = SloEvaluator(slo, "overall"), []
    for i, w in enumerate(WINDOWS):
        if i == 20:  # the state survives Beam's pickling mid-stream
            evaluator = pickle.loads(pickle.dumps(evaluator))
        streamed += evaluator.update([w], watermark_ms=(i + 1) * H)[0]
    assert counted(streamed) == FLAPS
    assert evaluator._alerts["page"].firings_ms == (27 * H, 41 * H)  # pruned to the day


def test_keep_firing_for_as_long_as_the_gap_between_firings_calms_it():
    # firings at 3, 6 and 9 h are 3 h apart: with keep_firing_for 3h the alert that fired
    # at 3 h is renewed at 6 and 9 h (4 - 3 and 5 - 3 < 3 h) and resolves at 12 h (12 - 9);
    # 26 and 40 fire once each; 27 and 41 are 14 h apart, so the one at 41 h flaps
    transitions, _ = evaluate_history(twitchy(3 * 3600), "overall", WINDOWS)
    assert counted(transitions) == [
        ("firing", 3, 1),
        ("resolved", 12, 1),
        ("firing", 27, 1),  # (3, 27]: the firing at 3 h is out
        ("resolved", 30, 1),
        ("firing", 41, 2),  # (17, 41]: {27, 41}
        ("resolved", 44, 2),
    ]


def test_the_kept_firings_are_bounded():
    firings = ()
    for k in range(1000):  # a firing every minute: 1000 in a day
        firings = flapping.record_firing(firings, k * 60_000)
    assert len(firings) == flapping.MAX_KEPT_FIRINGS
    assert firings[-1] == 999 * 60_000


def test_firings_older_than_a_day_are_forgotten():
    day = flapping.FLAP_SPAN_S * 1000
    assert flapping.record_firing((0, 5, day), day + 5) == (day, day + 5)  # 0 and 5 are out
    assert flapping.recent_firings((0, 1, day), day) == (1, day)


@pytest.mark.parametrize("keep_h", [0, 1])
def test_a_calm_alert_counts_one(keep_h):
    windows = [window(i, i == 5) for i in range(30)]
    transitions, _ = evaluate_history(twitchy(keep_h * 3600), "overall", windows)
    assert [t.fired_24h for t in transitions] == [1, 1]


def test_a_comparison_alert_counts_its_firings_of_the_trailing_day():
    from msewatch.transforms.compare.kernel import evaluate_history as compare_history
    from tests.unit.test_compare_kernel import _cmp, _row

    # lookback 1h: each hour decides alone. +50 % on 20 000 each is FAIL, equal models on
    # 200 000 each PASS (test_compare_kernel.py). FAIL at hours 0, 2 and 30 fire at the
    # frontiers 1, 3 and 31 h; PASS at hours 1 and 3 resolve at 2 and 4 h
    rows = []
    for hour, worse in ((0, True), (1, False), (2, True), (3, False), (30, True)):
        n = 20_000 if worse else 200_000
        rows += [_row("v1", hour, n, 1.0), _row("v2", hour, n, 1.5 if worse else 1.0)]
    _, transitions = compare_history(_cmp(lookback_s=3600), "region=eu", rows)
    assert counted(transitions) == [
        ("firing", 1, 1),  # {1}
        ("resolved", 2, 1),
        ("firing", 3, 2),  # {1, 3}: flapping
        ("resolved", 4, 2),
        ("firing", 31, 1),  # (7, 31]: {31}
    ]


def test_alertmanager_gets_the_firing_count_as_an_annotation():
    from msewatch.transforms.io.alerts import alertmanager_alert

    [first, *_] = evaluate_history(twitchy(), "overall", WINDOWS)[0]
    row = first._replace(fired_24h=2).as_row(EPOCH)
    assert alertmanager_alert(row)["annotations"]["fired_24h"] == "2"
    assert "fired_24h" not in alertmanager_alert({**row, "fired_24h": None})["annotations"]
