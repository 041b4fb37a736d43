"""Exact per-bound counts of the metrics rows (error_exceedance, labeled_within).

Checked against an independent pandas computation, by hand, and for mergeability
(a list of partial accumulators merges into the one-shot aggregate).
"""

import math
import pickle

import numpy as np
import pandas as pd
import pytest

from msewatch.transforms.metrics.accumulators import (
    ErrorAccumulator,
    finalize,
    merge_accumulators,
)
from msewatch.transforms.metrics.aggregate import MAX_WITHIN_SECONDS
from msewatch.transforms.metrics.transform import MetricsConfig
from tests.metric_examples import LABELED, aggregate, examples, random_pairs, take

REL = 1e-9
THRESHOLDS = (0.0, 0.5, 2.0, 5.0)
WITHIN = (0, 60, 3600, 86400)


def hostile_pairs(seed, n=3000):
    """Random weighted pairs with NaN/inf inputs, overflow, exact ties and negative lags.

    Returns ``(y_pred, y_true, weight, lag, codes)``.
    """
    y_pred, y_true, w, lag = random_pairs(seed, n)
    rng = np.random.default_rng(seed + 100)
    y_pred[::53], y_pred[::59], y_true[::61], y_true[::67] = np.nan, np.inf, -np.inf, np.nan
    y_pred[5::71], y_true[5::71] = 1e200, -1e200  # e*e overflows: labeled, not scored
    y_pred[3::17] = y_true[3::17] + 2.0  # |e| == 2 exactly: not above the threshold 2
    lag -= 2000.0  # some negative lags
    lag[7::19] = 3600.0  # exactly at a bound: within it
    lag[9::83] = np.nan  # no lag: within no bound
    codes = rng.integers(0, 4, n)
    return y_pred, y_true, w, lag, codes


def pandas_counts(y_pred, y_true, w, lag, codes, n_groups):
    """Per group: the error_exceedance and labeled_within lists, written with pandas."""
    df = pd.DataFrame(dict(g=codes, p=y_pred, t=y_true, w=w, lag=lag))
    with np.errstate(all="ignore"):
        df["ae"] = (df.p - df.t).abs()
    scored = np.isfinite(df.p) & np.isfinite(df.t) & np.isfinite(df.ae**2)
    out = []
    for g in range(n_groups):
        d, s = df[df.g == g], df[scored & (df.g == g)]
        exceed = [
            {"threshold": t, "sum_w": s.w[s.ae > t].sum(), "count": int((s.ae > t).sum())}
            for t in THRESHOLDS
        ]
        within = [{"within_s": b, "labeled": int((d.lag <= b).sum())} for b in WITHIN]
        out.append((exceed, within))
    return out


def assert_counts_equal(row, want):
    exceed, within = want
    assert row["labeled_within"] == within
    got = row["error_exceedance"]
    assert [(e["threshold"], e["count"]) for e in got] == [
        (e["threshold"], e["count"]) for e in exceed
    ]
    for g, e in zip(got, exceed, strict=True):
        assert g["sum_w"] == pytest.approx(e["sum_w"], rel=REL, abs=1e-12)


def test_counts_match_pandas_per_group():
    y_pred, y_true, w, lag, codes = hostile_pairs(21)
    ex = examples(y_pred, y_true, w, lag, codes, expired=7)
    ex["lag_s"][ex["kind"] != LABELED] = 0.0  # ignored: only LABELED rows count
    accs = aggregate(ex, n_groups=5, error_thresholds=THRESHOLDS, freshness_within_s=WITHIN)
    want = pandas_counts(y_pred, y_true, w, lag, codes, n_groups=5)
    for g in range(5):  # group 4 has no examples: zeros
        assert_counts_equal(finalize(accs[g], THRESHOLDS, WITHIN), want[g])
    # The data exercise what the test claims: ties, negatives, NaN lags, zero weights.
    assert want[4][0][0] == {"threshold": 0.0, "sum_w": 0.0, "count": 0}
    assert sum(finalize(a, THRESHOLDS, WITHIN)["nonfinite_errors"] for a in accs) > 0
    with np.errstate(invalid="ignore"):
        assert (np.abs(y_pred - y_true) == 2.0).sum() > 100 and (lag < 0).sum() > 100


def test_counts_by_hand():
    # e = (1, 3, 10) with weights (2, 0, 1) are scored; (nan, 1) and (3, inf) are not.
    # Lags -10, 60, 3600, 7200, NaN.
    ex = examples(
        [1.0, 4.0, 10.0, np.nan, 3.0],
        [0.0, 1.0, 0.0, 1.0, np.inf],
        [2.0, 0.0, 1.0, 1.0, 1.0],
        [-10.0, 60.0, 3600.0, 7200.0, np.nan],
        expired=2,
    )
    bounds = ((0.0, 1.0, 5.0), (0, 60, 3600))
    acc = aggregate(ex, error_thresholds=bounds[0], freshness_within_s=bounds[1])[0]
    row = finalize(acc, *bounds)
    # |e| > 0: all three (weight 2 + 0 + 1); > 1: 3 and 10 (0 + 1); > 5: 10 (1).
    assert row["error_exceedance"] == [
        {"threshold": 0.0, "sum_w": 3.0, "count": 3},
        {"threshold": 1.0, "sum_w": 1.0, "count": 2},
        {"threshold": 5.0, "sum_w": 1.0, "count": 1},
    ]
    # Every labeled prediction counts, scored or not: <= 0: -10; <= 60: -10, 60;
    # <= 3600: -10, 60, 3600. The NaN lag is within none, 7200 within none of these.
    assert row["labeled_within"] == [
        {"within_s": 0, "labeled": 1},
        {"within_s": 60, "labeled": 2},
        {"within_s": 3600, "labeled": 3},
    ]


