"""Value distributions per (window, slice): :class:`Distributions`, mergeable.

What the drift and label-anomaly SLIs read from the ``metrics`` table, so that they need
nothing but the table (docs/semantics.md, "Distribution columns"):

* ``y_pred_sketch``: a :class:`~msewatch.transforms.metrics.sketch.ValueSketch` of the
  finite ``y_pred`` of the window's distinct predictions (ARRIVED examples: counted when
  the prediction arrives, before any label), unweighted; null when there are none.
* ``y_true_sketch``: the same of the finite ``y_true`` of labeled pairs (LABELED examples).
* ``feature_sketches``: one sketch per configured feature (``MetricsConfig.features``, in
  that order), of the finite values of that feature over the window's distinct
  predictions (ARRIVED examples, like ``y_pred_sketch``); null sketch when there are
  none; an empty list when no feature is configured.
* ``label_range``: per configured valid range ``[low, high]`` (ascending), the labeled
  pairs whose finite ``y_true`` is outside it (``< low`` or ``> high``).
* ``y_true_min``, ``y_true_max``: the exact extremes of the finite ``y_true`` of labeled
  pairs, whatever their weight; NaN when there are none.

(``sum_abs_pred`` and ``sum_abs_true`` are weighted sums over scored pairs, kept with the
other sums in :mod:`msewatch.transforms.metrics.accumulators`.) Everything is vectorized
over a batch: one ``ValueSketch.from_groups`` per sketched column, one ``np.bincount``
per valid range. None of this looks at time: the caller windows the examples.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from msewatch.schemas.records import ExampleKind
from msewatch.transforms.metrics.sketch import ValueSketch


def check_valid_ranges(values) -> tuple[tuple[float, float], ...]:
    """``values`` as distinct ``(low, high)`` pairs with ``low < high``, ascending.

    Infinite bounds are allowed (a one-sided range); NaN is not. Repeats are dropped
    (two SLOs may share a range).

    Raises:
        ValueError: otherwise; the message names the allowed values.
    """
    out = set()
    for pair in values or ():
        ok = isinstance(pair, tuple | list) and len(pair) == 2
        ok = ok and all(
            isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
            for v in pair
        )
        if not ok or not float(pair[0]) < float(pair[1]):
            raise ValueError(
                f"a valid range is (low, high), two numbers with low < high; got {pair!r}"
            )
        out.add((float(pair[0]), float(pair[1])))
    return tuple(sorted(out))


@dataclasses.dataclass(frozen=True, slots=True)
class Distributions:
    """The value distributions of one (window, slice): immutable, merged into new ones.

    ``label_outside`` holds one count per configured valid range, or is empty (zeros
    for any number of ranges), like the per-bound tuples of the error accumulator.
    """

    y_pred: ValueSketch = dataclasses.field(default_factory=ValueSketch.empty)
    y_true: ValueSketch = dataclasses.field(default_factory=ValueSketch.empty)
    features: tuple[tuple[str, ValueSketch], ...] = ()
    label_outside: tuple[int, ...] = ()
    y_true_min: float = math.inf
    y_true_max: float = -math.inf

    def __reduce__(self):
        # Positional values only: pickles without repeating the field names.
        return Distributions, tuple(getattr(self, f.name) for f in dataclasses.fields(self))


def aggregate_distributions(
    codes: np.ndarray,
    n_groups: int,
    kind: np.ndarray,
    y_pred: np.ndarray,
    y_true: np.ndarray,
    valid_ranges: tuple[tuple[float, float], ...] = (),
    features: dict[str, np.ndarray] | None = None,
) -> list[Distributions]:
    """One :class:`Distributions` per group of a batch of examples, vectorized.

    Args:
        codes: group code of each example, ints in ``[0, n_groups)`` (checked by the caller).
        n_groups: number of groups.
        kind: ``ExampleKind`` of each example.
        y_pred, y_true: float columns (NaN where null or not LABELED).
        valid_ranges: :func:`check_valid_ranges` output.
        features: feature name -> its float column (NaN where absent), in the configured
            order; each is sketched like ``y_pred`` (finite values of ARRIVED examples).

    Returns:
        ``n_groups`` distributions, index = group code.
    """
    arrived = (kind == ExampleKind.ARRIVED) & np.isfinite(y_pred)
    labeled = (kind == ExampleKind.LABELED) & np.isfinite(y_true)
    pred_sketches = ValueSketch.from_groups(codes[arrived], y_pred[arrived], n_groups)
    label_codes, labels = codes[labeled], y_true[labeled]
    true_sketches = ValueSketch.from_groups(label_codes, labels, n_groups)
    lo, hi = np.full(n_groups, np.inf), np.full(n_groups, -np.inf)
    np.minimum.at(lo, label_codes, labels)
    np.maximum.at(hi, label_codes, labels)
    outside = [
        np.bincount(label_codes[(labels < low) | (labels > high)], minlength=n_groups)
        for low, high in valid_ranges
    ]
    per_group = np.stack(outside, axis=1).tolist() if outside else itertools.repeat(())
    feature_sketches = _feature_groups(codes, n_groups, kind, features or {})
    return [
        Distributions(p, t, f, tuple(o), a, b)
        for p, t, f, o, a, b in zip(
            pred_sketches,
            true_sketches,
            feature_sketches,
            per_group,
            lo.tolist(),
            hi.tolist(),
            strict=False,
        )
    ]


def _feature_groups(codes, n_groups: int, kind, features: dict) -> list | itertools.repeat:
    """Per group, ``((name, sketch), ...)`` of each feature's finite ARRIVED values."""
    if not features:
        return itertools.repeat(())
    arrived = kind == ExampleKind.ARRIVED
    per_name = []
    for name, values in features.items():
        values = np.asarray(values, dtype=np.float64)
        keep = arrived & np.isfinite(values)
        sketches = ValueSketch.from_groups(codes[keep], values[keep], n_groups)
        per_name.append([(name, sketch) for sketch in sketches])
    return list(zip(*per_name, strict=True))


