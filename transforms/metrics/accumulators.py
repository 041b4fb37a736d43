"""Mergeable error accumulators: the metric math behind every metrics row.

An :class:`ErrorAccumulator` holds counts and weighted sums of one (window, slice);
accumulators of disjoint parts of the data merge into the accumulator of the whole,
so the same numbers come out whether Beam combines them in one bundle or many.
:func:`~msewatch.transforms.metrics.aggregate.aggregate_examples` builds one accumulator
per group from a batch of ``EXAMPLES`` columns; :func:`merge_accumulators` merges them;
:func:`finalize` turns an accumulator into the metric columns of a row. None of this
looks at time: the caller windows the examples (by the prediction's event time) before
aggregating them.

Definitions (``e = y_pred - y_true``, ``w`` = the prediction's weight):

* ARRIVED examples count toward ``predictions``; a NaN/inf/null ``y_pred`` (null
  arrives as NaN) also counts toward ``nan_predictions``. EXPIRED examples count
  toward ``expired``.
* LABELED examples count toward ``labeled``; a non-finite ``y_true`` toward
  ``nan_labels``; finite inputs whose ``e`` or ``e*e`` overflows (``|e| > ~1.3e154``)
  toward ``nonfinite_errors``; ``label_lag_s < 0`` toward ``negative_lags``; a finite
  lag goes into the (unweighted) lag sketch. A pair is *scored* when both inputs and
  ``e*e`` are finite; only scored pairs enter the weighted sums.
* ``max_abs_error`` is over all scored pairs, whatever their weight.
* MAPE is over scored pairs with ``y_true != 0`` (others: ``mape_excluded``), as a
  fraction, not a percentage. RMSLE is over scored pairs with ``y_pred >= 0`` and
  ``y_true >= 0`` (others: ``rmsle_excluded``). Huber uses ``huber_delta``.
* ``r2 = 1 - sum_se / SS_tot`` where ``SS_tot`` is the weighted sum of squares of
  ``y_true`` about its weighted mean (as ``sklearn.metrics.r2_score``). It is kept as
  a centered moment merged with Chan et al.'s parallel formula, never as
  ``sum_y2 - sum_y**2 / sum_w``, which cancels catastrophically when ``y_true`` has a
  large offset. The variance of the squared errors (for the CI) is kept the same way.
  The exact min and max of ``y_true`` (over pairs with ``w > 0``) are kept too, so
  constant targets give ``SS_tot = 0`` (r2 NaN) exactly, not a rounding residue.
* 95 % CI of MSE: normal approximation with the weighted variance of the squared
  errors and Kish's effective sample size ``n_eff = sum_w**2 / sum_w2``:
  ``se = sqrt(var_se / (n_eff - 1))``; NaN when ``n_eff <= 1``.
* Empty means NaN: every ratio whose denominator is zero is NaN, never 0.
* Exact counts for SLOs, one entry per configured bound (``error_thresholds``,
  ``freshness_within_s``; none by default): per error threshold ``t``, the weighted sum
  and the number of scored pairs with ``|e| > t`` (``exceed_sum_w``, ``exceed_count``);
  per bound ``s`` (seconds), the LABELED examples with ``label_lag_s <= s``
  (``labeled_within``; a negative lag is within every bound, a NaN lag within none).
  These are tuples in the order of the bounds; an empty tuple stands for zeros, so
  :meth:`ErrorAccumulator.empty` merges with any.

Weights are assumed finite and >= 0 (the parser dead-letters anything else).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import apache_beam as beam
import numpy as np

from msewatch.schemas.records import METRICS_FIELDS
from msewatch.transforms.metrics.distributions import (
    Distributions,
    distribution_columns,
    merge_distributions,
)
from msewatch.transforms.metrics.paired import Paired, merge_paired, paired_column
from msewatch.transforms.metrics.sketch import ValueSketch

Z_95 = 1.959963984540054
"""Two-sided 95 % standard normal quantile."""

_NAMES = [f.name for f in METRICS_FIELDS]
FINALIZED_FIELDS: tuple[str, ...] = tuple(
    _NAMES[_NAMES.index("predictions") : _NAMES.index("y_true_max") + 1]
)
"""The METRICS_FIELDS columns :func:`finalize` returns, in table order."""

_COUNTS = (
    "predictions",
    "labeled",
    "expired",
    "scored",
    "nan_predictions",
    "nan_labels",
    "nonfinite_errors",
    "mape_excluded",
    "rmsle_excluded",
    "negative_lags",
)
_SUMS = (
    "sum_w",
    "sum_w2",
    "sum_se",
    "sum_se2",
    "sum_ae",
    "sum_e",
    "sum_y",
    "sum_y2",
    "sum_ape",
    "sum_w_ape",
    "sum_sle",
    "sum_w_sle",
    "sum_huber",
    "sum_abs_pred",
    "sum_abs_true",
)
_BOUNDED = (("exceed_count", int), ("exceed_sum_w", float), ("labeled_within", int))
"""The per-bound tuples: name and element type."""


@dataclasses.dataclass(slots=True)
class ErrorAccumulator:
    """Counts and weighted sums of one (window, slice): a mergeable partial metric.

    Weighted sums run over scored pairs. ``(mean_y, m2_y)`` and ``(mean_se, m2_se)``
    are the weighted mean and weighted sum of squared deviations of ``y_true`` and of
    ``e**2`` (weights summing to ``sum_w``); ``min_y``/``max_y`` bound ``y_true`` over
    pairs with ``w > 0``. ``lag`` sketches label lag seconds; ``dist`` holds the value
    distributions (:mod:`.distributions`). ``exceed_count``,
    ``exceed_sum_w`` and ``labeled_within`` hold one value per configured bound
    (module docstring), or are empty: zeros for any number of bounds.
    """

    predictions: int = 0
    labeled: int = 0
    expired: int = 0
    scored: int = 0
    nan_predictions: int = 0
    nan_labels: int = 0
    nonfinite_errors: int = 0
    mape_excluded: int = 0
    rmsle_excluded: int = 0
    negative_lags: int = 0
    sum_w: float = 0.0
    sum_w2: float = 0.0
    sum_se: float = 0.0
    sum_se2: float = 0.0
    sum_ae: float = 0.0
    sum_e: float = 0.0
    sum_y: float = 0.0
    sum_y2: float = 0.0
    sum_ape: float = 0.0
    sum_w_ape: float = 0.0
    sum_sle: float = 0.0
    sum_w_sle: float = 0.0
    sum_huber: float = 0.0
    sum_abs_pred: float = 0.0
    sum_abs_true: float = 0.0
    max_abs_error: float = 0.0  # 0 is the identity of max over |e|; finalize says NaN
    mean_y: float = 0.0
    m2_y: float = 0.0
    mean_se: float = 0.0
    m2_se: float = 0.0
    min_y: float = math.inf
    max_y: float = -math.inf
    lag: ValueSketch = dataclasses.field(default_factory=ValueSketch.empty)
    exceed_count: tuple[int, ...] = ()
    exceed_sum_w: tuple[float, ...] = ()
    labeled_within: tuple[int, ...] = ()
    paired: Paired = ()
    dist: Distributions = dataclasses.field(default_factory=Distributions)

    @classmethod
    def empty(cls) -> ErrorAccumulator:
        """The accumulator of no examples."""
        return cls()

    def __getstate__(self) -> tuple:
        # A bare tuple of values pickles without repeating the field names.
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))

    def __setstate__(self, state: tuple) -> None:
        for f, value in zip(dataclasses.fields(self), state, strict=True):
            setattr(self, f.name, value)


def _merge_moments(sum_w: np.ndarray, means: np.ndarray, m2s: np.ndarray) -> tuple[float, float]:
    """Chan et al.'s parallel formula for k parts: pooled mean and sum of squares."""
    total = sum_w.sum()
    if not total > 0:
        return 0.0, float(m2s.sum())
    mean = float((sum_w * means).sum() / total)
    dev = means - mean
    return mean, float(m2s.sum() + (sum_w * dev * dev).sum())


