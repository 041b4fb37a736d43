"""Slice keys as label names (Alertmanager and Prometheus): valid, distinct, documented."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msewatch.transforms.labels import label_names

VALID = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")  # Alertmanager's and Prometheus's rule


@pytest.mark.parametrize(
    ("key", "label"),
    [
        ("region", "region"),  # valid: unchanged
        ("_tier", "_tier"),
        ("sku-category", "sku_category"),  # '-' -> '_'
        ("a.b c", "a_b_c"),
        ("café", "caf_"),  # only ASCII letters are valid
        ("2nd", "slice_2nd"),  # may not start with a digit
        ("__internal", "slice___internal"),  # '__' is Prometheus's
        ("-x", "_x"),
        ("é", "slice__"),  # not "_": a suffix would make it "__2"
        ("severity", "slice_severity"),  # one of the caller's own labels
    ],
)
def test_a_key_maps_to_a_valid_name(key, label):
    assert label_names([key], reserved=["alertname", "slo", "severity"]) == {key: label}


def test_a_collision_gets_the_first_free_suffix_in_sorted_order():
    # sku_category is valid and keeps its name; of the two renamed keys, sorted:
    # "sku-category" < "sku.category" ('-' 0x2d < '.' 0x2e): _2, then _3
    keys = ["sku.category", "sku_category", "sku-category"]
    assert label_names(keys) == {
        "sku_category": "sku_category",
        "sku-category": "sku_category_2",
        "sku.category": "sku_category_3",
    }


def test_a_renamed_key_never_takes_a_reserved_name_or_a_suffixed_one():
    # "slo" is reserved -> slice_slo; a real key "slice_slo" keeps it -> slice_slo_2
    assert label_names(["slo", "slice_slo"], reserved=["slo"]) == {
        "slice_slo": "slice_slo",
        "slo": "slice_slo_2",
    }


def test_the_mapping_does_not_depend_on_the_order_of_the_keys():
    keys = ["b-c", "b_c", "b.c", "1", "_1", "x"]
    first = label_names(keys)
    for order in itertools.permutations(keys):
        assert label_names(order) == first


def test_every_name_is_valid_and_distinct():
    keys = ["a-b", "a_b", "a.b", "a b", "9", "_9", "slice_9", "__", "", "é", "ü", "x" * 5]
    names = label_names(keys, reserved=["slice"])
    assert sorted(names) == sorted(set(keys))
    assert len(set(names.values())) == len(names)
    for name in names.values():
        assert VALID.fullmatch(name) and not name.startswith("__") and name != "slice"


@settings(max_examples=300, derandomize=True, deadline=None)  # deterministic in CI
@given(
    keys=st.lists(st.text(alphabet="ab_-.1é ", max_size=4), max_size=8),
    reserved=st.lists(st.sampled_from(["slice", "slo", "a", "a_2", "slice_", "_"]), max_size=3),
)
def test_any_keys_get_valid_distinct_names_whatever_their_order(keys, reserved):
    names = label_names(keys, reserved)
    assert set(names) == set(keys)
    assert len(set(names.values())) == len(names)
    assert not set(names.values()) & set(reserved)
    for key, name in names.items():
        assert VALID.fullmatch(name) and not name.startswith("__"), (key, name)
    assert label_names(list(reversed(keys)), reserved) == names
