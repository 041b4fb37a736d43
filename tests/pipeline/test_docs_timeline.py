"""The worked timeline of docs/semantics.md ("A worked timeline"), run as written.

1 h windows, label_ttl 3 h, orphan_ttl 1 h (so the expiry grid is 1 h). Every expected
number is the page's, derived by hand there: a is labeled after 25 min, b after
1 h 50 min (a LATE pane), c never in time (expires at 11:00 + 3 h; its label at 14:30
is late), x has no prediction (orphan), a's second label is a duplicate.
"""

from __future__ import annotations

import pytest

from tests.harness import H, labels, predictions, run_bounded, run_replay

pytestmark = pytest.mark.slow

M = 60_000
PREDICTIONS = [("a", 10 * H + 5 * M, 1.0), ("b", 10 * H + 20 * M, 2.0), ("c", 10 * H + 50 * M, 3.0)]
LABELS = [
    ("a", 10 * H + 30 * M, 0.0),
    ("b", 12 * H + 10 * M, 0.0),
    ("x", 12 * H + 30 * M, 0.0),
    ("c", 14 * H + 30 * M, 0.0),
    ("a", 15 * H, 5.0),
]
OUTCOMES = {
    "prediction": {"input": 3, "joined": 2, "expired": 1, "duplicate": 0, "invalid": 0},
    "label": {"input": 5, "joined": 2, "late_label": 1, "orphan_label": 1, "duplicate": 1}
    | {"invalid": 0},
}
MSE = (1.0**2 + 2.0**2) / 2  # a and b scored against y_true 0


def _run(mode, tmp_path):
    preds = predictions([{"id": i, "t": t, "y": y} for i, t, y in PREDICTIONS])
    labs = labels([{"id": i, "t": t, "y": y} for i, t, y in LABELS])
    run = run_replay if mode == "replay" else run_bounded
    rows, outcomes = run(preds, labs, tmp_path, ttl_ms=3 * H, orphan_ms=H)
    rows = rows[rows["slice"] == "overall"].sort_values("pane_index", ignore_index=True)
    return rows, outcomes


def test_streaming_panes_follow_the_timeline(tmp_path):
    rows, outcomes = _run("replay", tmp_path)
    assert outcomes == OUTCOMES
    on_time = rows.index[rows["pane_timing"] == "ON_TIME"].item()
    assert set(rows["pane_timing"][:on_time]) == {"EARLY"}
    counts = rows[["predictions", "labeled", "expired", "complete"]].to_records(index=False)
    assert [tuple(r) for r in counts[on_time:]] == [
        (3, 1, 0, False),  # watermark at 11:00: a labeled, b and c pending
        (3, 2, 0, False),  # LATE: b's label at 12:10
        (3, 2, 1, True),  # LATE: c expires at 14:00; nothing changes after that
    ]
    assert rows["mse"].iloc[-1] == pytest.approx(MSE)


def test_bounded_run_writes_the_final_row_and_the_same_outcomes(tmp_path):
    rows, outcomes = _run("bounded", tmp_path)
    assert outcomes == OUTCOMES
    assert len(rows) == 1
    final = rows.iloc[0]
    assert (final["pane_index"], final["pane_timing"], bool(final["complete"])) == (
        0,
        "ON_TIME",
        True,
    )
    assert (final["predictions"], final["labeled"], final["expired"]) == (3, 2, 1)
    assert final["mse"] == pytest.approx(MSE)