def _merge_pair_moments(wa, ma, m2a, wb, mb, m2b) -> tuple[float, float]:
    """:func:`_merge_moments` of two parts, on Python floats (same formula)."""
    total = wa + wb
    if not total > 0:
        return 0.0, m2a + m2b
    mean = (wa * ma + wb * mb) / total
    da, db = ma - mean, mb - mean
    return mean, m2a + m2b + (wa * da * da + wb * db * db)


def _merge_bounded(parts: list[tuple], element_type: type) -> tuple:
    """Element-wise sum of per-bound tuples; empty tuples are zeros of any length.

    Raises:
        ValueError: two non-empty tuples of different lengths (other bounds).
    """
    present = [p for p in parts if p]
    if len(present) <= 1:
        return present[0] if present else ()
    if len({len(p) for p in present}) != 1:
        raise ValueError("cannot merge accumulators made with different bounds")
    if len(present) == 2:
        return tuple(x + y for x, y in zip(*present, strict=True))
    with np.errstate(all="ignore"):
        return tuple(element_type(v) for v in np.sum(present, axis=0).tolist())


def _merge_pair(a: ErrorAccumulator, b: ErrorAccumulator) -> ErrorAccumulator:
    """Two accumulators merged with scalar arithmetic (a streaming pane adds one
    partial to a running total; numpy's per-call overhead would dominate)."""
    merged = {name: getattr(a, name) + getattr(b, name) for name in _COUNTS + _SUMS}
    merged["mean_y"], merged["m2_y"] = _merge_pair_moments(
        a.sum_w, a.mean_y, a.m2_y, b.sum_w, b.mean_y, b.m2_y
    )
    merged["mean_se"], merged["m2_se"] = _merge_pair_moments(
        a.sum_w, a.mean_se, a.m2_se, b.sum_w, b.mean_se, b.m2_se
    )
    merged["max_abs_error"] = max(a.max_abs_error, b.max_abs_error)
    merged["min_y"] = min(a.min_y, b.min_y)
    merged["max_y"] = max(a.max_y, b.max_y)
    merged["lag"] = a.lag.merge(b.lag)
    for name, element_type in _BOUNDED:
        merged[name] = _merge_bounded([getattr(a, name), getattr(b, name)], element_type)
    merged["paired"] = merge_paired([a.paired, b.paired])
    merged["dist"] = merge_distributions([a.dist, b.dist])
    return ErrorAccumulator(**merged)


