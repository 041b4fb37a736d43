"""The tagged-tree state encoding (schemas/state_tree.py) and the SLO state coders."""

from __future__ import annotations

import datetime

import numpy as np
import pytest

from msewatch.schemas import state_tree
from msewatch.transforms.slo.live import LiveSlicesCoder
from msewatch.transforms.slo.transform import PendingRowsCoder

UTC = datetime.UTC


def test_values_round_trip_exactly():
    value = {
        "none": None,
        "flags": (True, False),
        "n": -(2**62),
        "x": float("nan"),
        "s": "région=eu",
        "raw": b"\x00\x80\x04",
        "when": datetime.datetime(2026, 12, 8, 3, 4, 5, 678901, tzinfo=UTC),
        "naive": datetime.datetime(1969, 12, 31, 23, 59, 59),
        7: np.array([1.5, -2.0]),
        "obj": np.array([b"sketch", None], dtype=object),
    }
    back = state_tree.decode(memoryview(state_tree.encode(value)), "test")
    assert repr({k: v for k, v in back.items() if k not in (7, "obj")}) == repr(
        {k: v for k, v in value.items() if k not in (7, "obj")}
    )
    assert back[7].dtype == np.float64 and back[7].tolist() == [1.5, -2.0]
    assert back["obj"].tolist() == [b"sketch", None]
    assert state_tree.decode(memoryview(state_tree.encode([1, 2])), "t") == (1, 2)  # lists: tuples


def test_an_unencodable_or_truncated_value_is_a_clear_error():
    with pytest.raises(TypeError, match="no explicit encoding for set"):
        state_tree.encode({1, 2})
    with pytest.raises(TypeError, match="only 1-d arrays"):
        state_tree.encode(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="test: a truncated or garbled state value"):
        state_tree.decode(memoryview(state_tree.encode("abcdef")[:-2]), "test")


@pytest.mark.parametrize(
    ("coder", "value"),
    [
        (LiveSlicesCoder(), {"region=eu": 7_200_000}),
        (PendingRowsCoder(), {"end_ms": 3_600_000, "slice": "overall", "rmse": 1.25}),
    ],
)
def test_the_slo_state_coders_round_trip_and_refuse_another_version(coder, value):
    encoded = coder.encode(value)
    assert encoded[:5] == type(coder).MAGIC + b"\x01"
    assert coder.decode(encoded) == value
    with pytest.raises(ValueError, match=f"{type(coder).__name__}: state format version 3"):
        coder.decode(encoded[:4] + b"\x03" + encoded[5:])
