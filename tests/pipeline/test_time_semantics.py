"""TestStream scripts (streaming replay on the DirectRunner) that pin the time semantics.

Windows are 1 h fixed, label_ttl 3 h, orphan_ttl 1 h unless a test says otherwise.
Each record arrives at its own time (predictions at event_time, labels at
label_time) and the watermark follows arrivals, one record per step.
"""

from __future__ import annotations

import pytest

from tests.harness import H, labels, latest, predictions, row, run_bounded, run_replay

pytestmark = pytest.mark.slow

TTL = 3 * H


def test_label_after_watermark_updates_its_window_in_a_late_pane(tmp_path):
    preds = predictions([{"id": "a", "t": 0, "y": 1.0}, {"id": "b", "t": 10 * 60_000, "y": 2.0}])
    # a's label arrives at 2 h, after the watermark passed the end (1 h) of a's window.
    labs = labels([{"id": "b", "t": 20 * 60_000, "y": 2.5}, {"id": "a", "t": 2 * H, "y": 3.0}])
    df, outcomes = run_replay(preds, labs, tmp_path, ttl_ms=TTL)
    w0 = df[(df["window_start"].astype("int64") == 0) & (df["slice"] == "overall")]
    on_time = w0[w0["pane_timing"] == "ON_TIME"].iloc[0]
    assert (on_time["predictions"], on_time["labeled"]) == (2, 1)
    assert not on_time["complete"]
    assert on_time["mse"] == pytest.approx(0.25)  # only b: (2 - 2.5)^2
    final = w0.loc[w0["pane_index"].idxmax()]
    assert final["pane_timing"] == "LATE"
    assert final["complete"]
    assert (final["predictions"], final["labeled"], final["expired"]) == (2, 2, 0)
    assert final["mse"] == pytest.approx((0.25 + 4.0) / 2)  # a: (1 - 3)^2 = 4
    assert final["label_lag_max_s"] == pytest.approx(7200.0)
    assert outcomes["label"]["joined"] == 2


@pytest.mark.parametrize(
    ("lag_ms", "joined"),
    [(TTL, True), (TTL + 1, False)],
    ids=["lag-exactly-ttl-joins", "one-ms-past-ttl-is-late"],
)
def test_expiry_boundary_is_exactly_label_ttl(tmp_path, lag_ms, joined):
    preds = predictions([{"id": "a", "t": 0, "y": 1.0}])
    labs = labels([{"id": "a", "t": lag_ms, "y": 2.0}])
    df, outcomes = run_replay(preds, labs, tmp_path, ttl_ms=TTL)
    final = row(latest(df), 0)
    assert final["complete"]
    if joined:
        assert (final["labeled"], final["expired"]) == (1, 0)
        assert outcomes["prediction"]["joined"] == 1
        assert outcomes["label"]["joined"] == 1
    else:
        assert (final["labeled"], final["expired"]) == (0, 1)
        assert outcomes["prediction"]["expired"] == 1
        assert outcomes["label"]["late_label"] == 1


def test_prediction_without_label_expires_at_ttl_in_a_late_pane(tmp_path):
    preds = predictions([{"id": "a", "t": 0, "y": 1.0}])
    df, outcomes = run_replay(preds, labels([]), tmp_path, ttl_ms=TTL)
    w0 = df[df["slice"] == "overall"]
    final = w0.loc[w0["pane_index"].idxmax()]
    assert (final["pane_timing"], final["expired"], final["complete"]) == ("LATE", 1, True)
    # not complete before expiry: the ON_TIME pane still waits for the label
    assert not w0[w0["pane_timing"] == "ON_TIME"]["complete"].any()
    assert outcomes["prediction"] == {
        "input": 1,
        "joined": 0,
        "expired": 1,
        "duplicate": 0,
        "invalid": 0,
    }


def test_label_before_its_prediction_waits_and_joins(tmp_path):
    # Label arrives 10 min before the prediction (clock skew): negative lag, kept.
    preds = predictions([{"id": "a", "t": 30 * 60_000, "y": 5.0}])
    labs = labels([{"id": "a", "t": 20 * 60_000, "y": 4.0}])
    df, outcomes = run_replay(preds, labs, tmp_path, ttl_ms=TTL)
    final = row(latest(df), 0)
    assert (final["labeled"], final["negative_lags"]) == (1, 1)
    assert final["label_lag_max_s"] == pytest.approx(-600.0)
    assert outcomes["label"]["joined"] == 1


def test_label_without_prediction_is_an_orphan(tmp_path):
    preds = predictions([{"id": "a", "t": 0, "y": 1.0}])
    labs = labels([{"id": "a", "t": 60_000, "y": 1.0}, {"id": "zzz", "t": 60_000, "y": 1.0}])
    _, outcomes = run_replay(preds, labs, tmp_path, ttl_ms=TTL)
    assert outcomes["label"]["orphan_label"] == 1
    assert outcomes["label"]["joined"] == 1