def merge_accumulators(accs: Iterable[ErrorAccumulator]) -> ErrorAccumulator:
    """Merges any iterable (list, generator, ...) of accumulators into a new one.

    No input is modified, so merging a list never counts its first element twice
    (the trap in TFMA's ``mean_regression_error.py``).

    Args:
        accs: Accumulators of disjoint parts of the data.

    Returns:
        The accumulator of the union; empty if ``accs`` is empty.
    """
    parts = list(iter(accs))
    if not parts:
        return ErrorAccumulator.empty()
    if len(parts) == 1:
        return dataclasses.replace(parts[0])
    if len(parts) == 2:
        return _merge_pair(*parts)
    merged = {name: sum(getattr(a, name) for a in parts) for name in _COUNTS}
    with np.errstate(all="ignore"):
        for name in _SUMS:
            merged[name] = float(np.sum([getattr(a, name) for a in parts]))
        weights = np.array([a.sum_w for a in parts])
        for mean, m2 in (("mean_y", "m2_y"), ("mean_se", "m2_se")):
            merged[mean], merged[m2] = _merge_moments(
                weights,
                np.array([getattr(a, mean) for a in parts]),
                np.array([getattr(a, m2) for a in parts]),
            )
    merged["max_abs_error"] = max(a.max_abs_error for a in parts)
    merged["min_y"] = min(a.min_y for a in parts)
    merged["max_y"] = max(a.max_y for a in parts)
    merged["lag"] = ValueSketch.merge_all(a.lag for a in parts)
    for name, element_type in _BOUNDED:
        merged[name] = _merge_bounded([getattr(a, name) for a in parts], element_type)
    merged["paired"] = merge_paired([a.paired for a in parts])
    merged["dist"] = merge_distributions(a.dist for a in parts)
    return ErrorAccumulator(**merged)


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def _bounded_values(acc: ErrorAccumulator, name: str, n: int, zero) -> tuple:
    values = getattr(acc, name) or (zero,) * n
    if len(values) != n:
        raise ValueError(f"the accumulator has {len(values)} {name} values, not {n}")
    return values


def _bounded_columns(acc: ErrorAccumulator, thresholds, within_s) -> dict:
    """The ``error_exceedance`` and ``labeled_within`` columns: lists of dicts."""
    count = _bounded_values(acc, "exceed_count", len(thresholds), 0)
    sum_w = _bounded_values(acc, "exceed_sum_w", len(thresholds), 0.0)
    labeled = _bounded_values(acc, "labeled_within", len(within_s), 0)
    return {
        "error_exceedance": [
            {"threshold": float(t), "sum_w": float(w), "count": int(c)}
            for t, w, c in zip(thresholds, sum_w, count, strict=True)
        ],
        "labeled_within": [
            {"within_s": int(s), "labeled": int(k)} for s, k in zip(within_s, labeled, strict=True)
        ],
    }


