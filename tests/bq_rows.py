"""Rows for the BigQuery sink tests (unit and emulator): full ``metrics`` rows.

Shared by ``tests/unit/test_bigquery_rows.py`` and ``tests/integration/test_bigquery.py``.
"""

from __future__ import annotations

import datetime
import math

from msewatch.schemas.records import METRICS_FIELDS

PROJECT = "msewatch-test"
UTC = datetime.UTC
T0 = datetime.datetime(2026, 1, 5, tzinfo=UTC)
HOUR = datetime.timedelta(hours=1)


def metrics_row(hour, slice_, pane, mse, **extra):
    """A full metrics row: NaN floats, null sketches, zero counts and empty lists except
    the named values.

    The window is ``[T0 + hour h, T0 + hour h + 1 h)``; pane 0 is EARLY, later panes
    LATE; ``predictions`` is ``10 + pane``.
    """
    start = T0 + hour * HOUR
    empty = {"FLOAT64": math.nan, "BYTES": None}  # NaN floats, null sketches, zero counts
    row = {f.name: empty.get(f.bq_type, 0) for f in METRICS_FIELDS}
    row.update({f.name: [] for f in METRICS_FIELDS if f.repeated})
    row.update(
        window_start=start,
        window_end=start + HOUR,
        slice=slice_,
        predictions=10 + pane,
        mse=mse,
        rmse=math.sqrt(mse),
        pane_index=pane,
        pane_timing="EARLY" if pane == 0 else "LATE",
        complete=False,
        emitted_at=T0 + datetime.timedelta(days=1, minutes=pane),
    )
    row.update(extra)
    return row
