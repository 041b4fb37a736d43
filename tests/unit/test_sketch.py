"""ValueSketch: quantile accuracy against numpy order statistics, merging, pickling, bytes."""

import math
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msewatch.transforms.metrics.sketch import (
    ALPHA,
    MAX_BUCKETS,
    SKETCH_VERSION,
    ValueSketch,
    bucket_values,
)

QUANTILES = (0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0)
REL = 0.01  # the contract: within 1 % of the true order statistic


def assert_quantiles_close(sketch, values):
    """Each estimate lies between numpy's lower and higher order statistic, +-1 %."""
    for q in QUANTILES:
        lower = np.quantile(values, q, method="lower")
        higher = np.quantile(values, q, method="higher")
        est = sketch.quantile(q)
        lo = min(lower * (1 - REL), lower * (1 + REL))
        hi = max(higher * (1 - REL), higher * (1 + REL))
        assert lo <= est <= hi, (q, est, lower, higher)


def lognormal(seed, n=20_000):
    return np.random.default_rng(seed).lognormal(mean=6.0, sigma=2.5, size=n)


def test_empty_sketch_is_nan():
    sketch = ValueSketch.empty()
    assert sketch.count == 0
    assert math.isnan(sketch.quantile(0.5))
    assert math.isnan(sketch.max)
    assert ValueSketch.from_values(np.array([])) == sketch


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(lognormal(0), id="lognormal"),
        pytest.param(-lognormal(1), id="negative"),
        pytest.param(
            np.concatenate([lognormal(2)[:5000], -lognormal(3)[:3000], np.zeros(700)]),
            id="mixed-with-zeros",
        ),
        pytest.param(np.random.default_rng(4).uniform(-5.0, 5.0, 10_000), id="uniform"),
        pytest.param(np.array([42.0]), id="single"),
        pytest.param(np.zeros(5), id="zeros"),
    ],
)
def test_quantiles_within_one_percent(values):
    sketch = ValueSketch.from_values(np.random.default_rng(9).permutation(values))
    assert sketch.count == values.size
    assert_quantiles_close(sketch, values)


def test_quantile_of_small_hand_checked_set():
    # sorted: -300, -2, 0, 0, 5, 60, 3600; floor(q * 6) picks the order statistic.
    sketch = ValueSketch.from_values(np.array([60.0, -2.0, 0.0, 3600.0, 5.0, 0.0, -300.0]))
    assert sketch.quantile(0.0) == -300.0  # exact minimum
    assert sketch.quantile(1.0) == 3600.0  # exact maximum
    assert sketch.quantile(0.2) == pytest.approx(-2.0, rel=REL)  # floor(1.2) = 1
    assert sketch.quantile(0.5) == 0.0  # floor(3.0) = 3 -> a zero
    assert sketch.quantile(0.7) == pytest.approx(5.0, rel=REL)  # floor(4.2) = 4
    assert sketch.quantile(0.9) == pytest.approx(60.0, rel=REL)  # floor(5.4) = 5


def test_max_is_exact_for_positive_and_negative_only_data():
    values = lognormal(5, n=1000)
    assert ValueSketch.from_values(values).max == values.max()
    assert ValueSketch.from_values(-values).max == -values.min()  # negatives only
    assert ValueSketch.from_values(np.array([-3.0, 0.0])).max == 0.0


def test_merge_equals_sketch_of_union():
    values = np.concatenate([lognormal(6, 3000), -lognormal(7, 1000), np.zeros(50)])
    parts = np.array_split(np.random.default_rng(8).permutation(values), 5)
    sketches = [ValueSketch.from_values(p) for p in parts]
    whole = ValueSketch.from_values(values)
    assert ValueSketch.merge_all(sketches) == whole
    assert ValueSketch.merge_all(s for s in sketches) == whole  # a generator
    pairwise = ValueSketch.empty()
    for s in sketches:
        pairwise = pairwise.merge(s)
    assert pairwise == whole
    assert pairwise.max == values.max()


def test_merge_does_not_modify_inputs():
    a = ValueSketch.from_values(np.array([1.0, 2.0, -3.0]))
    b = ValueSketch.from_values(np.array([10.0, 0.0]))
    a_copy, b_copy = pickle.loads(pickle.dumps(a)), pickle.loads(pickle.dumps(b))
    merged = a.merge(b)
    assert merged.count == 5
    assert a == a_copy and b == b_copy
    assert a.merge(a).count == 6  # merging with itself counts twice, explicitly


def test_merge_all_of_nothing_is_empty():
    assert ValueSketch.merge_all([]) == ValueSketch.empty()
    assert ValueSketch.merge_all(iter(())) == ValueSketch.empty()


def test_from_groups_equals_per_group_sketches():
    rng = np.random.default_rng(10)
    values = np.concatenate([lognormal(11, 4000), -lognormal(12, 500), np.zeros(100)])
    codes = rng.integers(0, 5, values.size)
    codes[codes == 3] = 4  # group 3 stays empty
    sketches = ValueSketch.from_groups(codes, values, 6)  # group 5 too
    assert len(sketches) == 6
    for g, sketch in enumerate(sketches):
        assert sketch == ValueSketch.from_values(values[codes == g])
    assert sketches[3].count == 0 and sketches[5].count == 0


def test_pickles_compactly_and_round_trips():
    sketch = ValueSketch.from_values(np.concatenate([lognormal(13), -lognormal(14, 100)]))
    blob = pickle.dumps(sketch)
    assert pickle.loads(blob) == sketch
    # Keys as int32 plus counts in <= 2 bytes each here, plus a small fixed overhead.
    assert len(blob) <= 200 + 6 * sketch.num_buckets
    assert len(pickle.dumps(ValueSketch.empty())) < 200


