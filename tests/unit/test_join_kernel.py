"""The join kernel called directly: outcomes, first-wins, TTLs, and conservation.

The streaming functions are driven the way the stateful DoFn drives them: one
``step`` per batch of records in arrival order, and ``expire`` whenever the watermark
passes the shard's next deadline.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msewatch.schemas.records import ExampleKind
from msewatch.transforms.join import kernel as jk
from msewatch.transforms.join.bounded import resolve_bounded
from tests.harness import H, labels, predictions
from tests.join_replay import labeled_rows, run_streaming

CFG = jk.JoinConfig(label_ttl_ms=3 * H, orphan_ttl_ms=H)


def kinds(examples: pa.Table) -> dict[int, int]:
    values, counts = np.unique(examples.column("kind").to_numpy(), return_counts=True)
    return dict(zip(values.tolist(), counts.tolist(), strict=True))


def test_bounded_outcomes_cover_every_case():
    preds = predictions(
        [
            {"id": "joined", "t": 0, "y": 1.0},
            {"id": "late", "t": 0, "y": 1.0},
            {"id": "nolabel", "t": 0, "y": 1.0},
            {"id": "dup", "t": 5, "y": 2.0},
            {"id": "dup", "t": 1, "y": 7.0},  # earlier event_time: this one wins
        ]
    )
    labs = labels(
        [
            {"id": "joined", "t": 3 * H, "y": 1.5},  # lag == ttl: joined
            {"id": "late", "t": 3 * H + 1, "y": 1.5},  # 1 ms past: late_label
            {"id": "orphan", "t": 10, "y": 0.0},
            {"id": "dup", "t": 20, "y": 1.0},
            {"id": "dup", "t": 10, "y": 9.0},  # earlier label_time: this one wins
        ]
    )
    ex, counts = resolve_bounded(preds, labs, CFG)
    assert counts == {
        "prediction_joined": 2,
        "prediction_expired": 2,
        "prediction_duplicate": 1,
        "label_joined": 2,
        "label_late": 1,
        "label_orphan": 1,
        "label_duplicate": 1,
        "label_duplicate_conflicting": 1,  # dup's labels: 9.0 won, 1.0 differs
    }
    lab = ex.filter(pa.compute.equal(ex.column("kind"), ExampleKind.LABELED)).to_pylist()
    dup = next(r for r in lab if r["event_time_ms"] == 1)
    assert (dup["y_pred"], dup["y_true"], dup["label_lag_s"]) == (7.0, 9.0, 0.009)
    assert kinds(ex) == {ExampleKind.ARRIVED: 4, ExampleKind.LABELED: 2, ExampleKind.EXPIRED: 2}


def test_streaming_label_first_then_prediction_joins():
    state = jk.ShardState.empty(CFG)
    state, ex, counts = jk.step(
        state, predictions([]), labels([{"id": "a", "t": 100, "y": 2.0}]), CFG
    )
    assert ex.num_rows == 0 and state.labels.num_rows == 1
    state, ex, counts = jk.step(
        state, predictions([{"id": "a", "t": 50, "y": 1.0}]), labels([]), CFG
    )
    assert counts["label_joined"] == 1 and kinds(ex) == {0: 1, 1: 1}
    assert state.preds.num_rows == 0 and state.labels.num_rows == 0
    assert state.tombs.num_rows == 1  # remembered for duplicate detection


def test_streaming_expiry_and_orphan_deadlines():
    state = jk.ShardState.empty(CFG)
    state, _, _ = jk.step(
        state,
        predictions([{"id": "a", "t": 0, "y": 1.0}]),
        labels([{"id": "b", "t": 0, "y": 1.0}]),
        CFG,
    )
    # earliest deadline: the orphan at 0 + 1 h + 1 ms
    assert jk.next_deadline_ms(state, CFG) == H + 1
    state, ex, counts = jk.expire(state, H + 1, CFG)
    assert counts["label_orphan"] == 1 and ex.num_rows == 0
    assert jk.next_deadline_ms(state, CFG) == 3 * H + 1
    state, ex, counts = jk.expire(state, 3 * H, CFG)  # watermark not past yet
    assert counts["prediction_expired"] == 0
    state, ex, counts = jk.expire(state, 3 * H + 1, CFG)
    assert counts["prediction_expired"] == 1 and kinds(ex) == {ExampleKind.EXPIRED: 1}
    # A label arriving after expiry met a prediction it is too late for; it waits until
    # 4 h + orphan_ttl (1 h) for another version's prediction, then ends late.
    state, _, counts = jk.step(
        state, predictions([]), labels([{"id": "a", "t": 4 * H, "y": 0}]), CFG
    )
    assert not any(counts.values()) and state.labels.num_rows == 1
    assert jk.next_deadline_ms(state, CFG) == 5 * H + 1
    state, _, counts = jk.step(  # a second label while the first waits: duplicate
        state, predictions([]), labels([{"id": "a", "t": 4 * H + 1, "y": 0}]), CFG
    )
    assert counts["label_duplicate"] == 1
    state, _, counts = jk.expire(state, 5 * H + 1, CFG)
    assert counts["label_late"] == 1 and counts["label_orphan"] == 0
    state, _, counts = jk.step(  # and one after it ended: duplicate too
        state, predictions([]), labels([{"id": "a", "t": 5 * H + 2, "y": 0}]), CFG
    )
    assert counts["label_duplicate"] == 1
    # tombstones forgotten after 2 x ttl: a's prediction at 6 h, the label at 10 h
    state, _, _ = jk.expire(state, 10 * H, CFG)
    assert state.size == 0 and jk.next_deadline_ms(state, CFG) is None


@pytest.mark.parametrize("one_batch", [True, False])
def test_a_batch_holding_records_before_and_after_a_forgotten_tombstone(one_batch):
    """Prediction (a, v1) at 0 expires (TTL 3 h); its tombstone is forgotten at
    2 x 3 h = 6 h. A repeat at 5 h is a duplicate; one at 7 h comes after the pair was
    forgotten: a new prediction. A label at 4 h met the expired one and waits (until
    5 h); the 7 h prediction is made more than orphan_ttl (1 h) after it, so they do not
    join. One batch or two, the outcomes are the same."""
    state = jk.ShardState.empty(CFG)
    state, _, _ = jk.step(state, predictions([{"id": "a", "t": 0, "y": 1.0}]), labels([]), CFG)
    state, _, counts = jk.expire(state, 3 * H + 1, CFG)
    assert counts["prediction_expired"] == 1
    label = labels([{"id": "a", "t": 4 * H, "y": 0}])
    repeat, new = {"id": "a", "t": 5 * H, "y": 2.0}, {"id": "a", "t": 7 * H, "y": 3.0}
    batches = [[repeat, new]] if one_batch else [[repeat], [new]]
    total = dict.fromkeys(jk.JOIN_COUNTERS, 0)
    for k, batch in enumerate(batches):
        state, _, counts = jk.step(state, predictions(batch), label if k == 0 else labels([]), CFG)
        total = {name: total[name] + counts[name] for name in total}
    assert total["prediction_duplicate"] == 1 and total["prediction_joined"] == 0
    assert state.preds.column("event_time_ms").to_pylist() == [7 * H]  # pending, new
    assert state.labels.column("met_prediction").to_pylist() == [True]  # waits, will be late


@st.composite
def _records(draw):
    """``(predictions, labels)`` as ``(id, time, version)`` and ``(id, time)`` tuples:
    few ids within 5 h (every id's records within 2 x label_ttl: shadow versions and
    labels meet often) or more ids over 8 h (tombstones forgotten and ids reused)."""
    n_ids, horizon = draw(st.sampled_from([(3, 5 * H), (12, 8 * H)]))
    ids, times = st.integers(0, n_ids), st.integers(0, horizon)
    versions = st.sampled_from(["v1", "v2", "v3"])  # shadow predictions of an id
    n_preds, n_labels = draw(st.integers(0, 40)), draw(st.integers(0, 40))
    preds = draw(st.lists(st.tuples(ids, times, versions), min_size=n_preds, max_size=n_preds))
    return preds, draw(st.lists(st.tuples(ids, times), min_size=n_labels, max_size=n_labels))


def _diverging(pred_recs, label_recs) -> tuple[bool, bool]:
    """The two documented differences of streaming from bounded with timely watermarks:
    ``(skewed, long_lived)``: (1) a prediction made more than orphan_ttl after a label
    of its id, (2) records of one id spanning 2 x label_ttl or more, past the
    tombstones that streaming keeps to recognise repeats."""
    first_pred, times = {}, {}
    for i, t, v in sorted(pred_recs, key=lambda r: r[1]):
        first_pred.setdefault((i, v), t)
    for i, t in [r[:2] for r in pred_recs] + label_recs:
        times.setdefault(i, []).append(t)
    skewed = any(
        i == j and tp - t > CFG.orphan_ttl_ms
        for (i, _), tp in first_pred.items()
        for j, t in label_recs
    )
    long_lived = any(max(ts) - min(ts) >= 2 * CFG.label_ttl_ms for ts in times.values())
    return skewed, long_lived


def _assert_conserved(counts, preds, labs):
    assert preds.num_rows == (
        counts["prediction_joined"] + counts["prediction_expired"] + counts["prediction_duplicate"]
    )
    assert labs.num_rows == (
        counts["label_joined"]
        + counts["label_late"]
        + counts["label_orphan"]
        + counts["label_duplicate"]
    )
    assert counts["label_joined"] <= counts["prediction_joined"]


@settings(max_examples=100, deadline=None)
@given(_records(), st.integers(1, 7), st.sampled_from([H // 4, H, 2 * H, 3 * H - 1]))
def test_conservation_and_streaming_equals_bounded(records, batch, grid):
    pred_recs, label_recs = records
    # Each record's y is its own number, so a wrong pairing shows in the examples.
    preds = predictions(
        [{"id": f"i{i}", "t": t, "mv": v, "y": k} for k, (i, t, v) in enumerate(pred_recs)]
    )
    labs = labels([{"id": f"i{i}", "t": t, "y": 100 + k} for k, (i, t) in enumerate(label_recs)])
    bounded_ex, bounded = resolve_bounded(preds, labs, CFG)
    streamed, streamed_ex = run_streaming(preds, labs, batch, CFG)
    # The same replay with timers on a coarse grid (any grid shorter than label_ttl).
    coarse, coarse_ex = run_streaming(
        preds, labs, batch, dataclasses.replace(CFG, timer_grid_ms=grid)
    )
    for counts in (bounded, streamed, coarse):
        _assert_conserved(counts, preds, labs)
    skewed, long_lived = _diverging(pred_recs, label_recs)
    if not long_lived:
        assert coarse == streamed
        assert labeled_rows(coarse_ex) == labeled_rows(streamed_ex)
    if not (skewed or long_lived):
        assert streamed == bounded
        assert labeled_rows(streamed_ex) == labeled_rows(bounded_ex)
        assert kinds(streamed_ex) == kinds(bounded_ex)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="label_ttl"):
        jk.JoinConfig(label_ttl_ms=0)
    with pytest.raises(ValueError, match="shards"):
        jk.JoinConfig(shards=0)
    with pytest.raises(ValueError, match="shorter than --label-ttl"):
        jk.JoinConfig(label_ttl_ms=H, timer_grid_ms=H)


def test_shard_state_cells_round_trip():
    # The bytes a runner's state backend stores (the local DirectRunner keeps the objects).
    from msewatch.transforms.join.state import CELLS

    state = jk.ShardState.empty(CFG)
    state, _, _ = jk.step(
        state,
        predictions([{"id": "a", "t": 0, "y": 1.0}, {"id": "b", "t": 1, "y": 2.0}]),
        labels([{"id": "a", "t": 5, "y": 0.5}, {"id": "zzz", "t": 6, "y": 0.0}]),
        CFG,
    )
    assert (state.preds.num_rows, state.labels.num_rows, state.tombs.num_rows) == (1, 1, 1)
    preds, labels_, tombs = (
        spec.coder.decode(spec.coder.encode(value))
        for spec, value in zip(CELLS, (state.preds, state.labels, state.tombs), strict=True)
    )
    assert preds.equals(state.preds) and labels_.equals(state.labels)
    ids = pa.array(["a", "b", "zzz"])
    assert tombs.split(ids)[0].equals(state.tombs.split(ids)[0])


FEATURED = dataclasses.replace(CFG, features=("price",))


def test_features_reach_the_arrived_examples_only_and_stay_out_of_the_state():
    preds = predictions(
        [
            {"id": "a", "t": 0, "y": 1.0, "features": {"price": 9.5}},
            {"id": "b", "t": 0, "y": 2.0, "features": {"price": 3.0}},
            {"id": "a", "t": 1, "y": 5.0, "features": {"price": 100.0}},  # duplicate of a
        ],
        features=("price",),
    )
    state, ex, _ = jk.step(jk.ShardState.empty(FEATURED), preds, labels([]), FEATURED)
    assert "feat.price" not in state.preds.schema.names  # the state holds no features
    assert ex.column("feat.price").to_pylist() == [9.5, 3.0]  # the first a wins
    state, ex, _ = jk.step(state, predictions([], features=("price",)),
                           labels([{"id": "a", "t": 5, "y": 1.0}]), FEATURED)  # fmt: skip
    assert kinds(ex) == {ExampleKind.LABELED: 1} and np.isnan(ex["feat.price"][0].as_py())
    _, ex, _ = jk.expire(state, 10 * H, FEATURED)
    assert kinds(ex) == {ExampleKind.EXPIRED: 1} and np.isnan(ex["feat.price"][0].as_py())
    bounded, _ = resolve_bounded(preds, labels([{"id": "a", "t": 5, "y": 1.0}]), FEATURED)
    arrived = bounded.filter(pa.compute.equal(bounded.column("kind"), ExampleKind.ARRIVED))
    assert arrived.column("feat.price").to_pylist() == [9.5, 3.0]
    others = bounded.filter(pa.compute.not_equal(bounded.column("kind"), ExampleKind.ARRIVED))
    assert np.isnan(others.column("feat.price").to_numpy()).all() and others.num_rows == 2
