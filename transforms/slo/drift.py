"""Drift statistics between a reference distribution and a window's, Beam-free.

Both sides are :class:`~msewatch.transforms.metrics.sketch.ValueSketch` sketches (the
``y_pred_sketch`` / ``y_true_sketch`` / feature sketches of the ``metrics`` table, or a
reference file's), laid on one grid of buckets (:func:`histograms`): row ``i`` of the
reference matrix is compared with row ``i`` of the window matrix, all rows at once.

* ``psi``, the population stability index ``sum((w - r) * ln(w / r))`` over ten bins:
  the bins are cut at the reference's deciles (the lower-rank quantile ``q = 0.1 ..
  0.9`` of its sketch, rank ``floor(q (n - 1))``), a bin holding the values above the
  previous cut up to and including its own, the same cuts for both sides (a bucket
  falls wholly in one bin). ``r`` and ``w`` are the shares of the reference's and the
  window's values per bin, each floored at :data:`PSI_EPSILON` so that an empty bin
  gives a large finite term, not infinity. The usual reading: below 0.1 no
  significant shift, 0.1-0.25 a minor shift, above 0.25 a major one.
* ``js``: the Jensen-Shannon distance, base 2 (in [0, 1]; ``scipy.spatial.distance.
  jensenshannon``) between the two distributions over the same ten bins (no floor).
* ``wasserstein``: the first Wasserstein (earth mover's) distance between the two
  distributions with each bucket's values at its representative value, in the units
  of the values: ``scipy.stats.wasserstein_distance`` of the bucket values weighted by
  their counts, computed as the integral of ``|F_r - F_w|`` over the grid. Each value
  is moved by at most the sketch's relative accuracy ``ALPHA``, so the distance is
  within ``ALPHA * (mean |x_r| + mean |x_w|)`` of that of the raw values.

A row with no reference or no window values has the value NaN.
"""

from __future__ import annotations

import numpy as np

from msewatch.transforms.metrics.sketch import ValueSketch, bucket_values

STATISTICS = ("psi", "js", "wasserstein")
"""The statistics a drift SLO may name (``statistic:``); the first is the default."""
PSI_EPSILON = 1e-4
"""Floor of a bin's share in PSI (an empty bin would make the index infinite)."""
DECILES = np.arange(1, 10) / 10.0


def histograms(sketches) -> tuple[np.ndarray, np.ndarray]:
    """Sketches (None for no values) as rows of counts over one grid of buckets.

    Returns:
        ``(grid, counts)``: the representative value of each bucket (ascending) and an
        ``(n_sketches, n_buckets)`` int64 matrix of counts.
    """
    indices, counts, rows = [], [], []
    for row, sketch in enumerate(sketches):
        if sketch is not None and sketch.count:
            index, count = sketch.histogram()
            indices.append(index)
            counts.append(count)
            rows.append(np.full(index.size, row, np.int64))
    n = len(sketches)
    if not indices:
        return np.zeros(0), np.zeros((n, 0), np.int64)
    grid, column = np.unique(np.concatenate(indices), return_inverse=True)
    matrix = np.zeros(n * grid.size, np.int64)
    np.add.at(matrix, np.concatenate(rows) * grid.size + column, np.concatenate(counts))
    return bucket_values(grid), matrix.reshape(n, grid.size)


def _decile_columns(cum_ref: np.ndarray) -> np.ndarray:
    """Per row, the bucket (column) holding each reference decile: ``(rows, 9)``.

    The decile of rank ``r`` lies in the first bucket whose cumulative count exceeds
    ``r``; one ``searchsorted`` over all rows, each row shifted above the previous one.
    """
    rows, k = cum_ref.shape
    n = cum_ref[:, -1]
    ranks = np.floor(DECILES[None, :] * (n[:, None] - 1)).astype(np.int64)
    shift = np.arange(rows, dtype=np.int64)[:, None] * (int(n.max(initial=0)) + 1)
    flat = (cum_ref + shift).ravel()
    found = np.searchsorted(flat, (ranks + shift).ravel(), side="right")
    return found.reshape(rows, 9) - np.arange(rows)[:, None] * k


def binned_shares(ref: np.ndarray, win: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shares of each row's values in the ten bins cut at the reference's deciles.

    Args:
        ref, win: ``(rows, n_buckets)`` counts on one grid; every ``ref`` row non-empty.

    Returns:
        ``(r, w)``: ``(rows, 10)`` shares of the reference and of the window.
    """
    cum_ref, cum_win = np.cumsum(ref, axis=1), np.cumsum(win, axis=1)
    k = ref.shape[1]
    edges = np.concatenate([_decile_columns(cum_ref), np.full((len(ref), 1), k - 1)], axis=1)
    out = []
    for cum in (cum_ref, cum_win):
        upto = np.take_along_axis(cum, edges, axis=1).astype(np.float64)
        counts = np.diff(upto, axis=1, prepend=0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(counts / cum[:, -1:])
    return out[0], out[1]


def psi(r: np.ndarray, w: np.ndarray) -> np.ndarray:
    """PSI of each row of binned shares (module docstring), floored at PSI_EPSILON."""
    r, w = np.maximum(r, PSI_EPSILON), np.maximum(w, PSI_EPSILON)
    return ((w - r) * np.log(w / r)).sum(axis=1)


def wasserstein(grid: np.ndarray, ref: np.ndarray, win: np.ndarray) -> np.ndarray:
    """W1 between each row of ``ref`` and of ``win`` (counts on ``grid``): the integral
    of the difference of their CDFs, which are steps at the grid's values."""
    with np.errstate(invalid="ignore", divide="ignore"):
        cdf_ref = np.cumsum(ref, axis=1) / ref.sum(axis=1, keepdims=True)
        cdf_win = np.cumsum(win, axis=1) / win.sum(axis=1, keepdims=True)
    return (np.abs(cdf_ref - cdf_win)[:, :-1] * np.diff(grid)[None, :]).sum(axis=1)


def drift(statistic: str, grid: np.ndarray, ref: np.ndarray, win: np.ndarray) -> np.ndarray:
    """The drift ``statistic`` of each row pair of counts on ``grid``; NaN where either
    side has no values.

    Raises:
        ValueError: an unknown statistic.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}; got {statistic!r}")
    out = np.full(len(ref), np.nan)
    ok = (ref.sum(axis=1) > 0) & (win.sum(axis=1) > 0)
    if not ok.any():
        return out
    ref, win = ref[ok], win[ok]
    if statistic == "wasserstein":
        out[ok] = wasserstein(grid, ref, win)
        return out
    r, w = binned_shares(ref, win)
    if statistic == "psi":
        out[ok] = psi(r, w)
    else:  # scipy.spatial loads in ~1 s: only a run with a Jensen-Shannon SLO pays for it
        from scipy.spatial.distance import jensenshannon

        out[ok] = jensenshannon(r, w, base=2, axis=1)
    return out


def sketch_drift(statistic: str, reference: ValueSketch, window: ValueSketch) -> float:
    """:func:`drift` of one pair of sketches."""
    grid, counts = histograms([reference, window])
    return float(drift(statistic, grid, counts[:1], counts[1:])[0])