def _merge_counts(parts: list[tuple[int, ...]]) -> tuple[int, ...]:
    present = [p for p in parts if p]
    if len({len(p) for p in present}) > 1:
        raise ValueError("cannot merge distributions made with different valid ranges")
    return tuple(map(sum, zip(*present, strict=True))) if present else ()


def _merge_features(parts) -> tuple[tuple[str, ValueSketch], ...]:
    by_name: dict[str, list[ValueSketch]] = {}
    for features in parts:
        for name, sketch in features:
            by_name.setdefault(name, []).append(sketch)
    return tuple((n, ValueSketch.merge_all(s)) for n, s in sorted(by_name.items()))


def merge_distributions(parts) -> Distributions:
    """The distributions of the union of any iterable of disjoint parts (a new object)."""
    parts = list(iter(parts))
    if not parts:
        return Distributions()
    if len(parts) == 1:
        return parts[0]
    return Distributions(
        ValueSketch.merge_all(d.y_pred for d in parts),
        ValueSketch.merge_all(d.y_true for d in parts),
        _merge_features(d.features for d in parts if d.features),
        _merge_counts([d.label_outside for d in parts]),
        min(d.y_true_min for d in parts),
        max(d.y_true_max for d in parts),
    )


def _sketch_bytes(sketch: ValueSketch) -> bytes | None:
    return sketch.to_bytes() if sketch.count else None


def _feature_entries(sketches, features) -> list[dict]:
    by_name = dict(sketches)
    names = list(features) + [n for n, _ in sketches if n not in features]
    return [
        {"feature": n, "sketch": _sketch_bytes(by_name[n]) if n in by_name else None} for n in names
    ]


def distribution_columns(dist: Distributions, valid_ranges=(), features=()) -> dict:
    """The ``metrics`` columns of ``dist`` (module docstring); null sketch / NaN when empty.

    ``feature_sketches`` holds one entry per name of ``features`` (the configured ones,
    in order), null where ``dist`` has no value of it.

    Raises:
        ValueError: ``dist`` holds counts for a different number of valid ranges.
    """
    outside = dist.label_outside or (0,) * len(valid_ranges)
    if len(outside) != len(valid_ranges):
        raise ValueError(
            f"the distributions have {len(outside)} valid-range counts, not {len(valid_ranges)}"
        )
    empty = dist.y_true_min > dist.y_true_max
    return {
        "y_pred_sketch": _sketch_bytes(dist.y_pred),
        "y_true_sketch": _sketch_bytes(dist.y_true),
        "feature_sketches": _feature_entries(dist.features, features),
        "label_range": [
            {"low": low, "high": high, "outside": int(n)}
            for (low, high), n in zip(valid_ranges, outside, strict=True)
        ],
        "y_true_min": math.nan if empty else dist.y_true_min,
        "y_true_max": math.nan if empty else dist.y_true_max,
    }
