"""dense_unique (the metrics pre-aggregation's grouping) equals numpy's unique."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from msewatch.transforms.metrics.slices import dense_unique


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(-(2**40), 2**40), max_size=50)
    | st.lists(st.integers(0, 30), max_size=200)  # the small-range (bincount) path
)
def test_equals_numpy_unique_with_inverse(values):
    values = np.array(values, dtype=np.int64)
    expected, inverse = np.unique(values, return_inverse=True)
    got, got_inverse = dense_unique(values)
    assert np.array_equal(got, expected) and got.dtype == expected.dtype
    assert np.array_equal(got_inverse, inverse.ravel())
