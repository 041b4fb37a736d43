"""Per-window verdicts of each SLI: does a window count yet, and is it good or bad.

Input: the latest ``metrics`` row of each window of one slice, as numpy columns
(times in UTC epoch ms), plus the watermark (``inf`` in bounded runs and in the
history evaluation: every window is closed). Exact counts come from the metrics:
``bad_w`` (weight of scored predictions with ``|y_pred - y_true| > threshold``) and
``fresh`` (predictions labeled within ``within`` of their event time).

A window **settles** (counts, good or bad) when

* rmse, error_rate: ``(label_coverage >= min_coverage or complete) and scored >=
  min_scored`` (the label gate), and it has a value (a finite or infinite RMSE; a
  scored weight above 0);
* label_freshness: it has predictions and the watermark has passed ``window_end +
  within`` (every label that could be in time has had its chance);
* nan_rate: it has predictions and the watermark has passed ``window_end``;
* prediction_drift, feature_drift, label_drift: :mod:`.drift_rules` (the watermark
  passed the window's end, or the label gate for label_drift; enough values on both
  sides of the comparison);
* rmse_trend: it passes the label gate with a finite RMSE, and at least
  ``trend_windows`` *trend points* end in ``(window_end - period, window_end]``. A
  trend point is a window that passes the gate with a finite RMSE and overlaps no
  suppression (a known backfill does not tilt the trend). The window's value is the
  Theil-Sen slope of RMSE per day over the ``trend_windows`` newest of those points
  (x: window end in days; :mod:`.trend`);
* label_anomaly: ``(label_coverage >= min_coverage or complete) and labeled >=
  min_scored``: the label gate, counting labeled pairs (a NaN label is not scored);
* traffic: the watermark has passed ``window_end``, and its *baseline*, the windows
  of the slice ending in ``[window_end - trailing, window_end)``, holds at least
  :data:`MIN_BASELINE_WINDOWS` windows, the oldest ending at or before ``window_end -
  trailing / 2`` (the baseline covers half the span at least), and the window has
  predictions or the baseline's median is above 0. The value is ``predictions /
  median`` of the baseline's ``predictions`` (``inf`` when the median is 0: traffic
  after silence is good). A slice covered by a traffic SLO gets *zero rows*
  (predictions 0) for the windows it was silent in (:mod:`.silence`), which count in
  the median like any window.

Units: each window is one eligible unit, bad when its value breaks the threshold
(rmse: RMSE > threshold; label_freshness: fresh share < threshold; nan_rate: NaN
share > threshold; rmse_trend: the *low* end of the slope's 95 % interval >
threshold, so the error is rising faster than the threshold per day with
confidence; label_anomaly: the anomalous share of labels ``(outside + nan_labels) /
labeled`` > threshold, where ``outside`` counts the finite labels outside the SLO's
``valid_range`` (its ``label_range`` entry), or the labels are constant (at least
``min_scored`` finite labels and ``y_true_min == y_true_max``), or the scale is
mismatched (at least ``min_scored`` scored pairs and ``sum_abs_pred / sum_abs_true``
above ``scale_factor`` or below its inverse); traffic: predictions < threshold x the
baseline's median); error_rate counts weighted predictions: ``sum_w`` eligible,
``bad_w`` bad.

Rules see every window the evaluator keeps, in any order, and may read other windows
than the one they judge, as rmse_trend does: a rule's ``reach_s`` says how far before
a window's end it reads, so that the streaming evaluator keeps those windows too. A
verdict may depend only on windows that end no later than the window judged, so that
feeding windows one by one gives the history's verdicts.

A new SLI adds a rule to :data:`SLI_RULES` (and its name to ``spec.SLIS``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np

from msewatch.transforms.durations import format_duration
from msewatch.transforms.slo import drift_rules
from msewatch.transforms.slo.spec import Slo
from msewatch.transforms.slo.trend import rolling_points, theil_sen

WINDOW_KEY = ("window_start_ms", "window_end_ms")
MIN_BASELINE_WINDOWS = 3  # traffic: fewer windows in the trailing span are no baseline
BOOL_COLUMNS = ("complete",)
OBJECT_COLUMNS = ("y_pred_sketch", "y_true_sketch", "feature_sketch")  # bytes or None


class Verdicts(NamedTuple):
    """Per window (numpy arrays of one length)."""

    settled: np.ndarray  # bool: the window counts
    eligible: np.ndarray  # float: eligible units when it counts (1, or sum_w)
    bad: np.ndarray  # float: bad units when it counts (0 or 1, or bad_w)
    value: np.ndarray  # float: the window's SLI value


Columns = Mapping[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class SliRule:
    """How one SLI judges windows.

    Attributes:
        columns: the window columns it reads, besides :data:`WINDOW_KEY`.
        verdicts: ``(slo, columns, watermark_ms) -> Verdicts``.
        describe: ``(slo, value) -> str``, the newest window's value for a person.
        reach_s: ``slo -> seconds``: how far before a window's end its verdict reads
            other windows (0: it reads its own row only).
    """

    columns: tuple[str, ...]
    verdicts: Callable[[Slo, Columns, float], Verdicts]
    describe: Callable[[Slo, float], str]
    reach_s: Callable[[Slo], int] = lambda slo: 0


def share(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """``part / whole``, NaN where ``whole`` is not above 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(whole > 0, part / np.where(whole > 0, whole, 1.0), np.nan)


