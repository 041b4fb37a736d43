"""A batch of examples -> one :class:`ErrorAccumulator` per group: :func:`aggregate_examples`.

Vectorized over the batch (``np.bincount``, ``np.maximum.at``; no loop over records),
in named steps: check the columns, count the examples and pick the scored pairs, then
the weighted sums, the centered moments, the extremes, the lag sketches and, when
bounds are configured, the exact per-bound counts of each group (pairs beyond each
error threshold, labels within each freshness bound: one ``np.searchsorted`` per
kind of bound, whatever their number). What each count and sum
means is in :mod:`msewatch.transforms.metrics.accumulators` (module docstring). None
of this looks at time: the caller windows the examples (by the prediction's event
time) before aggregating them.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from msewatch.schemas.records import ExampleKind
from msewatch.schemas.time_range import MAX_DURATION_DAYS, MAX_DURATION_MS
from msewatch.transforms.metrics.accumulators import ErrorAccumulator
from msewatch.transforms.metrics.distributions import aggregate_distributions, check_valid_ranges
from msewatch.transforms.metrics.sketch import ValueSketch

MAX_WITHIN_SECONDS = MAX_DURATION_MS // 1000


def _checked_bounds(values, name: str, allowed: str, is_allowed) -> tuple:
    """``values`` as a tuple if every one ``is_allowed`` and they strictly increase."""
    try:
        out = tuple(values)
    except TypeError:
        out = None
    if (
        out is None
        or not all(map(is_allowed, out))
        or any(a >= b for a, b in itertools.pairwise(out))
    ):
        raise ValueError(
            f"{name} must be {allowed}, in increasing order without repeats; got {values!r}"
        )
    return out


def _is_threshold(t) -> bool:
    real = isinstance(t, int | float | np.integer | np.floating) and not isinstance(t, bool)
    return real and math.isfinite(t) and t >= 0


def _is_within(s) -> bool:
    whole = isinstance(s, int | np.integer) and not isinstance(s, bool)
    return whole and 0 <= s <= MAX_WITHIN_SECONDS


def check_error_thresholds(values) -> tuple[float, ...]:
    """``values`` checked as error thresholds: finite numbers >= 0, increasing.

    Raises:
        ValueError: otherwise; the message names the allowed values.
    """
    allowed = "finite numbers >= 0"
    return tuple(map(float, _checked_bounds(values, "error_thresholds", allowed, _is_threshold)))


def check_freshness_within_s(values) -> tuple[int, ...]:
    """``values`` checked as bounds on label lag: whole seconds in [0, 3650 days],
    increasing.

    Raises:
        ValueError: otherwise; the message names the allowed values.
    """
    allowed = f"whole seconds in 0..{MAX_WITHIN_SECONDS} ({MAX_DURATION_DAYS} days)"
    return tuple(map(int, _checked_bounds(values, "freshness_within_s", allowed, _is_within)))


@dataclasses.dataclass(frozen=True)
class _Batch:
    """A batch of EXAMPLES columns as flat numpy arrays of one length."""

    codes: np.ndarray  # group code of each example, in [0, n_groups)
    n_groups: int
    kind: np.ndarray
    y_pred: np.ndarray
    y_true: np.ndarray
    weight: np.ndarray
    lag_s: np.ndarray

    def count(self, mask: np.ndarray) -> np.ndarray:
        """Examples per group where ``mask`` is true."""
        return np.bincount(self.codes[mask], minlength=self.n_groups)


@dataclasses.dataclass(frozen=True)
class _ScoredPairs:
    """The scored pairs of a batch (labeled, finite inputs, finite ``e*e``)."""

    codes: np.ndarray
    n_groups: int
    weight: np.ndarray
    y_pred: np.ndarray
    y_true: np.ndarray
    error: np.ndarray  # y_pred - y_true
    squared_error: np.ndarray
    abs_error: np.ndarray

    def count(self, mask: np.ndarray) -> np.ndarray:
        """Scored pairs per group where ``mask`` is true, whatever their weight."""
        return np.bincount(self.codes[mask], minlength=self.n_groups)

    def weighted_sum(self, x) -> np.ndarray:
        """Sum of ``weight * x`` per group."""
        # A zero weight contributes 0 even where x overflowed (0 * inf would be NaN).
        w = self.weight
        return np.bincount(self.codes, weights=np.where(w > 0, w * x, 0.0), minlength=self.n_groups)


def aggregate_examples(
    codes: np.ndarray,
    n_groups: int,
    kind: np.ndarray,
    y_pred: np.ndarray,
    y_true: np.ndarray,
    weight: np.ndarray,
    lag_s: np.ndarray,
    huber_delta: float = 1.0,
    error_thresholds=(),
    freshness_within_s=(),
    valid_ranges=(),
    features: dict[str, np.ndarray] | None = None,
) -> list[ErrorAccumulator]:
    """Aggregates a batch of examples into one accumulator per group, vectorized.

    Args:
        codes: Group code of each example, ints in ``[0, n_groups)``.
        n_groups: Number of groups; a group without examples gets an empty accumulator.
        kind: ``ExampleKind`` value of each example (int8).
        y_pred: Predictions, float (null as NaN).
        y_true: Labels, float (NaN unless LABELED).
        weight: Sample weights, finite and >= 0.
        lag_s: Label lag in seconds (NaN unless LABELED).
        huber_delta: Threshold of the Huber loss, > 0.
        error_thresholds: Error thresholds (:func:`check_error_thresholds`): per
            threshold, the weight and number of scored pairs with ``|e|`` above it.
        freshness_within_s: Bounds on label lag, seconds
            (:func:`check_freshness_within_s`): per bound, the LABELED examples with
            ``lag_s`` at most it.
        valid_ranges: ``(low, high)`` ranges of ``y_true``
            (:func:`~.distributions.check_valid_ranges`): per range, the labeled pairs
            outside it; with the value sketches in each accumulator's ``dist``.
        features: feature name -> float column, one value per example (NaN where
            absent): one value sketch per feature in each accumulator's ``dist``.

    Returns:
        ``n_groups`` accumulators, index = group code.

    Raises:
        ValueError: on arrays of different lengths, codes out of range, a
            non-positive ``huber_delta`` or malformed bounds.
    """
    batch = _checked_batch(codes, n_groups, kind, y_pred, y_true, weight, lag_s)
    if not huber_delta > 0:
        raise ValueError(f"huber_delta must be > 0, got {huber_delta}")
    thresholds = check_error_thresholds(error_thresholds)
    within_s = check_freshness_within_s(freshness_within_s)
    ranges = check_valid_ranges(valid_ranges)
    columns, pairs = _count_examples(batch)
    columns.update(_weighted_sums(pairs, huber_delta))
    columns.update(_centered_moments(pairs, columns["sum_w"]))
    columns.update(_extremes(pairs))
    bounded = {}
    if thresholds:
        bounded.update(_exceedances(pairs, thresholds))
    if within_s:
        bounded.update(_labeled_within(batch, within_s))
    dists = aggregate_distributions(
        batch.codes, batch.n_groups, batch.kind, batch.y_pred, batch.y_true, ranges, features
    )
    return _accumulators(columns, _lag_sketches(batch), dists, bounded)


def _checked_batch(codes, n_groups, kind, y_pred, y_true, weight, lag_s) -> _Batch:
    """The columns as flat arrays (codes as ``intp``, values as float64), checked."""
    codes = np.asarray(codes, dtype=np.intp).ravel()
    kind = np.asarray(kind).ravel()
    y_pred, y_true, weight, lag_s = (
        np.asarray(a, dtype=np.float64).ravel() for a in (y_pred, y_true, weight, lag_s)
    )
    if len({a.size for a in (codes, kind, y_pred, y_true, weight, lag_s)}) != 1:
        raise ValueError("codes, kind, y_pred, y_true, weight and lag_s must have one length")
    if n_groups < 0 or (codes.size and (codes.min() < 0 or codes.max() >= n_groups)):
        raise ValueError(f"codes must be in [0, n_groups={n_groups})")
    return _Batch(codes, n_groups, kind, y_pred, y_true, weight, lag_s)


def _count_examples(batch: _Batch) -> tuple[dict[str, np.ndarray], _ScoredPairs]:
    """The per-group counts of the module docstring, and the batch's scored pairs."""
    arrived = batch.kind == ExampleKind.ARRIVED
    labeled = batch.kind == ExampleKind.LABELED
    pred_finite = np.isfinite(batch.y_pred)
    true_finite = np.isfinite(batch.y_true)
    with np.errstate(all="ignore"):
        error = batch.y_pred - batch.y_true
        squared_error = error * error
    inputs_finite = labeled & pred_finite & true_finite
    scored = inputs_finite & np.isfinite(squared_error)  # e*e finite implies e finite
    counts = {
        "predictions": batch.count(arrived),
        "nan_predictions": batch.count(arrived & ~pred_finite),
        "labeled": batch.count(labeled),
        "nan_labels": batch.count(labeled & ~true_finite),
        "nonfinite_errors": batch.count(inputs_finite & ~scored),
        "negative_lags": batch.count(labeled & (batch.lag_s < 0)),
        "expired": batch.count(batch.kind == ExampleKind.EXPIRED),
        "scored": batch.count(scored),
    }
    pairs = _ScoredPairs(
        codes=batch.codes[scored],
        n_groups=batch.n_groups,
        weight=batch.weight[scored],
        y_pred=batch.y_pred[scored],
        y_true=batch.y_true[scored],
        error=error[scored],
        squared_error=squared_error[scored],
        abs_error=np.abs(error[scored]),
    )
    return counts, pairs


