"""Records far apart in time and at the ends of the accepted range, and orphan labels
that outwait every window: bounded runs and replays (tests/harness.py).

Expected outcomes are derived by hand in comments from the join rules (README, "Time,
lateness and panes"); window bounds come from Python's datetime.
"""

from __future__ import annotations

import datetime as dt
import time

import pandas as pd
import pytest

from msewatch.schemas.records import DEAD_LETTER
from msewatch.schemas.time_range import EARLIEST_MS, END_MS, MAX_DURATION_MS
from msewatch.transforms.io.replay_spool import plan_events, write_spool
from tests.harness import H, labels, latest, make_config, predictions, run_bounded, run_replay

pytestmark = pytest.mark.slow

YEAR_MS = 365 * 24 * H
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
METRIC_COLUMNS = ["window_start", "window_end", "slice", "predictions", "labeled", "expired"]
METRIC_COLUMNS += ["scored", "mse", "mae", "label_lag_max_s", "complete"]


def _records(times: list[int]) -> tuple:
    """One prediction per time (error i for the i-th), every other one labeled 10 min
    later, and one label without a prediction."""
    preds = predictions([{"id": f"p{i}", "t": t, "y": float(i)} for i, t in enumerate(times)])
    labs = [{"id": f"p{i}", "t": t + 600_000, "y": 0.0} for i, t in enumerate(times) if i % 2 == 0]
    labs.append({"id": "nobody", "t": times[3], "y": 1.0})
    return preds, labels(labs)


def _same_metrics(a: pd.DataFrame, b: pd.DataFrame) -> None:
    a, b = latest(a)[METRIC_COLUMNS], latest(b)[METRIC_COLUMNS]
    assert len(a) == len(b) > 0
    for column in METRIC_COLUMNS:
        if a[column].dtype.kind == "f":
            assert a[column].to_numpy() == pytest.approx(b[column].to_numpy(), nan_ok=True)
        else:
            assert list(a[column]) == list(b[column])


