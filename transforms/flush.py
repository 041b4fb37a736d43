"""When the unbounded output tables flush: one trigger for the outcome counts and the
Parquet sink (processing time; the metrics' own windows are ``transforms/metrics/windowing.py``)."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.transforms import trigger, window


def flush_in_global_window(flush_seconds: int) -> beam.WindowInto:
    """Unbounded output tables (outcome counts, Parquet files): the global window,
    fired every ``flush_seconds`` of processing time after its first element and at
    the end of the stream, DISCARDING, so each firing carries only what is new."""
    return beam.WindowInto(
        window.GlobalWindows(),
        trigger=trigger.AfterWatermark(early=trigger.AfterProcessingTime(flush_seconds)),
        accumulation_mode=trigger.AccumulationMode.DISCARDING,
    )
