"""ErrorAccumulator math against scikit-learn and an independent pandas computation."""

import math
import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    mean_squared_log_error,
    r2_score,
)

from msewatch.schemas.records import METRICS_FIELDS
from msewatch.transforms.metrics.accumulators import (
    ErrorAccumulator,
    MetricsCombineFn,
    finalize,
    merge_accumulators,
)
from tests.metric_examples import EXPIRED, aggregate, examples, random_pairs, take

REL = 1e-9
Z = 1.959963984540054


def assert_rows_close(got, want):
    assert got.keys() == want.keys()
    for key in want:
        if isinstance(want[key], bytes | None):  # a sketch: merging is exact
            assert got[key] == want[key], key
        else:
            assert got[key] == pytest.approx(want[key], rel=REL, nan_ok=True), key


def test_finalize_returns_exactly_the_metric_columns():
    names = [f.name for f in METRICS_FIELDS]
    want = names[names.index("predictions") : names.index("y_true_max") + 1]
    assert want[-11:] == [
        "error_exceedance",
        "labeled_within",
        "paired",
        "y_pred_sketch",
        "y_true_sketch",
        "feature_sketches",
        "label_range",
        "sum_abs_pred",
        "sum_abs_true",
        "y_true_min",
        "y_true_max",
    ]
    assert list(finalize(ErrorAccumulator.empty())) == want


def test_empty_accumulator_gives_nan_not_zero():
    row = finalize(ErrorAccumulator.empty())
    counts = [k for k, v in row.items() if isinstance(v, int)]
    assert all(row[k] == 0 for k in counts) and len(counts) == 10
    lists = {"error_exceedance", "labeled_within", "paired", "feature_sketches", "label_range"}
    assert all(row[k] == [] for k in lists)  # no bounds configured
    assert row["y_pred_sketch"] is None and row["y_true_sketch"] is None  # null, not empty
    sketches = {"y_pred_sketch", "y_true_sketch"}
    ratios = set(row) - set(counts) - lists - sketches - {k for k in row if k.startswith("sum_")}
    assert len(ratios) == 20  # 18 metrics + y_true_min, y_true_max
    assert all(math.isnan(row[k]) for k in ratios)


def test_weighted_metrics_match_sklearn():
    y_pred, y_true, w, lag = random_pairs(0)
    row = finalize(aggregate(examples(y_pred, y_true, w, lag))[0])
    e = y_pred - y_true
    assert row["mse"] == pytest.approx(mean_squared_error(y_true, y_pred, sample_weight=w), REL)
    assert row["rmse"] == pytest.approx(
        math.sqrt(mean_squared_error(y_true, y_pred, sample_weight=w)), REL
    )
    assert row["mae"] == pytest.approx(mean_absolute_error(y_true, y_pred, sample_weight=w), REL)
    assert row["r2"] == pytest.approx(r2_score(y_true, y_pred, sample_weight=w), REL)
    assert row["mape"] == pytest.approx(
        mean_absolute_percentage_error(y_true, y_pred, sample_weight=w), REL
    )
    pos = y_pred >= 0  # y_true > 0 here; rmsle drops negative predictions
    assert row["rmsle"] == pytest.approx(
        math.sqrt(mean_squared_log_error(y_true[pos], y_pred[pos], sample_weight=w[pos])), REL
    )
    assert row["rmsle_excluded"] == int((~pos).sum()) > 0
    assert row["mean_error"] == pytest.approx(np.average(e, weights=w), REL)
    assert row["max_abs_error"] == np.abs(e).max()
    sums = dict(sum_w=w, sum_w2=w * w, sum_se=w * e**2, sum_se2=w * e**4, sum_ae=w * abs(e))
    sums.update(sum_e=w * e, sum_y=w * y_true, sum_y2=w * y_true**2)
    for name, terms in sums.items():
        assert row[name] == pytest.approx(math.fsum(terms), REL), name
    assert (row["predictions"], row["labeled"], row["scored"]) == (2000, 2000, 2000)