def test_bucket_count_is_capped_and_collapse_is_mergeable():
    # 10**(-150 .. 150) spans ~69,000 buckets: far over the cap.
    values = 10.0 ** np.linspace(-150, 150, 20_000)
    whole = ValueSketch.from_values(values)
    assert whole.num_buckets == MAX_BUCKETS
    assert whole.count == values.size
    # High quantiles sit in the kept (exact) buckets and keep their accuracy.
    for q in (0.9, 0.99):
        assert whole.quantile(q) == pytest.approx(np.quantile(values, q, method="lower"), rel=REL)
    parts = [ValueSketch.from_values(p) for p in np.array_split(values[::-1], 3)]
    assert ValueSketch.merge_all(parts) == whole


@pytest.mark.parametrize("q", [-0.1, 1.1, math.nan])
def test_quantile_out_of_range_raises(q):
    with pytest.raises(ValueError, match="quantile"):
        ValueSketch.from_values(np.array([1.0])).quantile(q)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_rejected(bad):
    with pytest.raises(ValueError, match="finite"):
        ValueSketch.from_values(np.array([1.0, bad]))


def test_from_groups_rejects_codes_out_of_range():
    with pytest.raises(ValueError, match="codes"):
        ValueSketch.from_groups(np.array([0, 2]), np.array([1.0, 2.0]), 2)


finite_lags = st.one_of(
    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
    st.just(0.0),
    st.floats(min_value=1e-3, max_value=1e-1),
)


@settings(max_examples=150, deadline=None)
@given(values=st.lists(finite_lags, min_size=1, max_size=200), data=st.data())
def test_property_quantiles_and_merge(values, data):
    values = np.array(values)
    cut = data.draw(st.integers(min_value=0, max_value=values.size))
    whole = ValueSketch.from_values(values)
    head, tail = ValueSketch.from_values(values[:cut]), ValueSketch.from_values(values[cut:])
    assert head.merge(tail) == whole
    assert whole.max == values.max()
    assert_quantiles_close(whole, values)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(np.array([]), id="empty"),
        pytest.param(np.zeros(3), id="zeros"),
        pytest.param(np.concatenate([lognormal(20, 3000), -lognormal(21, 500), [0.0]]), id="mixed"),
        pytest.param(np.arange(70_000, dtype=float), id="counts-above-u1"),
    ],
)
def test_bytes_round_trip(values):
    sketch = ValueSketch.from_values(values)
    blob = sketch.to_bytes()
    assert blob[0] == SKETCH_VERSION
    assert ValueSketch.from_bytes(blob) == sketch
    assert ValueSketch.from_bytes(memoryview(blob)) == sketch  # what Arrow hands back


def test_merge_of_decoded_list_is_sketch_of_union():
    values = np.random.default_rng(22).normal(3.0, 10.0, 9000)
    blobs = [ValueSketch.from_values(p).to_bytes() for p in np.array_split(values, 7)]
    merged = ValueSketch.merge_all(ValueSketch.from_bytes(b) for b in blobs)
    assert merged == ValueSketch.from_values(values)
    assert_quantiles_close(merged, values)


@pytest.mark.parametrize("blob", [b"", b"\x02" + b"\x00" * 40, b"\xff"])
def test_unknown_version_is_refused(blob):
    with pytest.raises(ValueError, match="version .* is not readable here"):
        ValueSketch.from_bytes(blob)


def test_truncated_bytes_are_refused():
    blob = ValueSketch.from_values(np.array([1.0, 2.0, -3.0])).to_bytes()
    with pytest.raises(ValueError, match="malformed value sketch"):
        ValueSketch.from_bytes(blob[:-1])
    with pytest.raises(ValueError, match="malformed value sketch"):
        ValueSketch.from_bytes(blob + b"\x00")


def test_buckets_are_a_weighted_sample_within_alpha():
    values = np.concatenate([lognormal(23, 4000), -lognormal(24, 1000), np.zeros(17)])
    sketch = ValueSketch.from_values(values)
    bucket_values, counts = sketch.buckets()
    assert counts.sum() == values.size
    assert np.all(np.diff(bucket_values) >= 0)
    assert counts[bucket_values == 0].sum() == 17
    # Each value maps to a bucket whose value is within ALPHA (relative) of it: expanding
    # the buckets gives the sorted values back, element by element, within ALPHA.
    expanded = np.repeat(bucket_values, counts)
    np.testing.assert_allclose(expanded, np.sort(values), rtol=ALPHA * 1.0001)


def test_buckets_of_empty_sketch_are_empty():
    bucket_values, counts = ValueSketch.empty().buckets()
    assert bucket_values.size == 0 and counts.size == 0


def test_histograms_of_two_sketches_share_one_index_space():
    a = ValueSketch.from_values(np.array([-5.0, -5.0, 0.0, 1.0, 1000.0]))
    b = ValueSketch.from_values(np.array([-5.0, 1.0, 1.0]))
    (ia, ca), (ib, cb) = a.histogram(), b.histogram()
    assert np.all(np.diff(ia) > 0) and ca.tolist() == [2, 1, 1, 1]
    assert set(ib) <= set(ia) and cb.tolist() == [1, 2]
    np.testing.assert_allclose(bucket_values(ia), [-5.0, 0.0, 1.0, 1000.0], rtol=ALPHA * 1.0001)
