"""Slice names, crosses and the cardinality cap, computed per batch."""

from __future__ import annotations

import pytest

from msewatch.transforms.metrics.slices import OTHER, OVERALL, SliceCoder, SliceConfig
from tests.harness import predictions


def _names_per_row(coder, table):
    out = []
    for codes, names in coder.codes(table):
        out.append([names[c] for c in codes])
    return out


def test_overall_model_version_and_crosses_in_key_order():
    table = predictions(
        [
            {"id": "a", "t": 0, "y": 1, "mv": "v2", "region": "eu"},
            {"id": "b", "t": 0, "y": 1, "mv": "v1", "region": "us"},
            {"id": "c", "t": 0, "y": 1, "mv": "v2"},  # region missing -> "unknown"
        ],
        segment_keys=("region",),
    )
    config = SliceConfig.parse(["region", "model_version,region"])
    assert config.segment_keys == ("region",)
    overall, mv, region, cross = _names_per_row(SliceCoder(config), table)
    assert overall == [OVERALL] * 3
    assert mv == ["model_version=v2", "model_version=v1", "model_version=v2"]
    assert region == ["region=eu", "region=us", "region=unknown"]
    assert cross == [
        "model_version=v2,region=eu",
        "model_version=v1,region=us",
        "model_version=v2,region=unknown",
    ]


def test_values_beyond_the_cap_fold_into_other_and_stay_folded():
    config = SliceConfig.parse(["region"], max_values=2)
    coder = SliceCoder(config)
    first = predictions(
        [{"id": str(i), "t": 0, "y": 1, "region": r} for i, r in enumerate("abca")],
        segment_keys=("region",),
    )
    # model_version ("v1") takes one of its own key's places, not region's
    _, _, region = _names_per_row(coder, first)
    assert region == ["region=a", "region=b", f"region={OTHER}", "region=a"]
    second = predictions(
        [{"id": "x", "t": 0, "y": 1, "region": r} for r in ("c", "d", "b")],
        segment_keys=("region",),
    )
    _, _, region = _names_per_row(coder, second)
    assert region == [f"region={OTHER}", f"region={OTHER}", "region=b"]


@pytest.mark.parametrize("spec", ["", "a,,b", "a=b", "region,region"])
def test_bad_specs_are_rejected(spec):
    with pytest.raises(ValueError, match="slice spec"):
        SliceConfig.parse([spec])
