"""The window rules of the drift SLIs (``prediction_drift``, ``label_drift``,
``feature_drift``): which windows settle and their statistic (:mod:`.drift`).

Each window's sketch column (``y_pred_sketch``, ``y_true_sketch``, or the SLO's feature
sketch, bytes or None) is compared with the SLO's reference (:mod:`.reference`):

* ``trailing``: the merged sketches of the slice's windows that end in
  ``(start - trailing, start]`` of the judged window: a cumulative sum over the windows
  sorted by end, so every window costs the same whatever the span;
* ``range`` ``[from, to)``: the merged sketches of the windows inside it; only windows
  that start at or after ``to`` are judged;
* ``file``: the file's sketch.

A window settles when its gate holds (prediction_drift, feature_drift: the watermark
has passed its end; label_drift: the label gate), it has at least ``min_scored`` values,
and its reference has at least ``min_scored`` values too (a reference of a handful of
values has no deciles worth comparing with). Its value is the statistic; it is bad
above the threshold. Verdicts read only windows that end no later than the window
judged, as the kernel requires; ``reach_s`` is the span a trailing reference reads.
"""

from __future__ import annotations

import numpy as np

from msewatch.transforms.metrics.sketch import ValueSketch
from msewatch.transforms.slo.drift import drift, histograms
from msewatch.transforms.slo.reference import FILE_COLUMN, SKETCH_COLUMN

_NAMES = {"psi": "PSI", "js": "Jensen-Shannon distance", "wasserstein": "Wasserstein distance"}


def _decoded(column) -> list[ValueSketch | None]:
    return [
        ValueSketch.from_bytes(b) if isinstance(b, bytes | bytearray | memoryview) else None
        for b in column
    ]


def _references(slo, c, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per window: the reference's counts on the grid and whether the window is judged."""
    ref, start, end = slo.reference, c["window_start_ms"], c["window_end_ms"]
    if ref.kind == "range":
        inside = (start >= ref.from_ms) & (end <= ref.to_ms)
        total = counts[inside].sum(axis=0)
        return np.broadcast_to(total, counts.shape), start >= ref.to_ms
    order = np.argsort(end, kind="stable")
    cum = np.concatenate([np.zeros((1, counts.shape[1]), np.int64), np.cumsum(counts[order], 0)])
    sorted_end = end[order]
    hi = np.searchsorted(sorted_end, start, side="right")
    lo = np.searchsorted(sorted_end, start - ref.trailing_s * 1000, side="right")
    return cum[hi] - cum[lo], np.ones(len(start), bool)


def drift_verdicts(slo, c, gate: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(settled, eligible, bad, value)`` of every window (module docstring).

    Args:
        slo: a drift SLO.
        c: window columns: the bounds and the SLI's sketch column (object array).
        gate: per window, whether the SLI's own gate holds (watermark or labels).
    """
    sketches = _decoded(c[SKETCH_COLUMN[slo.sli]])
    n = len(sketches)
    file_sketch = (
        slo.reference.sketch(FILE_COLUMN[slo.sli]) if slo.reference.kind == "file" else None
    )
    grid, counts = histograms([*sketches, file_sketch])
    counts, extra = counts[:n], counts[n:]
    if slo.reference.kind == "file":
        ref, judged = np.broadcast_to(extra[0], counts.shape), np.ones(n, bool)
    else:
        ref, judged = _references(slo, c, counts)
    enough = (counts.sum(axis=1) >= slo.min_scored) & (ref.sum(axis=1) >= slo.min_scored)
    settled = gate & judged & enough
    value = np.full(n, np.nan)
    if settled.any():
        value[settled] = drift(slo.statistic, grid, ref[settled], counts[settled])
    return settled, np.ones(n), (value > slo.threshold).astype(float), value


def describe(slo, value: float) -> str:
    """E.g. ``PSI 0.31 against trailing 7d (major shift above 0.25; bad above 0.2)``."""
    head = f"{_NAMES[slo.statistic]} {value:.3g} against {slo.reference.text()}"
    if slo.statistic == "psi":
        reading = (
            "no significant shift below 0.1"
            if value < 0.1
            else "minor shift, 0.1-0.25"
            if value <= 0.25
            else "major shift above 0.25"
        )
        return f"{head} ({reading}; bad above {slo.threshold:g})"
    return f"{head} (bad above {slo.threshold:g})"


def reach_s(slo) -> int:
    """How far before a window's end its verdict reads: the trailing span plus the window."""
    ref = slo.reference
    return ref.trailing_s if ref is not None and ref.kind == "trailing" else 0