def finalize(
    acc: ErrorAccumulator, error_thresholds=(), freshness_within_s=(), valid_ranges=(), features=()
) -> dict:
    """The metric columns of a row (every name in :data:`FINALIZED_FIELDS`).

    Args:
        acc: The accumulator of one (window, slice, pane).
        error_thresholds: the thresholds ``acc`` was aggregated with, in order.
        freshness_within_s: the freshness bounds (seconds) it was aggregated with.
        valid_ranges: the valid ranges of ``y_true`` it was aggregated with.
        features: the feature names it was aggregated with (one ``feature_sketches``
            entry each, in order).

    Returns:
        Column name -> Python int or float (NaN where the metric is undefined);
        ``error_exceedance``, ``labeled_within`` and ``label_range`` are lists of
        dicts, one per bound; the sketch columns are bytes (null when empty).

    Raises:
        ValueError: ``acc`` holds counts for a different number of bounds.
    """
    mse = _ratio(acc.sum_se, acc.sum_w)
    ss_tot = acc.m2_y if acc.min_y < acc.max_y else 0.0  # exactly 0 for constant y_true
    mse_ci_low = mse_ci_high = math.nan
    if acc.sum_w > 0 and acc.sum_w2 > 0:
        n_eff = acc.sum_w * acc.sum_w / acc.sum_w2  # Kish; `*` gives inf, `**` raises
        if n_eff > 1:
            var_se = acc.m2_se / acc.sum_w
            se = math.sqrt(var_se / n_eff * n_eff / (n_eff - 1))
            mse_ci_low, mse_ci_high = mse - Z_95 * se, mse + Z_95 * se
    row = {name: getattr(acc, name) for name in _COUNTS}
    row.update(
        label_coverage=_ratio(acc.labeled, acc.predictions),
        mse=mse,
        rmse=math.sqrt(mse),
        mae=_ratio(acc.sum_ae, acc.sum_w),
        mean_error=_ratio(acc.sum_e, acc.sum_w),
        max_abs_error=acc.max_abs_error if acc.scored else math.nan,
        r2=1.0 - acc.sum_se / ss_tot if ss_tot > 0 else math.nan,
        mape=_ratio(acc.sum_ape, acc.sum_w_ape),
        rmsle=math.sqrt(_ratio(acc.sum_sle, acc.sum_w_sle)),
        huber=_ratio(acc.sum_huber, acc.sum_w),
        mse_ci_low=mse_ci_low,
        mse_ci_high=mse_ci_high,
        rmse_ci_low=math.nan if math.isnan(mse_ci_low) else math.sqrt(max(mse_ci_low, 0.0)),
        rmse_ci_high=math.sqrt(mse_ci_high),
        label_lag_p50_s=acc.lag.quantile(0.5),
        label_lag_p90_s=acc.lag.quantile(0.9),
        label_lag_p99_s=acc.lag.quantile(0.99),
        label_lag_max_s=acc.lag.max,
    )
    row.update({name: float(getattr(acc, name)) for name in _SUMS if name in FINALIZED_FIELDS})
    row.update(_bounded_columns(acc, error_thresholds, freshness_within_s))
    row["paired"] = paired_column(acc.paired)
    row.update(distribution_columns(acc.dist, valid_ranges, features))
    return {name: row[name] for name in FINALIZED_FIELDS}


class MetricsCombineFn(beam.CombineFn):
    """Merges pre-aggregated :class:`ErrorAccumulator` partials of one key.

    Inputs are accumulators (from ``aggregate_examples`` upstream), so adding an
    input is a merge. The Beam accumulator is a *list* of partials, merged in one
    vectorized :func:`merge_accumulators` pass when it grows past ``compact_at``, when
    Beam compacts it before a shuffle, and at extraction: adding a partial is an
    append, not a Python-level merge per element. The output is the merged
    accumulator, not a row: the row is formatted downstream, where the window and
    pane are known. Timestamps, windows, triggers and lateness are the caller's.
    """

    compact_at = 256

    def _bounded(self, parts: list) -> list:
        return [merge_accumulators(parts)] if len(parts) >= self.compact_at else parts

    def create_accumulator(self, *args, **kwargs) -> list:
        return []

    def add_input(self, mutable_accumulator, element, *args, **kwargs):
        mutable_accumulator.append(element)
        return self._bounded(mutable_accumulator)

    def add_inputs(self, mutable_accumulator, elements, *args, **kwargs):
        mutable_accumulator.extend(elements)
        return self._bounded(mutable_accumulator)

    def merge_accumulators(self, accumulators, *args, **kwargs):
        parts: list = []
        for acc in accumulators:  # iterables are consumed once
            parts.extend(acc)
        return self._bounded(parts)

    def compact(self, accumulator, *args, **kwargs):
        return [merge_accumulators(accumulator)] if len(accumulator) > 1 else accumulator

    def extract_output(self, accumulator, *args, **kwargs):
        return merge_accumulators(accumulator)
