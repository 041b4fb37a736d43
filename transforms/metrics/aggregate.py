"""A batch of examples -> one :class:`ErrorAccumulator` per group: :func:`aggregate_examples`.

Vectorized over the batch (``np.bincount``, ``np.maximum.at``; no loop over records),
in named steps: check the columns, count the examples and pick the scored pairs, then
the weighted sums, the centered moments, the extremes and the lag sketches of each
group. What each count and sum means is in :mod:`msewatch.transforms.metrics.accumulators`
(module docstring). None of this looks at time: the caller windows the examples (by the
prediction's event time) before aggregating them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from msewatch.schemas.records import ExampleKind
from msewatch.transforms.metrics.accumulators import ErrorAccumulator
from msewatch.transforms.metrics.sketch import LagSketch


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

    Returns:
        ``n_groups`` accumulators, index = group code.

    Raises:
        ValueError: on arrays of different lengths, codes out of range or a
            non-positive ``huber_delta``.
    """
    batch = _checked_batch(codes, n_groups, kind, y_pred, y_true, weight, lag_s)
    if not huber_delta > 0:
        raise ValueError(f"huber_delta must be > 0, got {huber_delta}")
    columns, pairs = _count_examples(batch)
    columns.update(_weighted_sums(pairs, huber_delta))
    columns.update(_centered_moments(pairs, columns["sum_w"]))
    columns.update(_extremes(pairs))
    return _accumulators(columns, _lag_sketches(batch))


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


def _lag_sketches(batch: _Batch) -> list[LagSketch]:
    """One sketch per group of the finite label lags of LABELED examples."""
    has_lag = (batch.kind == ExampleKind.LABELED) & np.isfinite(batch.lag_s)
    return LagSketch.from_groups(batch.codes[has_lag], batch.lag_s[has_lag], batch.n_groups)


def _accumulators(columns: dict[str, np.ndarray], lags: list[LagSketch]) -> list[ErrorAccumulator]:
    """Per-group columns -> one :class:`ErrorAccumulator` per group."""
    values = {name: column.tolist() for name, column in columns.items()}
    values["lag"] = lags
    return [
        ErrorAccumulator(**dict(zip(values, row, strict=True)))
        for row in zip(*values.values(), strict=True)
    ]