def pandas_reference(y_pred, y_true, w, lag, codes, delta=1.0):
    """Per-group metrics written independently with pandas (two-pass, textbook)."""
    df = pd.DataFrame(dict(g=codes, p=y_pred, t=y_true, w=w, lag=lag))
    df["e"] = df.p - df.t
    df["h"] = np.where(df.e.abs() <= delta, 0.5 * df.e**2, delta * (df.e.abs() - 0.5 * delta))
    out = {}
    for g, d in df.groupby("g"):
        wavg = lambda x, d=d: (d.w * x).sum() / d.w.sum()  # noqa: E731
        mse = wavg(d.e**2)
        ss_tot = (d.w * (d.t - wavg(d.t)) ** 2).sum()
        nz, nn = d[d.t != 0], d[(d.p >= 0) & (d.t >= 0)]
        n_eff = d.w.sum() ** 2 / (d.w**2).sum()
        var_se = wavg((d.e**2 - mse) ** 2)
        se = math.sqrt(var_se / (n_eff - 1))
        out[g] = dict(
            mse=mse,
            mae=wavg(d.e.abs()),
            mean_error=wavg(d.e),
            r2=1 - (d.w * d.e**2).sum() / ss_tot,
            mape=(nz.w * (nz.e / nz.t).abs()).sum() / nz.w.sum(),
            rmsle=math.sqrt((nn.w * (np.log1p(nn.p) - np.log1p(nn.t)) ** 2).sum() / nn.w.sum()),
            huber=wavg(d.h),
            mse_ci_low=mse - Z * se,
            mse_ci_high=mse + Z * se,
            label_lag_max_s=d.lag.max(),
            scored=len(d),
        )
    return out


def test_group_by_equals_pandas_per_group():
    y_pred, y_true, w, lag = random_pairs(1, n=3000)
    y_true[::7] = 0.0  # MAPE exclusions
    y_pred[::11] -= 20.0  # RMSLE exclusions
    codes = np.random.default_rng(2).integers(0, 4, y_pred.size)
    accs = aggregate(examples(y_pred, y_true, w, lag, codes), n_groups=5, huber_delta=1.5)
    want = pandas_reference(y_pred, y_true, w, lag, codes, delta=1.5)
    for g in range(4):
        row = finalize(accs[g])
        assert_rows_close({k: row[k] for k in want[g]}, want[g])
    empty, got = finalize(ErrorAccumulator.empty()), finalize(accs[4])
    for name in ("error_exceedance", "labeled_within", "paired", "feature_sketches", "label_range"):
        assert got.pop(name) == [], name
    assert got.pop("y_pred_sketch") is None and got.pop("y_true_sketch") is None
    assert got == pytest.approx({k: empty[k] for k in got}, nan_ok=True)


def test_r2_is_stable_with_a_large_offset():
    y_pred, y_true, w, _ = random_pairs(3, offset=1e6)
    want = r2_score(y_true, y_pred, sample_weight=w)
    ex = examples(y_pred, y_true, w)
    assert finalize(aggregate(ex)[0])["r2"] == pytest.approx(want, rel=REL)
    parts = np.array_split(np.random.default_rng(4).permutation(2 * y_true.size), 7)
    merged = merge_accumulators(aggregate(take(ex, p))[0] for p in parts)
    assert finalize(merged)["r2"] == pytest.approx(want, rel=REL)
    # The textbook shortcut sum_y2 - sum_y**2 / sum_w misses this tolerance here,
    # so the test can tell a cancelling implementation from a stable one.
    sw, sy, sy2 = w.sum(), (w * y_true).sum(), (w * y_true**2).sum()
    naive = 1 - (w * (y_pred - y_true) ** 2).sum() / (sy2 - sy**2 / sw)
    assert naive != pytest.approx(want, rel=REL)