def test_a_replay_spanning_two_thousand_years_costs_what_a_day_costs(tmp_path):
    n = 20
    day = [T0 + i * H for i in range(n)]  # 19 hours
    # 2,000 years, from 1024 to 3024: windows before 1970 too (runners/direct_clock.py).
    far = [T0 - 1_000 * YEAR_MS + i * (2_000 * YEAR_MS // (n - 1)) for i in range(n)]
    seconds, outcomes = {}, {}
    for name, times in (("day", day), ("far", far)):
        preds, labs = _records(times)
        bounded, b_out = run_bounded(preds, labs, tmp_path / f"{name}-b", ttl_ms=3 * H)
        start = time.perf_counter()
        replay, r_out = run_replay(preds, labs, tmp_path / f"{name}-r", ttl_ms=3 * H)
        seconds[name] = time.perf_counter() - start
        assert b_out == r_out
        _same_metrics(bounded, replay)
        outcomes[name] = r_out
    print(
        f"replay: a day {seconds['day']:.1f} s, 2,000 years {seconds['far']:.1f} s, ratio "
        f"{seconds['far'] / seconds['day']:.2f}"
    )
    # 10 of 20 predictions labeled 10 min later (joined), 10 expire; one orphan label.
    for counts in outcomes.values():
        assert counts["prediction"] == {
            "input": 20,
            "joined": 10,
            "expired": 10,
            "duplicate": 0,
            "invalid": 0,
        }
        assert (counts["label"]["joined"], counts["label"]["orphan_label"]) == (10, 1)
    assert seconds["far"] < 60  # loose: it never finished before the stops followed the data


@pytest.mark.parametrize("span", [24 * H, 8_000 * YEAR_MS])
def test_planned_replay_steps_grow_with_records_not_with_time_span(tmp_path, span):
    # 20 predictions spread over the span, labels as in _records: each record is its
    # own chunk; besides, at most one stop per prediction's period (the garbage
    # collection of its first window) and two timer stops (last expiry, last orphan).
    times = [EARLIEST_MS + i * (span // 19) for i in range(20)]
    preds, labs = _records(times)
    config = make_config(tmp_path, False, ttl_ms=3 * H)
    arrivals = write_spool(preds, labs, DEAD_LETTER.empty_table(), str(tmp_path / "spool"))
    events = plan_events(arrivals, config.metrics.window, config.join, chunk_rows=1)
    records = preds.num_rows + labs.num_rows
    assert len(events) <= 1 + 2 * records + preds.num_rows + 2


@pytest.mark.parametrize("run", [run_bounded, run_replay], ids=["bounded", "replay"])
def test_records_at_both_ends_of_the_range_with_the_longest_window_and_ttls(tmp_path, run):
    # The first and the last accepted millisecond, 3650-day windows and TTLs: every
    # window bound, deadline and partition date must stay inside datetime.
    times = [EARLIEST_MS, EARLIEST_MS + H, END_MS - H, END_MS - 1]
    preds = predictions([{"id": f"p{i}", "t": t, "y": 1.0} for i, t in enumerate(times)])
    labs = labels(
        [{"id": "p0", "t": EARLIEST_MS + 5, "y": 3.0}, {"id": "p3", "t": END_MS - 1, "y": 0.0}]
    )
    df, outcomes = run(
        preds,
        labs,
        tmp_path,
        ttl_ms=MAX_DURATION_MS,
        orphan_ms=MAX_DURATION_MS,
        window_s=MAX_DURATION_MS // 1000,
    )
    assert outcomes["prediction"]["joined"] == 2 and outcomes["prediction"]["expired"] == 2
    final = latest(df)
    overall = final[final["slice"] == "overall"].reset_index(drop=True)
    # Reference: epoch-aligned 3650-day windows, by Python's datetime.
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    size = dt.timedelta(days=3650)
    expected = []
    for t in (times[0], times[3]):
        when = epoch + dt.timedelta(milliseconds=t)
        start = epoch + ((when - epoch) // size) * size
        expected.append((start, start + size))
    bounds = zip(overall["window_start"], overall["window_end"], strict=True)
    got = [(start.to_pydatetime(), end.to_pydatetime()) for start, end in bounds]
    assert got == expected
    # Window 1: p0 (error 1 - 3 = -2, squared 4) and p1 (expired); window 2: p2 expired, p3
    # error 1 - 0 = 1.
    assert list(overall["predictions"]) == [2, 2]
    assert list(overall["mse"]) == pytest.approx([4.0, 1.0])
    assert overall["complete"].all()


@pytest.mark.parametrize("grid_ms", [None, 1], ids=["period-grid", "exact-grid"])
def test_orphan_labels_outwaiting_every_window_are_counted_in_the_replay(tmp_path, grid_ms):
    # label_ttl 6 h, orphan_ttl 24 h, 1 h windows. Labels come first:
    # * a's label at 9 h waits; a is made at 10 h (1 h later, within the orphan TTL): joined;
    # * x's label at 0 h and y's at 11 h have no prediction: orphans when the watermark
    #   passes 24 h and 35 h, long after the last window (12-13 h) closed at 19 h;
    # * b is made at 12 h and labeled at 12:30: joined.
    # predictions: 2 joined; labels: 2 joined, 2 orphans (the bounded rules agree).
    preds = predictions([{"id": "a", "t": 10 * H, "y": 1.0}, {"id": "b", "t": 12 * H, "y": 2.0}])
    labs = labels(
        [
            {"id": "x", "t": 0, "y": 0.0},
            {"id": "a", "t": 9 * H, "y": 4.0},
            {"id": "y", "t": 11 * H, "y": 0.0},
            {"id": "b", "t": 12 * H + H // 2, "y": 2.5},
        ]
    )
    cfg = {"ttl_ms": 6 * H, "orphan_ms": 24 * H, "grid_ms": grid_ms}
    replay, r_out = run_replay(preds, labs, tmp_path / "r", **cfg)
    bounded, b_out = run_bounded(preds, labs, tmp_path / "b", **cfg)
    assert r_out["label"] == {
        "input": 4,
        "joined": 2,
        "late_label": 0,
        "orphan_label": 2,
        "duplicate": 0,
        "invalid": 0,
    }
    assert r_out == b_out
    _same_metrics(bounded, replay)