def _weighted_sums(pairs: _ScoredPairs, huber_delta: float) -> dict[str, np.ndarray]:
    """The ``sum_*`` columns, and the pairs MAPE and RMSLE leave out."""
    wsum = pairs.weighted_sum
    e, se, ae = pairs.error, pairs.squared_error, pairs.abs_error
    yp, yt = pairs.y_pred, pairs.y_true
    with np.errstate(all="ignore"):
        ape_defined = yt != 0
        ape = np.where(ape_defined, np.abs(e / np.where(ape_defined, yt, 1.0)), 0.0)
        sle_defined = (yp >= 0) & (yt >= 0)
        log_error = np.log1p(np.where(sle_defined, yp, 0.0)) - np.log1p(
            np.where(sle_defined, yt, 0.0)
        )
        huber = np.where(ae <= huber_delta, 0.5 * se, huber_delta * (ae - 0.5 * huber_delta))
        return {
            "sum_w": wsum(1.0),
            "sum_w2": wsum(pairs.weight),  # w * w
            "sum_se": wsum(se),
            "sum_se2": wsum(se * se),
            "sum_ae": wsum(ae),
            "sum_e": wsum(e),
            "sum_y": wsum(yt),
            "sum_y2": wsum(yt * yt),
            "sum_ape": wsum(ape),
            "sum_w_ape": wsum(ape_defined.astype(np.float64)),
            "mape_excluded": pairs.count(~ape_defined),
            "sum_sle": wsum(np.where(sle_defined, log_error * log_error, 0.0)),
            "sum_w_sle": wsum(sle_defined.astype(np.float64)),
            "rmsle_excluded": pairs.count(~sle_defined),
            "sum_huber": wsum(huber),
            "sum_abs_pred": wsum(np.abs(yp)),
            "sum_abs_true": wsum(np.abs(yt)),
        }


