"""RMSE trend per slice: is the error creeping up?

Read by ``msewatch slo status``, the report (``msewatch report``) and ``msewatch
serve``. For each slice it takes the latest pane of every window (the
``metrics_latest`` view of :mod:`msewatch.commands.query`), keeps the **settled** windows, the
last ``k`` of them by window end, and fits the Theil–Sen slope of RMSE per day with
its 95 % interval (:func:`msewatch.transforms.slo.trend.theil_sen`, the same numbers as
``scipy.stats.theilslopes``; x is the window end in days, UTC).

A window is *settled* here as in an rmse SLO's label gate (docs/slo.md; the one rule is
``transforms/slo/sli.py``'s ``label_gate`` / ``LABEL_GATE_SQL``): ``complete or
label_coverage >= min_coverage``, and ``scored >= min_scored``, and its RMSE is finite.
The defaults are the rmse SLO's: ``min_coverage`` 0.8 and ``min_scored`` 30;
``k`` is 24 (a day of hourly windows), the ``trend_windows`` default of an
``rmse_trend`` SLO. Unlike that SLI, which only fits the windows of one period before
the window it judges, the last ``k`` settled windows are taken however old they are.

With fewer than 3 settled windows a slice's slope and interval are NaN. Every slice
of the table is listed, also one without a settled window (``windows`` 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from msewatch.commands import query as q
from msewatch.commands.terminal import escape
from msewatch.transforms.slo.sli import LABEL_GATE_SQL
from msewatch.transforms.slo.spec import DEFAULT_TREND_WINDOWS, Slo
from msewatch.transforms.slo.trend import MIN_POINTS, theil_sen

DEFAULT_K = DEFAULT_TREND_WINDOWS
DEFAULT_MIN_COVERAGE = Slo.min_coverage  # the rmse SLO's label gate defaults
DEFAULT_MIN_SCORED = Slo.min_scored
COLUMNS = ("slice", "slope_per_day", "low", "high", "windows", "first_window_end",
           "last_window_end")  # fmt: skip

_SQL = """
WITH slices AS (
    SELECT DISTINCT slice FROM metrics_latest WHERE $slice IS NULL OR slice = $slice
),
settled AS (
    SELECT slice, window_start, window_end, rmse
    FROM metrics_latest
    WHERE {gate}
        AND isfinite(rmse)
        AND ($slice IS NULL OR slice = $slice)
    QUALIFY row_number() OVER (
        PARTITION BY slice ORDER BY window_end DESC, window_start DESC) <= $k
)
SELECT slice, epoch_ms(window_end) AS end_ms, rmse
FROM slices LEFT JOIN settled USING (slice)
ORDER BY slice <> 'overall', slice, window_end, window_start
""".format(gate=LABEL_GATE_SQL.format(min_coverage="$min_coverage", min_scored="$min_scored"))


def slice_trends(
    source,
    k: int = DEFAULT_K,
    slice_name: str | None = None,
    *,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    min_scored: int = DEFAULT_MIN_SCORED,
) -> pd.DataFrame:
    """The RMSE trend of every slice (or one) over its last ``k`` settled windows.

    A stable interface: other commands (the report, ``msewatch serve``) call it, so its
    arguments and the columns it returns only grow, with defaults.

    Args:
        source: an output folder of ``msewatch run`` (str or Path), or an open DuckDB
            connection with the ``metrics_latest`` view (:func:`msewatch.commands.query.connect`;
            left open).
        k: settled windows per fit, at least 3.
        slice_name: only this slice (exact name, e.g. ``"region=eu"``); None: all.
        min_coverage: the label gate's coverage, in [0, 1].
        min_scored: the label gate's scored predictions, at least 1.

    Returns:
        One row per slice, ``overall`` first, then by name, with columns
        ``slice`` (str), ``slope_per_day``, ``low``, ``high`` (float: RMSE per day and
        its 95 % interval; NaN under 3 windows), ``windows`` (int: the settled windows
        fitted, at most ``k``), ``first_window_end`` and ``last_window_end``
        (UTC timestamps of the oldest and newest fitted window end; NaT without one).

    Raises:
        ValueError: ``k``, ``min_coverage`` or ``min_scored`` out of range.
        msewatch.commands.query.QueryError: the output folder or its metrics table is missing
            or unreadable.
    """
    _check(k, min_coverage, min_scored)
    params = {"k": k, "slice": slice_name, "min_coverage": min_coverage}
    params["min_scored"] = min_scored
    if isinstance(source, (str, Path)):
        con = q.connect(source)
        try:
            table = con.sql(_SQL, params=params).to_arrow_table()
        finally:
            con.close()
    else:
        table = source.sql(_SQL, params=params).to_arrow_table()
    return _fit(table, k)


def _check(k, min_coverage, min_scored) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < MIN_POINTS:
        raise ValueError(f"k must be a whole number of windows >= {MIN_POINTS}; got {k!r}")
    if not 0 <= min_coverage <= 1:
        raise ValueError(f"min_coverage must be in [0, 1]; got {min_coverage!r}")
    if isinstance(min_scored, bool) or not isinstance(min_scored, int) or min_scored < 1:
        raise ValueError(f"min_scored must be a whole number >= 1; got {min_scored!r}")


def _fit(table: pa.Table, k: int) -> pd.DataFrame:
    """Rows ``(slice, end_ms, rmse)``, grouped by slice in end order -> one fit per slice."""
    slices = table.column("slice").to_numpy(zero_copy_only=False)
    end_ms = table.column("end_ms").to_numpy(zero_copy_only=False).astype(float)  # null: NaN
    rmse = table.column("rmse").to_numpy(zero_copy_only=False).astype(float)
    starts = np.flatnonzero(np.r_[True, slices[1:] != slices[:-1]]) if len(slices) else []
    group = np.searchsorted(starts, np.arange(len(slices)), side="right") - 1
    position = np.arange(len(slices)) - np.asarray(starts, int)[group]
    ends, ys = np.full((len(starts), k), np.nan), np.full((len(starts), k), np.nan)
    ends[group, position], ys[group, position] = end_ms, rmse
    trend = theil_sen(ends, ys)
    windows = (~np.isnan(ys)).sum(axis=1)
    last = ends[np.arange(len(starts)), np.maximum(windows - 1, 0)]
    return pd.DataFrame(
        {
            "slice": slices[starts].astype(str),
            "slope_per_day": trend.slope,
            "low": trend.low,
            "high": trend.high,
            "windows": windows,
            "first_window_end": pd.to_datetime(ends[:, 0], unit="ms", utc=True),
            "last_window_end": pd.to_datetime(last, unit="ms", utc=True),
        },
        columns=list(COLUMNS),
    )


def direction(low: float, high: float) -> str:
    """``rising`` when the whole 95 % interval is above 0, ``falling`` when below, else
    ``no clear trend`` (or ``too few windows`` when the interval is NaN)."""
    if np.isnan(low) or np.isnan(high):
        return "too few windows"
    return "rising" if low > 0 else "falling" if high < 0 else "no clear trend"


def render_trends(frame: pd.DataFrame, k: int = DEFAULT_K) -> str:
    """The text ``msewatch slo status`` prints: one line per slice of :func:`slice_trends`."""
    lines = [
        f"RMSE trend per slice: Theil-Sen slope of RMSE per day over the last {k} settled "
        "windows, with its 95% interval",
        f"{'slice':32} {'slope/day':>10}  {'95% interval':24} {'windows':>7}  "
        f"{'last window end':16}  direction",
    ]
    for r in frame.itertuples():
        interval = "" if np.isnan(r.low) else f"[{r.low:+.4g}, {r.high:+.4g}]"
        slope = "n/a" if np.isnan(r.slope_per_day) else f"{r.slope_per_day:+.4g}"
        end = "" if pd.isna(r.last_window_end) else f"{r.last_window_end:%Y-%m-%d %H:%M}"
        lines.append(
            f"{r.slice:32} {slope:>10}  {interval:24} {r.windows:>7}  {end:16}  "
            f"{direction(r.low, r.high)}"
        )
    return "\n".join(escape(line) for line in lines)  # slice values from the tables