def test_ci_with_unit_weights_is_the_textbook_interval():
    y_pred, y_true, _, _ = random_pairs(5, n=500)
    row = finalize(aggregate(examples(y_pred, y_true))[0])
    se2 = (y_pred - y_true) ** 2
    half = Z * se2.std(ddof=1) / math.sqrt(se2.size)  # t-free normal interval
    assert row["mse_ci_low"] == pytest.approx(se2.mean() - half, REL)
    assert row["mse_ci_high"] == pytest.approx(se2.mean() + half, REL)
    assert row["rmse_ci_low"] == pytest.approx(math.sqrt(se2.mean() - half), REL)
    assert row["rmse_ci_high"] == pytest.approx(math.sqrt(se2.mean() + half), REL)


def test_ci_is_nan_for_one_pair_and_clamped_at_zero():
    assert math.isnan(finalize(aggregate(examples([3.0], [1.0]))[0])["mse_ci_low"])
    # e = (0, 0, 0, 10): se = (0, 0, 0, 100), mean 25, sample sd 50, se of mean 25,
    # so the low bound 25 - 1.96 * 25 < 0 and rmse_ci_low clamps to 0.
    row = finalize(aggregate(examples([0.0, 0.0, 0.0, 10.0], [0.0] * 4))[0])
    assert row["mse_ci_low"] == pytest.approx(25 - Z * 25, REL)
    assert row["rmse_ci_low"] == 0.0
    assert row["rmse_ci_high"] == pytest.approx(math.sqrt(25 + Z * 25), REL)


def test_nan_inf_and_null_inputs_are_counted_not_scored():
    y_pred = [1.0, None, np.inf, 2.0, 3.0, -np.inf, 4.0]
    y_true = [2.0, 1.0, 1.0, np.nan, -np.inf, 5.0, 4.5]
    row = finalize(aggregate(examples(y_pred, y_true, expired=2))[0])
    # Clean pairs: (1, 2) and (4, 4.5): errors -1 and -0.5.
    assert row["scored"] == 2
    assert row["nan_predictions"] == 3  # None, inf, -inf
    assert row["nan_labels"] == 2  # nan, -inf
    assert (row["predictions"], row["labeled"], row["expired"]) == (7, 7, 2)
    assert row["label_coverage"] == 1.0
    assert row["mse"] == pytest.approx(mean_squared_error([2.0, 4.5], [1.0, 4.0]), REL)  # 0.625
    assert row["mean_error"] == pytest.approx(-0.75, REL)
    assert row["max_abs_error"] == 1.0


def test_overflowing_errors_are_counted_as_nonfinite():
    # |e| = 1e156 > 1e155 overflows e*e; 1.7e308 - (-1.7e308) overflows e itself.
    y_pred = [1e156, 1.7e308, 1e150, 2.0]
    y_true = [0.0, -1.7e308, 0.0, 1.0]
    with np.errstate(all="raise"):  # nothing may leak a floating-point warning
        row = finalize(aggregate(examples(y_pred, y_true))[0])
    assert row["nonfinite_errors"] == 2
    assert row["scored"] == 2
    assert row["nan_predictions"] == row["nan_labels"] == 0
    assert row["mse"] == pytest.approx((1e300 + 1.0) / 2, REL)  # e = 1e150 and 1
    assert math.isfinite(row["sum_se"])


def test_mape_excludes_zero_targets():
    row = finalize(aggregate(examples([1.0, 3.0, 5.0], [0.0, 2.0, 4.0], [1.0, 1.0, 3.0]))[0])
    # |e/y|: 0.5 (w 1) and 0.25 (w 3): (0.5 + 0.75) / 4 = 0.3125.
    assert row["mape"] == pytest.approx(0.3125, REL)
    assert row["mape_excluded"] == 1
    assert math.isnan(finalize(aggregate(examples([1.0], [0.0]))[0])["mape"])


