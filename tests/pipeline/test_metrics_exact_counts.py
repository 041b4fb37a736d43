"""The exact per-bound counts (error_exceedance, labeled_within) in written metrics rows.

Runs of the real pipeline (1 h windows, label_ttl 3 h), bounded and as a streaming
replay (accumulating panes: the latest pane holds the window's counts); rows read back
from Parquet with pandas.
"""

from __future__ import annotations

import math

import pytest

from tests.harness import H, labels, latest, predictions, row, run_bounded, run_replay

pytestmark = pytest.mark.slow

MIN = 60_000


def as_lists(value) -> list[dict]:
    """A list-of-records cell as pandas reads it (an array of dicts) -> a list."""
    return [dict(item) for item in value]


@pytest.mark.parametrize("run", [run_bounded, run_replay], ids=["bounded", "replay"])
def test_written_rows_hold_the_counts_per_threshold_and_bound(tmp_path, run):
    preds = predictions(
        [
            {"id": "a", "t": 0, "y": 5.0, "w": 2.0, "region": "eu"},
            {"id": "b", "t": 10 * MIN, "y": 10.0, "region": "eu"},
            {"id": "c", "t": 20 * MIN, "y": 0.0, "w": 0.5, "region": "us"},
            {"id": "d", "t": 30 * MIN, "y": math.nan, "region": "us"},
            {"id": "e", "t": 40 * MIN, "y": 3.0, "region": "us"},  # never labeled
            {"id": "f", "t": H + 5 * MIN, "y": 7.0, "w": 3.0, "region": "eu"},
        ],
        segment_keys=("region",),
    )
    labs = labels(
        [
            {"id": "a", "t": 30_000, "y": 4.0},  # e = 1, lag 30 s
            {"id": "b", "t": 10 * MIN + 2 * H, "y": 6.0},  # e = 4, lag 7200 s
            {"id": "c", "t": 19 * MIN, "y": 2.5},  # e = -2.5, lag -60 s
            {"id": "d", "t": 30 * MIN + H, "y": 1.0},  # not scored (NaN y_pred), lag 3600 s
            {"id": "f", "t": H + 5 * MIN + 10_000, "y": 1.0},  # e = 6, lag 10 s
        ]
    )
    df, _ = run(
        preds,
        labs,
        tmp_path,
        slices=("region",),
        error_thresholds=(1.0, 3.0),
        freshness_within_s=(60, 3600),
    )
    rows = latest(df)

    def counts(start_ms, slice_name):
        r = row(rows, start_ms, slice_name)
        return as_lists(r["error_exceedance"]), as_lists(r["labeled_within"])

    def exceed(*sums_counts):
        return [
            {"threshold": t, "sum_w": s, "count": c}
            for t, (s, c) in zip((1.0, 3.0), sums_counts, strict=True)
        ]

    def within(*labeled):
        return [{"within_s": s, "labeled": n} for s, n in zip((60, 3600), labeled, strict=True)]

    # Window 0, scored |e| (weight): a 1 (2), b 4 (1), c 2.5 (0.5); a's 1 is not > 1.
    # Lags: a 30, b 7200, c -60 (within every bound), d 3600 (within 3600); e unlabeled.
    assert counts(0, "overall") == (exceed((1.5, 2), (1.0, 1)), within(2, 3))
    assert counts(0, "region=eu") == (exceed((1.0, 1), (1.0, 1)), within(1, 1))  # a, b
    assert counts(0, "region=us") == (exceed((0.5, 1), (0.0, 0)), within(1, 2))  # c, d
    # Window 1: f alone, |e| 6 with weight 3, lag 10 s.
    assert counts(H, "overall") == (exceed((3.0, 1), (3.0, 1)), within(1, 1))
    assert row(rows, 0)["scored"] == 3 and row(rows, 0)["expired"] == 1


def test_rows_hold_empty_lists_without_bounds(tmp_path):
    preds = predictions([{"id": "a", "t": 0, "y": 5.0}])
    labs = labels([{"id": "a", "t": 30_000, "y": 4.0}])
    df, _ = run_bounded(preds, labs, tmp_path)
    r = row(latest(df), 0)
    assert as_lists(r["error_exceedance"]) == as_lists(r["labeled_within"]) == []
    assert r["scored"] == 1