def test_duplicates_are_counted_once_and_first_wins(tmp_path):
    preds = predictions(
        [
            {"id": "a", "t": 0, "y": 1.0},
            {"id": "a", "t": 60_000, "y": 100.0},  # repeat: ignored
        ]
    )
    labs = labels(
        [
            {"id": "a", "t": 120_000, "y": 2.0},
            {"id": "a", "t": 180_000, "y": 50.0},  # repeat: ignored
        ]
    )
    df, outcomes = run_replay(preds, labs, tmp_path, ttl_ms=TTL)
    final = row(latest(df), 0)
    assert (final["predictions"], final["labeled"]) == (1, 1)
    assert final["mse"] == pytest.approx(1.0)  # (1 - 2)^2 from the first of each
    assert outcomes["prediction"]["duplicate"] == 1
    assert outcomes["label"]["duplicate"] == 1


def test_panes_accumulate(tmp_path):
    preds = predictions([{"id": f"p{i}", "t": i * 60_000, "y": float(i)} for i in range(4)])
    labs = labels([{"id": f"p{i}", "t": (i + 1) * 30 * 60_000, "y": 0.0} for i in range(4)])
    df, _ = run_replay(preds, labs, tmp_path, ttl_ms=TTL)
    w0 = df[df["slice"] == "overall"].sort_values("pane_index")
    assert list(w0["pane_index"]) == list(range(len(w0)))
    assert w0["labeled"].is_monotonic_increasing
    assert w0["predictions"].is_monotonic_increasing
    final = w0.iloc[-1]
    assert (final["predictions"], final["labeled"]) == (4, 4)
    assert final["mse"] == pytest.approx((0 + 1 + 4 + 9) / 4)


@pytest.mark.parametrize(
    "windows",
    [
        {"ttl_ms": TTL},  # expiry grid 1 h (the period)
        {"ttl_ms": TTL, "window_s": 7200, "every_s": 3600},  # sliding, grid 1 h
        {"ttl_ms": 45 * 60_000},  # TTL shorter than the period: grid 30 min
        {"ttl_ms": TTL, "grid_ms": 1},  # exact expiry (--expiry-grid 1ms)
    ],
    ids=["fixed", "sliding", "ttl-under-period", "exact-expiry"],
)
def test_bounded_and_replay_agree_on_complete_rows(tmp_path, windows):
    # The coarse expiry grid must deliver every expiry before its window closes:
    # a dropped one would leave the replay's rows incomplete or short of `expired`.
    rng = __import__("numpy").random.default_rng(3)
    n = 300
    t = rng.integers(0, 5 * H, n)
    lag = rng.lognormal(np_log(1800), 1.0, n).astype(int)
    keep = rng.random(n) < 0.85
    preds = predictions(
        [
            {
                "id": f"p{i}",
                "t": int(t[i]),
                "y": float(rng.normal()),
                "mv": f"v{i % 2}",
                "region": ["eu", "us", "apac"][i % 3],
            }
            for i in range(n)
        ],
        segment_keys=("region",),
    )
    labs = labels(
        [
            {"id": f"p{i}", "t": int(t[i] + lag[i]), "y": float(rng.normal())}
            for i in range(n)
            if keep[i]
        ]
    )
    cfg = {**windows, "slices": ("region",)}
    bounded, b_out = run_bounded(preds, labs, tmp_path / "b", **cfg)
    replay, r_out = run_replay(preds, labs, tmp_path / "r", chunk_rows=37, **cfg)
    assert b_out == r_out
    cols = [
        "window_start",
        "slice",
        "predictions",
        "labeled",
        "expired",
        "scored",
        "mse",
        "mae",
        "r2",
        "label_lag_max_s",
    ]
    b = latest(bounded)[cols]
    r = latest(replay)
    assert r["complete"].all()
    r = r[cols]
    assert len(b) == len(r) > 10
    assert b["expired"].sum() > 0
    for c in cols:
        if c in ("window_start", "slice"):
            assert list(b[c]) == list(r[c])
        else:
            assert b[c].to_numpy() == pytest.approx(r[c].to_numpy(), rel=1e-9, nan_ok=True)


def np_log(x):
    import math

    return math.log(x)


def test_sliding_windows_count_each_prediction_in_every_window_that_contains_it(tmp_path):
    # 2 h windows every 1 h. Predictions at 0:30 (error 1) and 1:30 (error 3), both
    # labeled 10 min later. Windows [-1h,1h): first only -> mse 1; [0h,2h): both ->
    # mse (1 + 9) / 2 = 5; [1h,3h): second only -> mse 9.
    preds = predictions(
        [{"id": "a", "t": H // 2, "y": 1.0}, {"id": "b", "t": 3 * H // 2, "y": 3.0}]
    )
    labs = labels(
        [
            {"id": "a", "t": H // 2 + 600_000, "y": 0.0},
            {"id": "b", "t": 3 * H // 2 + 600_000, "y": 0.0},
        ]
    )
    for run, out in ((run_bounded, tmp_path / "b"), (run_replay, tmp_path / "r")):
        df, _ = run(preds, labs, out, ttl_ms=TTL, window_s=7200, every_s=3600)
        final = latest(df)
        overall = final[final["slice"] == "overall"]
        assert list(overall["window_start"].astype("int64") // 1000) == [-H, 0, H]  # us -> ms
        assert list(overall["mse"]) == pytest.approx([1.0, 5.0, 9.0])
        assert list(overall["predictions"]) == [1, 2, 1]
        assert (overall["window_end"] - overall["window_start"]).dt.total_seconds().eq(7200).all()
