"""The streaming DirectRunner's test clock, started before every event time (replays).

Why. Beam's Python ``AfterWatermark`` trigger (``apache_beam/transforms/trigger.py``,
``AfterWatermark.should_fire`` and ``on_fire``) compares the time of *any* timer firing
with the window's end: when the processing-time timer of an EARLY firing
(``AfterProcessingTime``) fires, its processing time is taken for the watermark. A
replay (``--streaming-replay``: a ``TestStream`` on the DirectRunner) runs on the
runner's ``TestClock``, whose processing time starts at 1970-01-01T00:00:00Z and moves
by the early-firing delay after each watermark step. A window that ends before that
processing time (every window before 1970, since the accepted range starts in the
year 1000) is then treated as closed by its first EARLY firing: its later panes keep
a watermark hold that is never released, and the run stops with "Monitor task
detected a pipeline stall".

What. :func:`early_test_clock` makes the ``TestClock`` of the pipelines started inside
it begin about 146,000 years before the epoch, long before every window of the
accepted range (``schemas/time_range.py``), so processing time stays below every
window's end, as it would for live data. Only the origin of processing time moves;
processing-time delays and the order of firings are unchanged, and no output column
reads processing time (``emitted_at`` comes from msewatch's own clock). The original
class is restored on exit; pipelines without a ``TestStream`` never use the clock.
"""

from __future__ import annotations

import contextlib

import apache_beam as beam
from apache_beam.runners.direct import clock, direct_runner
from apache_beam.utils.timestamp import Timestamp

ORIGIN = Timestamp(micros=-(2**62))  # about 146,000 years before 1970-01-01T00:00:00Z


class _EarlyTestClock(clock.TestClock):
    """``TestClock`` whose processing time starts at :data:`ORIGIN`."""

    def __init__(self, current_time=None):
        super().__init__(current_time if current_time else ORIGIN)


@contextlib.contextmanager
def early_test_clock():
    """Within it, DirectRunner pipelines that use a ``TestStream`` start their
    processing time at :data:`ORIGIN` (the clock is made when ``Pipeline.run``
    starts the job, so only ``run`` needs to be inside).

    Raises:
        RuntimeError: this Beam version does not build its test clock as expected.
    """
    original = getattr(direct_runner, "TestClock", None)
    if original is not clock.TestClock:
        raise RuntimeError(
            f"apache_beam {beam.__version__}: direct_runner.TestClock is not "
            "clock.TestClock; runners/direct_clock.py needs updating for this version"
        )
    direct_runner.TestClock = _EarlyTestClock
    try:
        yield
    finally:
        direct_runner.TestClock = original