def suppressed_windows(slo: Slo, table: Columns) -> np.ndarray:
    """Per window: does it overlap one of the SLO's suppressions."""
    start, end = table["window_start_ms"], table["window_end_ms"]
    out = np.zeros(len(start), bool)
    for s in slo.suppress:
        out |= s.overlaps(start, end)
    return out


# The label gate of rmse-like SLIs, the rule that says a window is *settled* (its labels
# are in): :func:`label_gate` on columns, and the same predicate in SQL for the readers
# of the tables (``msewatch/commands/trend.py``); a test checks both agree.
LABEL_GATE_SQL = "(complete OR label_coverage >= {min_coverage}) AND scored >= {min_scored}"


def label_gate(c: Columns, min_coverage: float, min_scored: int) -> np.ndarray:
    """Per window: its labels are in (complete, or covered to ``min_coverage``) and at
    least ``min_scored`` predictions were scored."""
    covered = (c["label_coverage"] >= min_coverage) | c["complete"]
    return covered & (c["scored"] >= min_scored)


def _label_gate(slo: Slo, c: Columns) -> np.ndarray:
    return label_gate(c, slo.min_coverage, slo.min_scored)


def _rmse(slo: Slo, c: Columns, watermark_ms: float) -> Verdicts:
    value = c["rmse"]
    settled = _label_gate(slo, c) & ~np.isnan(value)
    return Verdicts(settled, np.ones(len(value)), (value > slo.threshold).astype(float), value)


def _error_rate(slo: Slo, c: Columns, watermark_ms: float) -> Verdicts:
    sum_w, bad_w = c["sum_w"], c["bad_w"]
    settled = _label_gate(slo, c) & (sum_w > 0)
    return Verdicts(settled, sum_w, bad_w, share(bad_w, sum_w))


def _label_freshness(slo: Slo, c: Columns, watermark_ms: float) -> Verdicts:
    n = c["predictions"]
    value = share(c["fresh"], n)
    evaluable = c["window_end_ms"] + slo.within_s * 1000 <= watermark_ms
    return Verdicts((n > 0) & evaluable, np.ones(len(n)), (value < slo.threshold) * 1.0, value)


def _nan_rate(slo: Slo, c: Columns, watermark_ms: float) -> Verdicts:
    n = c["predictions"]
    value = share(c["nan_predictions"], n)
    closed = c["window_end_ms"] <= watermark_ms
    return Verdicts((n > 0) & closed, np.ones(len(n)), (value > slo.threshold) * 1.0, value)


def _rmse_trend(slo: Slo, c: Columns, watermark_ms: float) -> Verdicts:
    ends, rmse = c["window_end_ms"], c["rmse"]
    gated = _label_gate(slo, c) & np.isfinite(rmse)
    points = gated & ~suppressed_windows(slo, c)
    full, index = rolling_points(ends, points, slo.trend_windows, slo.period_s * 1000)
    settled = gated & full
    fits = index[settled]
    trend = theil_sen(ends[fits], rmse[fits])
    value, bad = np.full(len(ends), np.nan), np.zeros(len(ends))
    value[settled] = trend.slope
    bad[settled] = trend.low > slo.threshold
    return Verdicts(settled, np.ones(len(ends)), bad, value)