def test_rmsle_excludes_negative_values():
    y_pred, y_true = [-1.0, 3.0, 0.0, 2.0], [1.0, -2.0, math.e - 1, 2.0]
    row = finalize(aggregate(examples(y_pred, y_true))[0])
    # Kept: (0, e - 1): (log1p(0) - 1)^2 = 1, and (2, 2): 0, so sqrt(1 / 2).
    assert row["rmsle"] == pytest.approx(math.sqrt(0.5), REL)
    assert row["rmsle_excluded"] == 2
    assert row["rmsle"] == pytest.approx(
        math.sqrt(mean_squared_log_error([math.e - 1, 2.0], [0.0, 2.0])), REL
    )


def test_huber_by_hand():
    # delta 2, e = (1, -3, 4): 0.5, 2 * (3 - 1) = 4, 2 * (4 - 1) = 6; weights (1, 1, 2).
    ex = examples([1.0, 0.0, 5.0], [0.0, 3.0, 1.0], [1.0, 1.0, 2.0])
    row = finalize(aggregate(ex, huber_delta=2.0)[0])
    assert row["huber"] == pytest.approx((0.5 + 4 + 12) / 4, REL)


def test_r2_is_nan_when_targets_are_constant():
    row = finalize(aggregate(examples([1.0, 2.0], [3.0, 3.0]))[0])
    assert math.isnan(row["r2"]) and row["mse"] == pytest.approx(2.5, REL)
    # 0.1 is inexact in binary: its weighted mean is not exactly 0.1, so a centered
    # sum of squares alone would leave a ~1e-34 residue and r2 of about -1e32.
    rng = np.random.default_rng(12)
    n = 1000
    ex = examples(rng.normal(0.1, 1.0, n), np.full(n, 0.1), rng.uniform(0.1, 3.0, n))
    ex["y_true"][ex["kind"] == EXPIRED] = 5.0  # ignored: only LABELED rows are scored
    parts = np.array_split(rng.permutation(2 * n), 9)
    assert math.isnan(finalize(aggregate(ex)[0])["r2"])
    assert math.isnan(finalize(merge_accumulators(aggregate(take(ex, p))[0] for p in parts))["r2"])


def test_lag_counts_and_quantiles():
    lag = np.array([-5.0, 0.0, 30.0, 60.0, np.nan, 7200.0])
    row = finalize(aggregate(examples(np.ones(6), np.ones(6), lag=lag))[0])
    # Finite lags sorted: -5, 0, 30, 60, 7200; p50 = floor(0.5 * 4) -> 30.
    assert row["negative_lags"] == 1
    assert row["label_lag_max_s"] == 7200.0
    assert row["label_lag_p50_s"] == pytest.approx(30.0, rel=0.01)
    assert row["label_lag_p99_s"] == pytest.approx(60.0, rel=0.01)  # floor(3.96) = 3


def test_coverage_counts_unlabeled_predictions():
    ex = examples([1.0, 2.0], [1.0, 2.0], expired=1)
    ex = {k: np.concatenate([v, v[:1]]) for k, v in ex.items()}  # one more ARRIVED
    row = finalize(aggregate(ex)[0])
    assert (row["predictions"], row["labeled"], row["expired"]) == (3, 2, 1)
    assert row["label_coverage"] == pytest.approx(2 / 3, REL)


@pytest.mark.parametrize("k", [1, 2, 5, 17])
def test_merging_a_random_partition_equals_the_whole(k):
    y_pred, y_true, w, lag = random_pairs(6, n=1000)
    y_pred[::50], y_true[::40], y_true[::30] = np.nan, np.inf, 0.0
    ex = examples(y_pred, y_true, w, lag - 3000.0, expired=10)
    whole = aggregate(ex)[0]
    parts = np.array_split(np.random.default_rng(k).permutation(ex["kind"].size), k)
    accs = [aggregate(take(ex, p))[0] for p in parts]
    for merged in (merge_accumulators(accs), merge_accumulators(a for a in accs)):
        assert_rows_close(finalize(merged), finalize(whole))
        assert merged.lag == whole.lag


