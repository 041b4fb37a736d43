"""The value-distribution columns of a metrics row, against pandas and numpy on the same
examples: sums of |y|, y_true's extremes, label_range counts, the value sketches."""

import math

import numpy as np
import pandas as pd
import pytest

from msewatch.transforms.metrics.accumulators import finalize, merge_accumulators
from msewatch.transforms.metrics.distributions import check_valid_ranges
from msewatch.transforms.metrics.sketch import ALPHA, ValueSketch
from tests.metric_examples import ARRIVED, LABELED, aggregate, examples, take

RANGES = ((-1.0, 50.0), (0.0, 100.0))


def random_examples(seed, n=4000, groups=4):
    """Pairs with NaN/inf on both sides, zero weights, and one empty group (the last)."""
    rng = np.random.default_rng(seed)
    y_pred = rng.normal(40.0, 30.0, n)
    y_true = y_pred + rng.normal(0.0, 10.0, n)
    y_pred[::13] = np.nan
    y_true[::17] = np.inf
    y_true[::19] = np.nan
    w = rng.uniform(0.0, 3.0, n)
    w[::23] = 0.0
    codes = rng.integers(0, groups - 1, n)
    return examples(y_pred, y_true, w, codes=codes), groups


def frame(ex) -> pd.DataFrame:
    return pd.DataFrame(
        dict(g=ex["codes"], kind=ex["kind"], p=ex["y_pred"], t=ex["y_true"], w=ex["weight"])
    )


def test_sums_extremes_and_ranges_equal_pandas():
    ex, groups = random_examples(0)
    rows = [finalize(a, valid_ranges=RANGES) for a in aggregate(ex, groups, valid_ranges=RANGES)]
    df = frame(ex)
    labeled = df[(df.kind == LABELED) & np.isfinite(df.t)]
    scored = labeled[np.isfinite(labeled.p)]
    sum_abs_pred = (scored.w * scored.p.abs()).groupby(scored.g).sum()
    sum_abs_true = (scored.w * scored.t.abs()).groupby(scored.g).sum()
    for g in range(groups - 1):
        row = rows[g]
        assert row["sum_abs_pred"] == pytest.approx(sum_abs_pred[g], rel=1e-12)
        assert row["sum_abs_true"] == pytest.approx(sum_abs_true[g], rel=1e-12)
        t = labeled.t[labeled.g == g]
        assert (row["y_true_min"], row["y_true_max"]) == (t.min(), t.max())
        want = [
            {"low": lo, "high": hi, "outside": int(((t < lo) | (t > hi)).sum())}
            for lo, hi in RANGES
        ]
        assert row["label_range"] == want and all(r["outside"] > 0 for r in want)
    empty = rows[groups - 1]
    assert math.isnan(empty["y_true_min"]) and math.isnan(empty["y_true_max"])
    assert empty["y_pred_sketch"] is None and empty["y_true_sketch"] is None
    assert empty["sum_abs_pred"] == 0.0  # a sum: 0 is its value over no pairs
    assert [r["outside"] for r in empty["label_range"]] == [0, 0]


@pytest.mark.parametrize(
    ("column", "kind", "value"), [("y_pred", ARRIVED, "p"), ("y_true", LABELED, "t")]
)
def test_sketches_hold_the_finite_values_of_their_examples(column, kind, value):
    ex, groups = random_examples(1)
    rows = [finalize(a) for a in aggregate(ex, groups)]
    df = frame(ex)
    for g in range(groups - 1):
        values = df[(df.kind == kind) & (df.g == g) & np.isfinite(df[value])][value].to_numpy()
        sketch = ValueSketch.from_bytes(rows[g][column + "_sketch"])
        assert sketch.count == values.size > 0  # unweighted, NaN/inf left out
        assert (sketch.min, sketch.max) == (values.min(), values.max())
        for q in (0.01, 0.1, 0.5, 0.9, 0.99):
            exact = np.quantile(values, q, method="lower")
            assert sketch.quantile(q) == pytest.approx(exact, rel=ALPHA * 1.0001), q


