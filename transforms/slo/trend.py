"""Theil–Sen slopes of RMSE over time, many fits at once (numpy, Beam-free).

The one definition of "the RMSE trend", shared by the ``rmse_trend`` SLI
(:mod:`.sli`) and the read side (``msewatch/commands/trend.py``: ``msewatch slo status``, the
report, ``msewatch serve``).

* x is a window's end in **days** (UTC epoch ms / 86 400 000), y its RMSE, so a slope
  is RMSE per day.
* The slope is the median of the pairwise slopes ``(y_j - y_i) / (x_j - x_i)`` over
  the pairs with different x; the 95 % interval is Sen's (1968) distribution-free
  one, with his correction for ties in x and in y: the same numbers as
  ``scipy.stats.theilslopes(y, x, 0.95)`` (``low_slope``, ``high_slope``), computed
  for every row of a batch without a Python loop over the fits.
* Fewer than :data:`MIN_POINTS` points give a NaN slope and interval: two points
  always lie on a line, and with three the 95 % interval is every pairwise slope.

The interval assumes independent errors around a straight line. Sliding windows
overlap, so neighbouring RMSEs share predictions and the interval is too narrow for
them; the slope itself is still a fair summary.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

DAY_MS = 86_400_000
MIN_POINTS = 3
CONFIDENCE = 0.95
_Z = 1.959963984540054  # -norm.ppf((1 - CONFIDENCE) / 2), as theilslopes; no scipy import
_MAX_CELLS = 4_000_000  # pairwise slopes held at once (rows x pairs); bounds the memory


class Trend(NamedTuple):
    """Per fit (numpy arrays of one length): the slope per day and its 95 % interval."""

    slope: np.ndarray
    low: np.ndarray
    high: np.ndarray


def theil_sen(end_ms: np.ndarray, y: np.ndarray) -> Trend:
    """Theil–Sen slope per day and its 95 % interval, one fit per row.

    Args:
        end_ms: ``(fits, k)`` window ends, UTC epoch ms (any numeric type).
        y: ``(fits, k)`` RMSEs. A NaN in either marks a missing point, so fits with
            fewer points are padded with NaN.

    Returns:
        :class:`Trend`: NaN for a fit with fewer than :data:`MIN_POINTS` points or
        whose points all share one x.
    """
    x = np.atleast_2d(np.asarray(end_ms, dtype=np.float64))
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    if x.shape != y.shape:
        raise ValueError(f"end_ms and y differ in shape: {x.shape} and {y.shape}")
    fits, k = x.shape
    out = Trend(*(np.full(fits, np.nan) for _ in range(3)))
    if fits == 0 or k < MIN_POINTS:
        return out
    rows = max(1, _MAX_CELLS // (k * (k - 1) // 2))
    for lo in range(0, fits, rows):
        part = slice(lo, lo + rows)
        for name, values in zip(Trend._fields, _fit(x[part], y[part]), strict=True):
            getattr(out, name)[part] = values
    return out


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`theil_sen` of one chunk of rows (``x`` in ms)."""
    valid = ~(np.isnan(x) | np.isnan(y))
    x, y = np.where(valid, x, 0.0), np.where(valid, y, 0.0)
    i, j = np.triu_indices(x.shape[1], 1)
    dx = (x[:, j] - x[:, i]) / DAY_MS  # exact differences of whole ms, then days
    pair = valid[:, i] & valid[:, j] & (dx != 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        slopes = np.sort(np.where(pair, (y[:, j] - y[:, i]) / dx, np.nan), axis=1)  # NaN last
    pairs = pair.sum(axis=1)
    n = valid.sum(axis=1)
    # Sen (1968), eq. 2.6: the variance of the number of positive pairwise slopes,
    # less the ties (a run of t equal values removes t (t - 1) (2t + 5); summed over
    # the points, each point of a run of t adds (t - 1) (2t + 5)).
    sigma2 = (n * (n - 1) * (2 * n + 5) - _ties(x, valid) - _ties(y, valid)) / 18.0
    sigma = np.sqrt(np.maximum(sigma2, 0.0))
    upper = np.minimum(np.round((pairs + _Z * sigma) / 2).astype(np.int64), pairs - 1)
    lower = np.maximum(np.round((pairs - _Z * sigma) / 2).astype(np.int64) - 1, 0)
    ok = (n >= MIN_POINTS) & (pairs > 0)
    middle = np.stack([(pairs - 1) // 2, pairs // 2, lower, upper], axis=1)
    picked = np.take_along_axis(slopes, np.clip(middle, 0, slopes.shape[1] - 1), axis=1)
    slope = (picked[:, 0] + picked[:, 1]) / 2
    return tuple(np.where(ok, v, np.nan) for v in (slope, picked[:, 2], picked[:, 3]))


def _ties(v: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per row: the sum over runs of t equal valid values of ``t (t - 1) (2t + 5)``."""
    same = (v[:, :, None] == v[:, None, :]) & valid[:, :, None] & valid[:, None, :]
    t = same.sum(axis=2)  # per point: how many valid points share its value (itself too)
    return np.where(valid, (t - 1) * (2 * t + 5), 0).sum(axis=1)


def rolling_points(end_ms: np.ndarray, points: np.ndarray, k: int, span_ms: int):
    """Per window: the ``k`` newest fit points ending at or before it, within a span.

    Args:
        end_ms: window ends, UTC epoch ms, in any order.
        points: bool per window: may it be a point of a fit.
        k: points per fit.
        span_ms: a fit's points end in ``(end - span_ms, end]``.

    Returns:
        ``(full, index)``: ``full`` (bool per window) says whether ``k`` such points
        exist; ``index`` (``(windows, k)`` int, oldest first) are their positions in
        ``end_ms``, meaningful where ``full``.
    """
    end_ms = np.asarray(end_ms, dtype=np.int64)
    at = np.flatnonzero(points)
    at = at[np.argsort(end_ms[at], kind="stable")]
    point_ends = end_ms[at]
    hi = np.searchsorted(point_ends, end_ms, side="right")
    lo = np.searchsorted(point_ends, end_ms - span_ms, side="right")
    full = hi - lo >= k
    index = np.clip(hi[:, None] - k + np.arange(k), 0, max(len(at) - 1, 0))
    return full, at[index] if len(at) else np.zeros((len(end_ms), k), np.int64)