def test_pair_merge_equals_the_general_merge():
    # Two parts take a scalar fast path; a third, empty part forces the numpy path.
    y_pred, y_true, w, lag = random_pairs(8, n=400)
    y_pred[::37], y_true[::41] = np.nan, 0.0
    ex = examples(y_pred + 1e6, y_true + 1e6, w, lag - 100.0, expired=3)
    a, b = (aggregate(take(ex, p))[0] for p in np.array_split(np.arange(ex["kind"].size), 2))
    pair = merge_accumulators([a, b])
    general = merge_accumulators([a, b, ErrorAccumulator.empty()])
    assert_rows_close(finalize(pair), finalize(general))
    assert pair.lag == general.lag


def test_merging_a_list_does_not_double_count_the_first():
    a = aggregate(examples([1.0, 2.0], [0.0, 0.0]))[0]
    b = aggregate(examples([4.0], [0.0]))[0]
    before = finalize(a)
    assert finalize(merge_accumulators([a])) == before  # TFMA's trap doubles this
    merged = finalize(merge_accumulators([a, b]))
    assert merged["predictions"] == 3
    assert merged["mse"] == pytest.approx((1 + 4 + 16) / 3, REL)
    assert finalize(a) == before  # the first input is not modified
    assert finalize(merge_accumulators([a, a]))["predictions"] == 4  # explicit repeats count
    assert merge_accumulators([]) == ErrorAccumulator.empty()


def test_combine_fn_called_directly():
    fn = MetricsCombineFn()
    accs = aggregate(examples([1.0, 2.0, 3.0], [1.0, 1.0, 1.0]), n_groups=1)
    acc = fn.add_input(fn.create_accumulator(), accs[0])
    merged = fn.merge_accumulators(iter([acc, fn.create_accumulator(), acc]))
    out = finalize(fn.extract_output(merged))
    assert out["scored"] == 6 and out["mse"] == pytest.approx(5 / 3, REL)  # (0+1+4)*2/6


def test_accumulator_pickles_compactly():
    acc = aggregate(examples(*random_pairs(8, n=100)))[0]
    blob = pickle.dumps(acc)
    assert pickle.loads(blob) == acc
    # ~370 bytes before the value distributions (two empty sketches, ~180 bytes) came in.
    assert len(pickle.dumps(ErrorAccumulator.empty())) < 600


def test_invalid_arguments_raise():
    ex = examples([1.0], [1.0])
    with pytest.raises(ValueError, match="huber_delta"):
        aggregate(ex, huber_delta=0.0)
    with pytest.raises(ValueError, match="codes"):
        aggregate({**ex, "codes": np.array([0, 3])}, n_groups=2)
    with pytest.raises(ValueError, match="length"):
        aggregate({**ex, "weight": np.ones(3)})


pairs = st.lists(
    st.tuples(
        st.floats(-1e6, 1e6) | st.just(math.nan),
        st.floats(-1e6, 1e6) | st.just(math.inf),
        st.just(0.0) | st.floats(1e-3, 10.0),  # no subnormal weights: rounding noise
    ),
    min_size=0,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(pairs=pairs, data=st.data())
def test_property_merge_of_any_split_equals_whole(pairs, data):
    y_pred, y_true, w = (np.array([p[i] for p in pairs], dtype=np.float64) for i in range(3))
    ex = examples(y_pred, y_true, w)
    cut = data.draw(st.integers(0, ex["kind"].size))
    whole = finalize(aggregate(ex)[0])
    merged = finalize(
        merge_accumulators(
            [aggregate(take(ex, slice(None, cut)))[0], aggregate(take(ex, slice(cut, None)))[0]]
        )
    )
    for key in whole:
        if isinstance(whole[key], bytes | None):  # a sketch: merging is exact
            assert merged[key] == whole[key], key
            continue
        # Sums of terms that cancel carry rounding proportional to the largest term.
        assert merged[key] == pytest.approx(whole[key], rel=1e-6, abs=1e-6, nan_ok=True), key