def test_merged_parts_give_the_columns_of_the_whole():
    ex, groups = random_examples(2)
    whole = [finalize(a, valid_ranges=RANGES) for a in aggregate(ex, groups, valid_ranges=RANGES)]
    cuts = np.array_split(np.random.default_rng(3).permutation(ex["kind"].size), 5)
    parts = [aggregate(take(ex, idx), groups, valid_ranges=RANGES) for idx in cuts]
    for g in range(groups):
        merged = finalize(merge_accumulators(p[g] for p in parts), valid_ranges=RANGES)
        for name in ("y_pred_sketch", "y_true_sketch", "label_range", "y_true_min", "y_true_max"):
            assert merged[name] == whole[g][name] or (
                isinstance(whole[g][name], float) and math.isnan(merged[name])
            ), name
        assert merged["sum_abs_true"] == pytest.approx(whole[g]["sum_abs_true"], rel=1e-12)


@pytest.mark.parametrize(
    ("ranges", "expected"),
    [
        ([(0, 1), [-5, math.inf], (0, 1)], ((-5.0, math.inf), (0.0, 1.0))),  # sorted, deduped
        ((), ()),
    ],
)
def test_valid_ranges_are_sorted_and_deduplicated(ranges, expected):
    assert check_valid_ranges(ranges) == expected


@pytest.mark.parametrize(
    "bad", [[(1, 1)], [(2, 1)], [(0, math.nan)], [(0,)], [("a", 1)], [(True, 2)]]
)
def test_bad_valid_ranges_are_refused(bad):
    with pytest.raises(ValueError, match="low < high"):
        check_valid_ranges(bad)


def _with_features(ex, seed):
    """``ex`` plus two feature columns: values on ARRIVED examples (NaN, inf and a
    duplicate-free spread included), NaN on the others, as the join emits them."""
    rng = np.random.default_rng(seed)
    n = ex["kind"].size
    price, age = rng.normal(20.0, 5.0, n), rng.gamma(3.0, 10.0, n)
    price[::11], age[::7] = np.nan, np.inf
    arrived = ex["kind"] == ARRIVED
    return {"price": np.where(arrived, price, np.nan), "age": np.where(arrived, age, np.nan)}


def test_feature_sketches_equal_numpy_built_sketches_of_each_groups_values():
    ex, groups = random_examples(4)
    features = _with_features(ex, 5)
    accs = aggregate(ex, groups, features=features)
    rows = [finalize(a, features=("price", "age")) for a in accs]
    for g in range(groups):
        entries = rows[g]["feature_sketches"]
        assert [e["feature"] for e in entries] == ["price", "age"]  # configured order
        for entry in entries:
            values = features[entry["feature"]]
            mine = values[(ex["codes"] == g) & (ex["kind"] == ARRIVED) & np.isfinite(values)]
            if g == groups - 1:  # the empty group: a null sketch, the entry still there
                assert mine.size == 0 and entry["sketch"] is None
                continue
            assert mine.size > 0
            assert ValueSketch.from_bytes(entry["sketch"]) == ValueSketch.from_values(mine)


def test_merged_feature_sketches_are_those_of_the_whole():
    ex, groups = random_examples(6)
    features = _with_features(ex, 7)
    names = ("price", "age")
    whole = [finalize(a, features=names) for a in aggregate(ex, groups, features=features)]
    cuts = np.array_split(np.random.default_rng(8).permutation(ex["kind"].size), 4)
    parts = [
        aggregate(take(ex, i), groups, features={k: v[i] for k, v in features.items()})
        for i in cuts
    ]
    for g in range(groups):
        merged = finalize(merge_accumulators(p[g] for p in parts), features=names)
        assert merged["feature_sketches"] == whole[g]["feature_sketches"]


def test_without_configured_features_the_column_is_an_empty_list():
    ex, groups = random_examples(9)
    assert all(finalize(a)["feature_sketches"] == [] for a in aggregate(ex, groups))
