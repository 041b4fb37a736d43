"""Shadow predictions in the join kernel: one label scores every model version's
prediction of its id.

Label TTL 3 h, orphan TTL 1 h. Every expected outcome and example is derived by hand
in the test; streaming (``step``/``expire`` in time order) and bounded
(``resolve_bounded``) are checked against the same expectation where they agree.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest

from msewatch.transforms.join import kernel as jk
from msewatch.transforms.join.bounded import resolve_bounded
from msewatch.transforms.join.conflicts import JOIN_DETAILS
from msewatch.transforms.metrics.paired import pair_rows
from tests.harness import H, labels, predictions
from tests.join_replay import labeled_rows, run_streaming

CFG = jk.JoinConfig(label_ttl_ms=3 * H, orphan_ttl_ms=H)
COARSE = dataclasses.replace(CFG, timer_grid_ms=H)


def _counts(**kw) -> dict[str, int]:
    return {name: kw.get(name, 0) for name in (*jk.JOIN_COUNTERS, *JOIN_DETAILS)}


def _both_ways(preds: pa.Table, labs: pa.Table, one_step: bool = True):
    """Bounded, then streaming one record per step (exact and 1 h timer grids), then
    (``one_step``) all records in one step: ``[(counts, LABELED rows), ...]``."""
    examples, counts = resolve_bounded(preds, labs, CFG)
    runs = [(counts, labeled_rows(examples))]
    for cfg, batch in ((CFG, 1), (COARSE, 1), (CFG, 1000))[: 3 if one_step else 2]:
        counts, examples = run_streaming(preds, labs, batch, cfg)
        runs.append((counts, labeled_rows(examples)))
    return runs


def test_one_label_scores_every_versions_prediction():
    preds = predictions(
        [
            {"id": "a", "t": 0, "mv": "v1", "y": 1.0},
            {"id": "a", "t": 10, "mv": "v2", "y": 4.0},  # shadow: another version
            {"id": "a", "t": 20, "mv": "v1", "y": 9.0},  # same version again: duplicate
            {"id": "b", "t": 0, "mv": "v1", "y": 2.0},
        ]
    )
    labs = labels([{"id": "a", "t": H, "y": 2.0}, {"id": "b", "t": H, "y": 5.0}])
    # a's label scores v1 (lag 1 h) and v2 (lag 1 h - 10 ms); it is joined once.
    expected = [
        ("a", "v1", 1.0, 2.0, 3600.0),
        ("a", "v2", 4.0, 2.0, 3599.99),
        ("b", "v1", 2.0, 5.0, 3600.0),
    ]
    for counts, rows in _both_ways(preds, labs):
        assert counts == _counts(prediction_joined=3, prediction_duplicate=1, label_joined=2)
        assert rows == expected


def test_lag_over_ttl_for_one_version_within_it_for_another():
    preds = predictions(
        [{"id": "a", "t": 0, "mv": "v1", "y": 1.0}, {"id": "a", "t": 2 * H, "mv": "v2", "y": 3.0}]
    )
    labs = labels([{"id": "a", "t": 4 * H, "y": 2.0}])
    # v1's lag is 4 h > 3 h: expired (in streaming before the label comes); v2's is 2 h.
    for counts, rows in _both_ways(preds, labs):
        assert counts == _counts(prediction_joined=1, prediction_expired=1, label_joined=1)
        assert rows == [("a", "v2", 3.0, 2.0, 7200.0)]


@pytest.mark.parametrize(
    ("v2_time", "joined"),
    [(None, False), (4 * H + 30 * 60_000, True), (5 * H, True), (5 * H + 1, False)],
    ids=["no-v2", "v2-half-an-hour-after", "v2-orphan-ttl-after", "v2-past-orphan-ttl"],
)
def test_a_label_too_late_for_one_version_waits_orphan_ttl_for_another(v2_time, joined):
    """v1 at 0 expires at 3 h; its label at 4 h is late for it and waits until 5 h for
    another version's prediction. Streaming joins one made at most orphan_ttl (1 h)
    after the label; bounded joins any with lag <= TTL (the documented difference: a
    prediction made more than orphan_ttl after a label of its id)."""
    rows = [{"id": "a", "t": 0, "mv": "v1", "y": 1.0}]
    if v2_time is not None:
        rows.append({"id": "a", "t": v2_time, "mv": "v2", "y": 5.0})
    preds, labs = predictions(rows), labels([{"id": "a", "t": 4 * H, "y": 2.0}])
    # (in one step the label has not waited, and v1 has not expired yet: not time order)
    bounded, *streamed = _both_ways(preds, labs, one_step=False)
    joined_v2 = (
        _counts(prediction_joined=1, prediction_expired=1, label_joined=1),
        [("a", "v2", 5.0, 2.0, (4 * H - (v2_time or 0)) / 1000)],
    )
    for run in streamed:
        assert run == (
            joined_v2 if joined else (_counts(prediction_expired=len(rows), label_late=1), [])
        )
    skew_beyond_orphan_ttl = v2_time is not None and not joined
    assert bounded == (joined_v2 if skew_beyond_orphan_ttl else streamed[0])


@pytest.mark.parametrize(("after_ms", "joined"), [(H, True), (H + 1, False)])
def test_a_joined_label_scores_a_version_made_up_to_orphan_ttl_after_it(after_ms, joined):
    """v1 at 0 and its label at 2 h join; v2 is made ``after_ms`` after the label: it
    joins the label kept in v1's tombstone (lag -1 h) when within orphan_ttl (1 h)."""
    preds = predictions(
        [
            {"id": "a", "t": 0, "mv": "v1", "y": 1.0},
            {"id": "a", "t": 2 * H + after_ms, "mv": "v2", "y": 5.0},
        ]
    )
    labs = labels([{"id": "a", "t": 2 * H, "y": 2.0}])
    for cfg in (CFG, COARSE):
        counts, examples = run_streaming(preds, labs, 1, cfg)
        v1 = ("a", "v1", 1.0, 2.0, 7200.0)
        if joined:
            assert counts == _counts(prediction_joined=2, label_joined=1)
            assert labeled_rows(examples) == [v1, ("a", "v2", 5.0, 2.0, -3600.0)]
        else:
            assert counts == _counts(prediction_joined=1, prediction_expired=1, label_joined=1)
            assert labeled_rows(examples) == [v1]


