"""``msewatch serve --recent-windows DURATION``: one series per slice and **window**.

The other families of ``msewatch serve`` carry one number per slice (its newest settled
window) or per SLO (its latest evaluation). The rules of ``msewatch slo rules``
(:mod:`msewatch.commands.slo_rules`) re-do the SLO evaluation in PromQL, in event time, and for
that they need the windows themselves: per slice, the latest pane (``metrics_latest``)
of every window ending in the ``DURATION`` before the slice's newest window end, each
a sample labelled ``slice`` and ``window`` (``<start>/<end>``, RFC 3339, UTC):

* the window's bounds (UTC epoch seconds), so a rule can take the windows ending in
  ``(frontier - lookback, frontier]`` and leave out a suppressed one;
* its RMSE, label coverage, ``complete`` (0/1) and scored predictions: the rmse SLI and
  the label gate (``label_coverage >= min_coverage or complete``, ``scored >= min_scored``);
* the scored weight and, per error threshold of the run (``threshold`` label,
  :func:`threshold_label`), the weight of scored predictions beyond it: the error_rate SLI;
* its predictions, NaN/inf predictions and whether it is closed (its latest pane is
  ``ON_TIME`` or ``LATE``: the watermark passed its end; ``EARLY`` panes come before):
  the nan_rate SLI.

Off by default: a slice has one series per window and metric, so the series are
``slices x windows x (10 + error thresholds)`` (4 regions of hourly windows over 3 days,
no threshold: about 2,900). A NaN number (an empty window's RMSE) is left out, as
everywhere in ``serve``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
from prometheus_client.core import Metric

PREFIX = "msewatch_recent_window_"
LABELS = ("slice", "window")
START = f"{PREFIX}start_timestamp_seconds"
END = f"{PREFIX}end_timestamp_seconds"
RMSE = f"{PREFIX}rmse"
COVERAGE = f"{PREFIX}label_coverage_ratio"
COMPLETE = f"{PREFIX}complete"
SCORED = f"{PREFIX}scored"
SCORED_WEIGHT = f"{PREFIX}scored_weight"
BAD_WEIGHT = f"{PREFIX}bad_weight"
PREDICTIONS = f"{PREFIX}predictions"
NAN_PREDICTIONS = f"{PREFIX}nan_predictions"
CLOSED = f"{PREFIX}closed"
GAUGES = (  # (metric, column of metrics_latest, help)
    (START, "window_start", "Start of the window (inclusive), UTC epoch seconds."),
    (END, "window_end", "End of the window (exclusive), UTC epoch seconds."),
    (RMSE, "rmse", "RMSE of the window's latest pane (units of y)."),
    (COVERAGE, "label_coverage", "Labeled / predictions of the window's latest pane."),
    (COMPLETE, "complete", "1 when every prediction of the window is labeled or expired."),
    (SCORED, "scored", "Scored predictions of the window's latest pane."),
    (SCORED_WEIGHT, "sum_w", "Sum of the weights of the scored predictions."),
    (PREDICTIONS, "predictions", "Distinct predictions made in the window."),
    (NAN_PREDICTIONS, "nan_predictions", "Predictions with a NaN/inf/null y_pred."),
    (CLOSED, "closed", "1 once the watermark passed the window's end (its latest pane is "
     "ON_TIME or LATE), 0 while its panes are EARLY."),
)  # fmt: skip

_SQL = """
SELECT window_start, window_end, slice, rmse, label_coverage, complete, scored, sum_w,
    error_exceedance, predictions, nan_predictions, pane_timing <> 'EARLY' AS closed
FROM metrics_latest
QUALIFY window_end > max(window_end) OVER (PARTITION BY slice) - to_seconds($span)
ORDER BY slice, window_end, window_start
"""


def threshold_label(threshold: float) -> str:
    """The ``threshold`` label of an error threshold: Python's shortest round-trip text
    of the float (``100.0``), the one spelling serve writes and the rules match."""
    return repr(float(threshold))


def window_label(start: pd.Timestamp, end: pd.Timestamp) -> str:
    """``<start>/<end>`` in RFC 3339, UTC (``2026-11-01T05:00:00Z/2026-11-01T06:00:00Z``;
    milliseconds only when a bound has them)."""

    def text(t: pd.Timestamp) -> str:
        spec = "milliseconds" if t.microsecond else "seconds"
        return t.tz_convert("UTC").tz_localize(None).isoformat(timespec=spec) + "Z"

    return f"{text(start)}/{text(end)}"


def read_recent_windows(con, span_s: int) -> pd.DataFrame:
    """The latest pane of each window ending in the ``span_s`` seconds before its slice's
    newest window end, from a :func:`msewatch.commands.query.connect` connection."""
    frame = con.execute(_SQL, {"span": span_s}).df()
    if frame.empty:
        return frame
    frame["window"] = [
        window_label(s, e) for s, e in zip(frame["window_start"], frame["window_end"], strict=True)
    ]
    return frame


def _bad_weights(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per window and error threshold: ``slice``, ``window``, ``threshold``
    (:func:`threshold_label`) and ``bad_weight``."""
    rows = [
        (s, w, threshold_label(entry["threshold"]), entry["sum_w"])
        for s, w, entries in zip(
            frame["slice"], frame["window"], frame["error_exceedance"], strict=True
        )
        for entry in (entries if entries is not None else ())
    ]
    return pd.DataFrame(rows, columns=[*LABELS, "threshold", "bad_weight"])


def window_families(frame: pd.DataFrame, gauges) -> Iterator[Metric]:
    """The per-window families of ``frame`` (:func:`read_recent_windows`); ``gauges`` is
    serve's ``_gauges(frame, labels, specs)``."""
    if frame.empty:
        return
    yield from gauges(frame, LABELS, GAUGES)
    bad = _bad_weights(frame)
    doc = "Weight of the window's scored predictions with |y_pred - y_true| > threshold."
    yield from gauges(bad, (*LABELS, "threshold"), ((BAD_WEIGHT, "bad_weight", doc),))