@pytest.mark.parametrize("k", [1, 2, 3, 17])
def test_merging_a_list_equals_the_one_shot_aggregate(k):
    y_pred, y_true, w, lag, _ = hostile_pairs(22, n=1500)
    ex = examples(y_pred, y_true, w, lag, expired=5)
    bounds = dict(error_thresholds=THRESHOLDS, freshness_within_s=WITHIN)
    whole = aggregate(ex, **bounds)[0]
    parts = np.array_split(np.random.default_rng(k).permutation(ex["kind"].size), k)
    accs = [aggregate(take(ex, p), **bounds)[0] for p in parts]
    for merged in (
        merge_accumulators(accs),
        merge_accumulators(iter(accs)),
        merge_accumulators([*accs, ErrorAccumulator.empty()]),  # empty: zeros
    ):
        assert merged.exceed_count == whole.exceed_count
        assert merged.labeled_within == whole.labeled_within
        assert merged.exceed_sum_w == pytest.approx(whole.exceed_sum_w, rel=REL)


def test_empty_accumulator_gives_zero_counts_for_any_bounds():
    row = finalize(ErrorAccumulator.empty(), (1.5,), (60, 120))
    assert row["error_exceedance"] == [{"threshold": 1.5, "sum_w": 0.0, "count": 0}]
    assert row["labeled_within"] == [
        {"within_s": 60, "labeled": 0},
        {"within_s": 120, "labeled": 0},
    ]
    assert finalize(ErrorAccumulator.empty(), (), ())["error_exceedance"] == []


def test_accumulators_of_other_bounds_do_not_merge():
    ex = examples([1.0, 2.0], [0.0, 0.0])
    a = aggregate(ex, error_thresholds=(1.0,))[0]
    b = aggregate(ex, error_thresholds=(1.0, 2.0))[0]
    with pytest.raises(ValueError, match="different bounds"):
        merge_accumulators([a, b])
    with pytest.raises(ValueError, match="different bounds"):
        merge_accumulators([a, a, b])
    with pytest.raises(ValueError, match="exceed_count"):
        finalize(a, (1.0, 2.0), ())


def test_values_are_python_numbers_and_pickle_compactly():
    ex = examples(*random_pairs(9, n=200))
    plain = aggregate(ex)[0]
    acc = aggregate(ex, error_thresholds=THRESHOLDS, freshness_within_s=WITHIN)[0]
    assert pickle.loads(pickle.dumps(acc)) == acc
    for values in (acc.exceed_count, acc.exceed_sum_w, acc.labeled_within):
        assert type(values) is tuple and len(values) == 4
        assert all(type(v) in (int, float) for v in values)  # not numpy scalars
    # 12 values: a pickled float is 9 bytes, a small int 2 to 5; a numpy array
    # or numpy scalars would cost a hundred bytes or more each.
    assert len(pickle.dumps(acc)) - len(pickle.dumps(plain)) < 12 * 9 + 3 * 4
    assert plain.exceed_count == plain.exceed_sum_w == plain.labeled_within == ()


def test_config_normalizes_bounds():
    config = MetricsConfig(error_thresholds=[0, 1.5, np.float64(3)], freshness_within_s=[0, 60])
    assert config.error_thresholds == (0.0, 1.5, 3.0)
    assert all(type(t) is float for t in config.error_thresholds)
    assert config.freshness_within_s == (0, 60)
    assert MetricsConfig().error_thresholds == MetricsConfig().freshness_within_s == ()


@pytest.mark.parametrize(
    "thresholds",
    [(math.nan,), (math.inf,), (-0.5,), (2.0, 1.0), (1.0, 1.0), (True,), ("1",), 1.0],
)
def test_bad_error_thresholds_raise(thresholds):
    with pytest.raises(ValueError, match="error_thresholds must be finite numbers >= 0"):
        MetricsConfig(error_thresholds=thresholds)
    with pytest.raises(ValueError, match="error_thresholds"):
        aggregate(examples([1.0], [1.0]), error_thresholds=thresholds)


@pytest.mark.parametrize(
    "within", [(-1,), (1.5,), (60.0,), (60, 60), (120, 60), (MAX_WITHIN_SECONDS + 1,), (False,)]
)
def test_bad_freshness_bounds_raise(within):
    with pytest.raises(ValueError, match="freshness_within_s must be whole seconds"):
        MetricsConfig(freshness_within_s=within)
    with pytest.raises(ValueError, match="freshness_within_s"):
        aggregate(examples([1.0], [1.0]), freshness_within_s=within)