def test_a_shadow_prediction_arriving_after_its_label_joined_is_still_scored():
    """Out of order: v1 (at 2 h) and the label (4 h) join; the watermark moves on to 7 h;
    then v2 made at 3 h (lag 1 h) and v3 made at 1 h - 1 ms (lag 3 h + 1 ms) arrive.
    v2 joins the label kept in the tombstone, v3 is too old for it and expires; the
    label stays joined once. Bounded gives the same outcomes."""
    v1 = predictions([{"id": "a", "t": 2 * H, "mv": "v1", "y": 1.0}])
    late = predictions(
        [
            {"id": "a", "t": 3 * H, "mv": "v2", "y": 6.0, "pos": 1},
            {"id": "a", "t": H - 1, "mv": "v3", "y": 7.0, "pos": 2},
        ]
    )
    labs = labels([{"id": "a", "t": 4 * H, "y": 3.0}])
    state = jk.ShardState.empty(CFG)
    state, first, c1 = jk.step(state, v1, labs, CFG)
    assert c1 == _counts(prediction_joined=1, label_joined=1)
    state, _, _ = jk.expire(state, 7 * H, CFG)
    state, second, c2 = jk.step(state, late, labels([]), CFG)
    assert c2 == _counts(prediction_joined=1)
    assert labeled_rows(second) == [("a", "v2", 6.0, 3.0, 3600.0)]
    state, _, c3 = jk.expire(state, 2**40, CFG)
    assert c3 == _counts(prediction_expired=1)  # v3
    total = {k: c1[k] + c2[k] + c3[k] for k in c1}
    everything = pa.concat_tables([v1, late])
    bounded_ex, bounded = resolve_bounded(everything, labs, CFG)
    assert bounded == total == _counts(prediction_joined=2, prediction_expired=1, label_joined=1)
    assert labeled_rows(bounded_ex) == labeled_rows(pa.concat_tables([first, second]))


def test_a_repeat_label_is_a_duplicate_for_every_version():
    preds = predictions(
        [{"id": "a", "t": 0, "mv": "v1", "y": 1.0}, {"id": "a", "t": 0, "mv": "v2", "y": 2.0}]
    )
    labs = labels([{"id": "a", "t": H, "y": 2.0}, {"id": "a", "t": 2 * H, "y": 8.0}])
    for counts, rows in _both_ways(preds, labs):
        # the repeat's 8.0 differs from the 2.0 that won: a conflicting duplicate
        assert counts == _counts(
            prediction_joined=2, label_joined=1, label_duplicate=1, label_duplicate_conflicting=1
        )
        assert [r[3] for r in rows] == [2.0, 2.0]  # the first label's y


def test_the_examples_one_label_scores_come_out_together_for_pairing():
    """Both versions' predictions of a and b arrive, then both labels in one batch: the
    LABELED examples come out in that one step's output, with their prediction_id, so
    that the paired comparison finds the pairs (baseline v1, candidate v2)."""
    preds = predictions(
        [
            {"id": "a", "t": 0, "mv": "v1", "y": 1.0},
            {"id": "a", "t": 0, "mv": "v2", "y": 4.0},
            {"id": "b", "t": 0, "mv": "v1", "y": 2.0},
            {"id": "b", "t": 0, "mv": "v2", "y": 5.0},
        ]
    )
    state = jk.ShardState.empty(CFG)
    state, arrived, _ = jk.step(state, preds, labels([]), CFG)
    assert arrived.column("prediction_id").to_pylist() == ["a", "a", "b", "b"]
    labs = labels([{"id": "a", "t": H, "y": 2.0}, {"id": "b", "t": H, "y": 5.0}])
    state, examples, _ = jk.step(state, predictions([]), labs, CFG)
    [(baseline, rows, moments)] = pair_rows(examples, [("v1", "v2")])
    assert baseline == "v1" and examples.column("model_version").take(rows).to_pylist() == [
        "v2",
        "v2",
    ]
    ids = examples.column("prediction_id").take(rows).to_pylist()
    # errors: a: v1 1-2 = -1, v2 4-2 = 2; b: v1 2-5 = -3, v2 5-5 = 0
    # per id: b, c, b², c², bc, |e_b|, |e_c|, |e_b||e_c|
    expected = {"a": [1, 4, 1, 16, 4, 1, 2, 2], "b": [9, 0, 81, 0, 0, 3, 0, 0]}
    np.testing.assert_allclose(moments, [expected[i] for i in ids])
