"""The metrics' pane totals state: an explicit, versioned encoding (no pickle)."""

from __future__ import annotations

import pickle
from unittest import mock

import numpy as np
import pytest

from msewatch.schemas.records import ExampleKind
from msewatch.transforms.metrics.accumulators import finalize
from msewatch.transforms.metrics.aggregate import aggregate_examples
from msewatch.transforms.metrics.totals_coder import PaneTotalsCoder, Totals

BOUNDS = ((0.5, 2.0), (60, 3600), ((0.0, 1.0),), ("price",))


def _totals() -> Totals:
    rng = np.random.default_rng(3)
    n = 50
    kind = np.where(np.arange(n) % 5 == 0, ExampleKind.EXPIRED, ExampleKind.LABELED)
    kind = kind.astype(np.int8)
    y_true = np.where(kind == ExampleKind.LABELED, rng.normal(size=n), np.nan)
    accs = aggregate_examples(
        np.arange(n) % 2,
        2,
        kind,
        rng.normal(size=n),
        y_true,
        np.ones(n),
        np.where(kind == ExampleKind.LABELED, rng.uniform(-5, 900, size=n), np.nan),
        error_thresholds=BOUNDS[0],
        freshness_within_s=BOUNDS[1],
        valid_ranges=BOUNDS[2],
        features={"price": rng.uniform(1, 9, size=n)},
    )
    return Totals({"overall": accs[0], "region=eu": accs[1]})


def test_round_trip_gives_the_same_metrics_without_pickle():
    coder = PaneTotalsCoder()
    totals = _totals()
    encoded = coder.encode(totals)
    assert encoded[:5] == b"MWMT\x01"
    assert b"\x80\x04" not in encoded and b"\x80\x05" not in encoded  # no pickle protocol
    with mock.patch.object(pickle, "loads", side_effect=AssertionError("pickle used")):
        back = coder.decode(encoded)
    assert isinstance(back, Totals) and sorted(back) == sorted(totals)
    for name, acc in totals.items():
        want, got = finalize(acc, *BOUNDS), finalize(back[name], *BOUNDS)
        assert got.keys() == want.keys()
        for key in want:
            assert repr(got[key]) == repr(want[key]), key  # NaN-safe, exact
    assert coder.encode(back) == encoded


def test_an_unknown_version_or_an_old_pickle_is_refused():
    coder = PaneTotalsCoder()
    encoded = coder.encode(_totals())
    with pytest.raises(ValueError, match="PaneTotalsCoder: state format version 9 is unknown"):
        coder.decode(encoded[:4] + b"\x09" + encoded[5:])
    with pytest.raises(ValueError, match="PaneTotalsCoder: not a b'MWMT' state value"):
        coder.decode(pickle.dumps(dict(_totals())))