def _centered_moments(pairs: _ScoredPairs, sum_w: np.ndarray) -> dict[str, np.ndarray]:
    """Weighted mean and sum of squared deviations of ``y_true`` and of ``e**2`` per
    group, in two passes over the batch (the mean first, then the deviations)."""
    moments = {}
    with np.errstate(all="ignore"):
        for x, mean, m2 in (
            (pairs.y_true, "mean_y", "m2_y"),
            (pairs.squared_error, "mean_se", "m2_se"),
        ):
            group_mean = np.divide(
                pairs.weighted_sum(x), sum_w, out=np.zeros(pairs.n_groups), where=sum_w > 0
            )
            deviation = x - group_mean[pairs.codes]
            moments[mean] = group_mean
            moments[m2] = pairs.weighted_sum(deviation * deviation)
    return moments


def _extremes(pairs: _ScoredPairs) -> dict[str, np.ndarray]:
    """Largest ``|e|`` per group (any weight), and ``y_true``'s range over ``w > 0``."""
    n = pairs.n_groups
    max_abs_error = np.zeros(n)
    np.maximum.at(max_abs_error, pairs.codes, pairs.abs_error)
    weighted = pairs.weight > 0
    min_y, max_y = np.full(n, np.inf), np.full(n, -np.inf)
    np.minimum.at(min_y, pairs.codes[weighted], pairs.y_true[weighted])
    np.maximum.at(max_y, pairs.codes[weighted], pairs.y_true[weighted])
    return {"max_abs_error": max_abs_error, "min_y": min_y, "max_y": max_y}


