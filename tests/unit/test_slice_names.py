"""Slice names are an unambiguous encoding of (key, value) pairs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msewatch.transforms.metrics.slices import (
    OTHER,
    OVERALL,
    SliceCoder,
    SliceConfig,
    escape_value,
    parse_slice_name,
    slice_name,
)
from tests.harness import predictions

_KEYS = st.text(st.characters(blacklist_characters="=,%"), min_size=1, max_size=5)
_VALUES = st.text(max_size=8) | st.sampled_from(["eu,model_version=v1", "%2C", OTHER, "a=b"])
_PAIRS = st.lists(st.tuples(_KEYS, _VALUES), min_size=1, max_size=3)


@settings(max_examples=150, deadline=None)
@given(_PAIRS, _PAIRS)
def test_two_different_segment_tuples_never_share_a_name(a, b):
    if a != b:
        assert slice_name(a) != slice_name(b)


@settings(max_examples=150, deadline=None)
@given(_PAIRS)
def test_a_name_parses_back_to_its_pairs(pairs):
    assert parse_slice_name(slice_name(pairs)) == tuple(pairs)


def test_separators_inside_values_are_percent_escaped():
    # % first, so that an escaped sequence in the input cannot be mistaken for one
    assert escape_value("eu,model_version=v1") == "eu%2Cmodel_version%3Dv1"
    assert escape_value("50%") == "50%25"
    assert escape_value("%2C") == "%252C"
    # a value that is literally __other__ must not look like the folded slice
    assert escape_value(OTHER) == "%5F_other__"
    assert slice_name([("region", OTHER)]) == "region=__other__"  # the fold itself
    assert slice_name([]) == OVERALL


@pytest.mark.parametrize("bad", ["region", "=eu", "a=b=c", "region=eu,x"])
def test_a_malformed_name_is_refused_with_the_escaping_rule(bad):
    with pytest.raises(ValueError, match="%2C"):
        parse_slice_name(bad)


def test_the_coder_escapes_hostile_values_and_keeps_them_apart():
    table = predictions(
        [
            {"id": "a", "t": 0, "y": 1, "mv": "v1", "region": "eu"},
            {"id": "b", "t": 0, "y": 1, "mv": "v2", "region": "eu,model_version=v1"},
            {"id": "c", "t": 0, "y": 1, "mv": "v2", "region": OTHER},
        ],
        segment_keys=("region",),
    )
    config = SliceConfig.parse(["region", "region,model_version"])
    codes = SliceCoder(config).codes(table)
    region = [codes[2][1][c] for c in codes[2][0]]
    cross = [codes[3][1][c] for c in codes[3][0]]
    assert region == ["region=eu", "region=eu%2Cmodel_version%3Dv1", "region=%5F_other__"]
    assert cross[0] == "region=eu,model_version=v1"
    assert set(region).isdisjoint(cross)
