"""Conflicting duplicate labels (transforms/join/conflicts.py): a repeat of an id whose
y_true differs from the winning label's. Counted as a detail of the ``duplicate`` outcome
by both joins, alike; the outcomes rows still add up to the inputs."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from msewatch.transforms import outcomes
from msewatch.transforms.join import kernel as jk
from msewatch.transforms.join.bounded import resolve_bounded
from msewatch.transforms.join.conflicts import CONFLICTING
from tests.harness import H, labels, predictions
from tests.join_replay import run_streaming

CFG = jk.JoinConfig(label_ttl_ms=3 * H, orphan_ttl_ms=H)
NAN = math.nan


def _reference(label_recs) -> int:
    """Independent count: per id, the label with the earliest (time, position) wins;
    every other one whose y differs from the winner's conflicts (NaN equals NaN)."""
    winner, n = {}, 0
    for _, (i, _t, y) in sorted(enumerate(label_recs), key=lambda r: (r[1][1], r[0])):
        if i not in winner:
            winner[i] = y
        elif not (y == winner[i] or (math.isnan(y) and math.isnan(winner[i]))):
            n += 1
    return n


def test_each_place_the_winner_is_kept():
    # a: the winner (1.0) waits for its prediction; the repeats 2.0 and 2.0 come in the
    #    next batch -> 2 conflicting (against the waiting label, not the batch's first).
    # b: the winner (5.0) joined b's prediction (kept in its tombstone); repeats 5.0 and
    #    NaN -> 1 conflicting.
    # c: no prediction; the winner NaN and its repeat NaN in one batch -> the same value.
    # d: first label 3.0 and repeats 4.0, 3.0 in one batch -> 1 conflicting.
    state = jk.ShardState.empty(CFG)
    preds = predictions([{"id": "b", "t": 0, "y": 1.0}])
    first = labels(
        [
            {"id": "a", "t": 10, "y": 1.0},
            {"id": "b", "t": 10, "y": 5.0},
            {"id": "c", "t": 10, "y": NAN},
            {"id": "c", "t": 11, "y": NAN},
            {"id": "d", "t": 10, "y": 3.0},
            {"id": "d", "t": 11, "y": 4.0},
            {"id": "d", "t": 12, "y": 3.0},
        ]
    )
    state, _, counts = jk.step(state, preds, first, CFG)
    assert (counts["label_duplicate"], counts[CONFLICTING]) == (3, 1)  # c's and d's; d's 4.0
    repeats = labels(
        [
            {"id": "a", "t": 20, "y": 2.0},
            {"id": "a", "t": 21, "y": 2.0},
            {"id": "b", "t": 20, "y": 5.0},
            {"id": "b", "t": 21, "y": NAN},
        ]
    )
    state, _, counts = jk.step(state, predictions([]), repeats, CFG)
    assert (counts["label_duplicate"], counts[CONFLICTING]) == (4, 3)  # a's 2.0s, b's NaN


def test_a_repeat_of_an_orphaned_label_meets_its_tombstone():
    # "o" has no prediction: its label (7.0) waits 1 h, then ends orphan_label, kept as a
    # tombstone; a repeat 8.0 at 2 h is a conflicting duplicate.
    state, _, _ = jk.step(
        jk.ShardState.empty(CFG), predictions([]), labels([{"id": "o", "t": 0, "y": 7.0}]), CFG
    )
    state, _, counts = jk.expire(state, H + 1, CFG)
    assert counts["label_orphan"] == 1
    state, _, counts = jk.step(
        state, predictions([]), labels([{"id": "o", "t": 2 * H, "y": 8.0}]), CFG
    )
    assert (counts["label_duplicate"], counts[CONFLICTING]) == (1, 1)


@st.composite
def _records(draw):
    """Few ids within 5 h (< 2 x label_ttl: every repeat is a duplicate in streaming too),
    label values from a small set, so identical and conflicting repeats both occur."""
    ids, times = st.integers(0, 4), st.integers(0, 5 * H)
    ys = st.sampled_from([1.0, 2.0, NAN])
    preds = draw(st.lists(st.tuples(ids, times), max_size=20))
    return preds, draw(st.lists(st.tuples(ids, times, ys), max_size=30))


@settings(max_examples=100, deadline=None)
@given(_records(), st.integers(1, 5))
def test_bounded_and_streaming_count_the_same_conflicts(records, batch):
    pred_recs, label_recs = records
    preds = predictions([{"id": f"i{i}", "t": t, "y": 0.0} for i, t in pred_recs])
    labs = labels([{"id": f"i{i}", "t": t, "y": y} for i, t, y in label_recs])
    _, bounded = resolve_bounded(preds, labs, CFG)
    streamed, _ = run_streaming(preds, labs, batch, CFG)
    coarse, _ = run_streaming(preds, labs, batch, dataclasses.replace(CFG, timer_grid_ms=H))
    expected = _reference(label_recs)
    for counts in (bounded, streamed, coarse):
        assert counts[CONFLICTING] == expected <= counts["label_duplicate"]
        rows = list(outcomes._rows(outcomes._join_counts({**counts, "label_valid": len(labs)})))
        label_rows = [r for r in rows if r["record_type"] == "label" and r["outcome"] != "input"]
        assert sum(r["count"] for r in label_rows) == labs.num_rows  # conservation
        duplicate = [r for r in label_rows if r["outcome"] == "duplicate"]
        assert sum(r["count"] for r in duplicate) == counts["label_duplicate"]


def test_a_detail_moves_records_out_of_its_outcome_row():
    counts = jk.join_counts(label_duplicate=5, label_joined=2, **{CONFLICTING: 3})
    rows = list(outcomes._rows(outcomes._join_counts({**counts, "label_valid": 7})))
    assert rows == [
        {"record_type": "label", "outcome": "duplicate", "count": 2, "detail": None},
        {"record_type": "label", "outcome": "duplicate", "count": 3, "detail": "conflicting"},
        {"record_type": "label", "outcome": "input", "count": 7, "detail": None},
        {"record_type": "label", "outcome": "joined", "count": 2, "detail": None},
    ]
    # every duplicate conflicting: no NULL-detail duplicate row
    counts = jk.join_counts(label_duplicate=3, **{CONFLICTING: 3})
    rows = list(outcomes._rows(outcomes._join_counts(counts)))
    assert rows == [
        {"record_type": "label", "outcome": "duplicate", "count": 3, "detail": "conflicting"}
    ]


def test_differs_treats_nan_as_one_value():
    from msewatch.transforms.join.conflicts import differs

    a = np.array([1.0, NAN, NAN, np.inf, 0.0, -np.inf])
    b = np.array([1.0, NAN, 1.0, np.inf, -0.0, np.inf])
    assert differs(a, b).tolist() == [False, False, True, False, False, True]