def _lag_sketches(batch: _Batch) -> list[ValueSketch]:
    """One sketch per group of the finite label lags of LABELED examples."""
    has_lag = (batch.kind == ExampleKind.LABELED) & np.isfinite(batch.lag_s)
    return ValueSketch.from_groups(batch.codes[has_lag], batch.lag_s[has_lag], batch.n_groups)


def _per_group_histogram(codes, bins, weights, n_groups: int, n_bins: int) -> np.ndarray:
    """``(n_groups, n_bins)`` counts (or sums of ``weights``) of ``(code, bin)`` cells."""
    cells = codes * n_bins + bins
    hist = np.bincount(cells, weights=weights, minlength=n_groups * n_bins)
    return hist.reshape(n_groups, n_bins)


def _exceedances(pairs: _ScoredPairs, thresholds: tuple[float, ...]) -> dict[str, np.ndarray]:
    """Per group and threshold: the number and weight of scored pairs with ``|e|`` above.

    ``bins`` is the number of thresholds below each ``|e|``; thresholds increase, so a
    pair in bin ``b`` exceeds thresholds ``0..b-1``, and the pairs beyond threshold
    ``j`` are those of bins ``j+1..k``: a cumulative sum from the top bin down.
    """
    k = len(thresholds)
    bins = np.searchsorted(np.asarray(thresholds), pairs.abs_error, side="left")
    columns = {}
    for name, weights in (("exceed_count", None), ("exceed_sum_w", pairs.weight)):
        hist = _per_group_histogram(pairs.codes, bins, weights, pairs.n_groups, k + 1)
        columns[name] = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1:]
    return columns


def _labeled_within(batch: _Batch, within_s: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Per group and bound: LABELED examples with ``lag_s <= bound``.

    ``bins`` is the number of bounds below each lag (a NaN lag sorts above all of
    them): an example in bin ``b`` is within bounds ``b..k-1``, so the count within
    bound ``j`` is that of bins ``0..j``, a cumulative sum from the bottom bin up.
    """
    k = len(within_s)
    labeled = batch.kind == ExampleKind.LABELED
    bins = np.searchsorted(np.asarray(within_s, np.float64), batch.lag_s[labeled], side="left")
    hist = _per_group_histogram(batch.codes[labeled], bins, None, batch.n_groups, k + 1)
    return {"labeled_within": np.cumsum(hist, axis=1)[:, :k]}


def _accumulators(
    columns: dict[str, np.ndarray],
    lags: list[ValueSketch],
    dists: list,
    bounded: dict[str, np.ndarray],
) -> list[ErrorAccumulator]:
    """Per-group columns (``bounded``: ``(n_groups, k)`` arrays) -> one
    :class:`ErrorAccumulator` per group."""
    values = {name: column.tolist() for name, column in columns.items()}
    values["lag"] = lags
    values["dist"] = dists
    values.update({name: list(map(tuple, rows.tolist())) for name, rows in bounded.items()})
    return [
        ErrorAccumulator(**dict(zip(values, row, strict=True)))
        for row in zip(*values.values(), strict=True)
    ]
