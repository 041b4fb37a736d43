"""A traffic SLO in the pipeline: a slice that goes silent pages, one that stops for good
retires, and the bounded run and the streaming replay agree.

Three days of hourly windows (window k is [k h, (k + 1) h)), 4 predictions an hour per
region, no labels. region=steady never stops; region=gap sends nothing in windows
30-35 (6 h); region=gone sends nothing from window 24 on. The SLO: trailing 12h (window
k reads windows k-12 .. k-1; it settles from k = 6, when window 0, ending 1h, is at
least 6h before its end), bad below 0.5 of the median, retire_after 4h.
"""

from __future__ import annotations

import pandas as pd
import pytest

from tests.harness import H, alerts_and_status, labels, predictions, run_both
from tests.slo_examples import paging, slo_file

SLO = slo_file(
    paging(
        name="tr",
        sli="traffic",
        threshold=0.5,
        trailing="12h",
        retire_after="4h",
        keep_firing_for="1h",
    )
)
HOURS = 72


def _silent(region: str, hour: int) -> bool:
    return (region == "gap" and 30 <= hour <= 35) or (region == "gone" and hour >= 24)


def _records():
    preds = [
        {"id": f"{region}-{hour}-{i}", "t": hour * H + i * 900_000, "y": 1.0, "region": region}
        for hour in range(HOURS)
        for region in ("steady", "gap", "gone")
        for i in range(4)
        if not _silent(region, hour)
    ]
    return predictions(preds, segment_keys=("region",)), labels([])


def _at(hour: int) -> pd.Timestamp:
    return pd.Timestamp(hour * H, unit="ms", tz="UTC")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    preds, labs = _records()
    cfg = {"slices": ("region",), "ttl_ms": H, "slo": SLO}
    return alerts_and_status(run_both(tmp_path_factory, preds, labs, 12, **cfg))


def _transitions(alerts: pd.DataFrame) -> list[tuple[str, str, pd.Timestamp]]:
    rows = alerts.sort_values(["frontier", "alert"])
    return [(r.alert, r.state, r.frontier) for r in rows.itertuples()]


def test_the_silent_regions_page_and_the_gap_resolves_when_traffic_returns(runs):
    # gone: window 24 is a zero row, 0 / median 4: bad; at frontier 25h the 1h lookback
    # burns 1 / 0.1 = 10 and the 2h one (windows 23 good, 24 bad) 0.5 / 0.1 = 5 >= 5.
    # gap: the same at window 30 (frontier 31h). Its zero rows are windows 30-33 (the
    # windows 34, 35 are more than 4h after its last row, window 29 ending 30h). Window 36
    # reads windows 24-35 present: six 4s and four 0s, median 4: 4 / 4 = 1, good. At
    # 37h no condition holds and the last one held at 34h (>= 1h ago): resolved.
    alerts, _ = runs["bounded"]
    assert _transitions(alerts) == [
        ("tr/page/region=gone", "firing", _at(25)),
        ("tr/page/region=gap", "firing", _at(31)),
        ("tr/page/region=gap", "resolved", _at(37)),
    ]
    silent = alerts[alerts.state == "firing"]
    assert silent.value.tolist() == [0.0, 0.0]
    assert silent.summary.str.contains("no predictions: silent").all()


def test_the_steady_region_settles_from_window_6_and_never_pages(runs):
    _, status = runs["bounded"]
    steady = status[status.slice == "region=steady"].sort_values("frontier")
    assert steady.frontier.tolist() == [_at(k + 1) for k in range(6, HOURS)]
    assert (steady.value == 1.0).all() and (steady.page_state == "ok").all()


def test_a_region_gone_for_good_retires_after_retire_after(runs):
    # its last row is window 23 (end 24h): zero rows for the windows ending 25h..28h,
    # none after, so its last evaluation is at 28h (without retirement, windows 28-30
    # would still settle: their medians are 4, 4 and (0 + 4) / 2 = 2).
    for _, status in runs.values():
        gone = status[status.slice == "region=gone"]
        assert gone.frontier.max() == _at(28)
        assert (gone[gone.frontier >= _at(25)].value == 0).all()


def test_the_replay_gives_the_same_transitions_and_statuses(runs):
    bounded_alerts, bounded_status = runs["bounded"]
    replay_alerts, replay_status = runs["replay"]
    assert _transitions(replay_alerts) == _transitions(bounded_alerts)

    def evaluations(status):
        s = status.sort_values(["slice", "frontier"])
        return list(zip(s.slice, s.frontier, s.value, s.page_state, strict=True))

    assert evaluations(replay_status) == evaluations(bounded_status)
    # streaming records the watermark: at least the frontier it judged
    assert (replay_alerts.watermark >= replay_alerts.frontier).all()


SLIDING_SLO = slo_file(
    paging(name="tr", sli="traffic", threshold=0.4, trailing="6h", keep_firing_for="1h")
)


@pytest.fixture(scope="module")
def sliding(tmp_path_factory):
    """2h windows every 1h, 30 hours, 4 predictions an hour; region=gap sends nothing
    in hours 14-17."""
    preds = [
        {"id": f"{region}-{hour}-{i}", "t": hour * H + i * 900_000, "y": 1.0, "region": region}
        for hour in range(30)
        for region in ("steady", "gap")
        for i in range(4)
        if not (region == "gap" and 14 <= hour <= 17)
    ]
    preds = predictions(preds, segment_keys=("region",))
    cfg = {"slices": ("region",), "ttl_ms": H, "slo": SLIDING_SLO, "every_s": 3600}
    outputs = run_both(tmp_path_factory, preds, labels([]), 8, "sliding", window_s=7200, **cfg)
    return alerts_and_status(outputs)


def test_sliding_windows_get_zero_rows_for_each_missing_window(sliding):
    # The window ending e is [e - 2h, e). region=gap: the windows ending 16h, 17h, 18h
    # hold no prediction (zero rows); those ending 15h and 19h hold one hour (4). The
    # window ending 15h reads the ends 9h..14h, all 8: 4 / 8 = 0.5 >= 0.4, good; 16h is
    # 0: bad, the page fires (1h: 1 / 0.1 = 10; 2h: one bad of two, 5). The window
    # ending 19h reads 8, 8, 4, 0, 0, 0: median 2, 4 / 2 = 2: good; the last condition
    # held at 18h: resolved at 19h.
    for alerts, _ in sliding.values():
        assert _transitions(alerts) == [
            ("tr/page/region=gap", "firing", _at(16)),
            ("tr/page/region=gap", "resolved", _at(19)),
        ]
    _, status = sliding["bounded"]
    gap = status[status.slice == "region=gap"].set_index("frontier")
    assert gap.loc[[_at(16), _at(17), _at(18)], "value"].tolist() == [0.0, 0.0, 0.0]
    # windows end 1h..31h (the last holds hour 29); a window settles from the end 4h
    # (the ends 1h, 2h, 3h, the oldest 3h before it): 28 evaluations, none past 31h
    assert gap.index.tolist() == [_at(e) for e in range(4, 32)]
    replay = sliding["replay"][1]
    assert sorted(zip(replay.slice, replay.frontier, replay.value, strict=True)) == sorted(
        zip(status.slice, status.frontier, status.value, strict=True)
    )