# label_anomaly: a window's value is its anomalous share of labels (in [0, 1]) plus these
# flags, so that the value says which checks tripped (describe reads them back): 10.02 is
# constant labels with 2 % anomalous, 100.0 a scale mismatch, 111.0 all three
CONSTANT_FLAG, SCALE_FLAG = 10.0, 100.0


def _label_anomaly(slo: Slo, c: Columns, watermark_ms: float) -> Verdicts:
    labeled, nan = c["labeled"], c["nan_labels"]
    covered = (c["label_coverage"] >= slo.min_coverage) | c["complete"]
    # the gate counts labeled pairs, not scored ones: a NaN label is not scored, and a
    # window of NaN labels must settle (and be bad)
    settled = covered & (labeled >= slo.min_scored)
    anomalous = share(c["outside"] + nan, labeled)
    constant = (labeled - nan >= slo.min_scored) & (c["y_true_min"] == c["y_true_max"])
    pred, true = c["sum_abs_pred"], c["sum_abs_true"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(
            true > 0, pred / np.where(true > 0, true, 1.0), np.where(pred > 0, np.inf, np.nan)
        )
    factor = slo.scale_factor
    scale = (c["scored"] >= slo.min_scored) & ((ratio > factor) | (ratio < 1.0 / factor))
    bad = (anomalous > slo.threshold) | constant | scale
    value = anomalous + CONSTANT_FLAG * constant + SCALE_FLAG * scale
    return Verdicts(settled, np.ones(len(labeled)), bad.astype(float), value)


def describe_label_anomaly(slo: Slo, value: float) -> str:
    """A label_anomaly window's value for a person: the share and each check that tripped."""
    scale = value >= SCALE_FLAG
    constant = value - SCALE_FLAG * scale >= CONSTANT_FLAG
    anomalous = value - SCALE_FLAG * scale - CONSTANT_FLAG * constant
    low, high = slo.valid_range
    parts = [
        f"{anomalous:.2%} of labels outside [{low:g}, {high:g}] or NaN/inf "
        f"(bad above {slo.threshold:.2%})"
    ]
    if constant:
        parts.append("constant labels (y_true_min == y_true_max)")
    if scale:
        parts.append(
            f"scale mismatch (mean |y_pred| / mean |y_true| beyond {slo.scale_factor:g}x "
            f"or below 1/{slo.scale_factor:g})"
        )
    return "; ".join(parts)


def trailing_median(ends: np.ndarray, values: np.ndarray, span_ms: int):
    """Per window (``ends`` sorted ascending): the median of ``values`` over the windows
    ending in ``[end - span_ms, end)``, how many they are and the oldest end among them
    (NaN median and oldest where there are none). Vectorised: the spans are padded to
    the longest with NaN, which sorts last."""
    lo = np.searchsorted(ends, ends - span_ms, side="left")
    hi = np.searchsorted(ends, ends, side="left")
    count = hi - lo
    width = max(int(count.max(initial=0)), 1)
    index = lo[:, None] + np.arange(width)
    padded = np.where(index < hi[:, None], values[np.minimum(index, len(ends) - 1)], np.nan)
    ordered = np.sort(padded, axis=1)
    rows, some = np.arange(len(ends)), count > 0
    low, high = np.maximum(count - 1, 0) // 2, np.maximum(count, 1) // 2
    median = np.where(some, (ordered[rows, low] + ordered[rows, high]) / 2, np.nan)
    oldest = np.where(some, ends[np.minimum(lo, len(ends) - 1)], np.nan) if len(ends) else median
    return median, count, oldest


def _traffic(slo: Slo, c: Columns, watermark_ms: float) -> Verdicts:
    order = np.lexsort((c["window_start_ms"], c["window_end_ms"]))
    ends, n = c["window_end_ms"][order], c["predictions"][order]
    span_ms = slo.trailing_s * 1000
    median, count, oldest = trailing_median(ends, n, span_ms)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(median > 0, n / np.where(median > 0, median, 1.0), np.inf)
    baseline = (count >= MIN_BASELINE_WINDOWS) & (oldest <= ends - span_ms / 2)
    settled = (ends <= watermark_ms) & baseline & ((median > 0) | (n > 0))
    value, bad = np.full(len(ends), np.nan), np.zeros(len(ends))
    value[order] = np.where(settled, ratio, np.nan)
    bad[order] = settled & (ratio < slo.threshold)
    out = np.empty(len(ends), bool)
    out[order] = settled
    return Verdicts(out, np.ones(len(ends)), bad, value)


def _describe_traffic(slo: Slo, v: float) -> str:
    median = f"the trailing {format_duration(slo.trailing_s)} median of predictions"
    bad = f"bad below {slo.threshold:.0%}"
    if v == 0:
        return f"no predictions: silent ({bad} of {median})"
    return f"predictions {v:.0%} of {median} ({bad})"


def _prediction_drift(slo: Slo, c: Columns, watermark_ms: float) -> Verdicts:
    return Verdicts(*drift_rules.drift_verdicts(slo, c, c["window_end_ms"] <= watermark_ms))


def _label_drift(slo: Slo, c: Columns, watermark_ms: float) -> Verdicts:
    return Verdicts(*drift_rules.drift_verdicts(slo, c, _label_gate(slo, c)))


SLI_RULES: dict[str, SliRule] = {
    "rmse": SliRule(
        ("label_coverage", "complete", "scored", "rmse"),
        _rmse,
        lambda slo, v: f"RMSE {v:.4g} (bad above {slo.threshold:g})",
    ),
    "error_rate": SliRule(
        ("label_coverage", "complete", "scored", "sum_w", "bad_w"),
        _error_rate,
        lambda slo, v: f"{v:.2%} of scored predictions off by more than {slo.threshold:g}",
    ),
    "label_freshness": SliRule(
        ("predictions", "fresh"),
        _label_freshness,
        lambda slo, v: (
            f"{v:.1%} labeled within {format_duration(slo.within_s)} "
            f"(bad below {slo.threshold:.1%})"
        ),
    ),
    "nan_rate": SliRule(
        ("predictions", "nan_predictions"),
        _nan_rate,
        lambda slo, v: f"{v:.2%} NaN/inf predictions (bad above {slo.threshold:.2%})",
    ),
    "rmse_trend": SliRule(
        ("label_coverage", "complete", "scored", "rmse"),
        _rmse_trend,
        lambda slo, v: (
            f"RMSE slope {v:+.3g}/day over {slo.trend_windows} windows (bad when its 95% "
            f"interval lies above {slo.threshold:g}/day)"
        ),
        reach_s=lambda slo: slo.period_s,
    ),
    "label_anomaly": SliRule(
        (
            "label_coverage",
            "complete",
            "labeled",
            "nan_labels",
            "outside",
            "y_true_min",
            "y_true_max",
            "scored",
            "sum_abs_pred",
            "sum_abs_true",
        ),
        _label_anomaly,
        describe_label_anomaly,
    ),
    "traffic": SliRule(
        ("predictions",),
        _traffic,
        _describe_traffic,
        reach_s=lambda slo: slo.trailing_s,
    ),
    "prediction_drift": SliRule(
        ("y_pred_sketch",), _prediction_drift, drift_rules.describe, drift_rules.reach_s
    ),
    "label_drift": SliRule(
        ("label_coverage", "complete", "scored", "y_true_sketch"),
        _label_drift,
        drift_rules.describe,
        drift_rules.reach_s,
    ),
    "feature_drift": SliRule(
        ("feature_sketch",), _prediction_drift, drift_rules.describe, drift_rules.reach_s
    ),
}


def required_columns(sli: str) -> tuple[str, ...]:
    """The window columns an SLI's evaluation reads (:data:`WINDOW_KEY` first).

    Raises:
        ValueError: an unknown SLI.
    """
    if sli not in SLI_RULES:
        raise ValueError(f"sli must be one of {', '.join(SLI_RULES)}; got {sli!r}")
    return WINDOW_KEY + SLI_RULES[sli].columns
