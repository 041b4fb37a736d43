"""Windows, triggers and panes of the metrics: :class:`WindowMetrics`.

Time: elements are pre-aggregated metric partials stamped with the start of the
*bucket* of prediction event time they summarize (UTC). Buckets are ``every``
long (``window`` for fixed windows), aligned to the epoch, so each bucket lies wholly
inside every window that contains its start; windows are therefore exact.

* Fixed windows (``every_seconds == window_seconds``) or sliding windows
  (``window_seconds`` long, starting every ``every_seconds``; the window must be a
  multiple of the period).
* ``allowed_lateness_seconds`` is ``label_ttl`` rounded up to the second plus a slack
  (:func:`allowed_lateness_for`, through :meth:`WindowConfig.for_label_ttl`; the
  pipeline's ``MonitorConfig`` refuses less): a label can arrive up to ``label_ttl`` after its
  prediction, and a prediction made in the last millisecond of a window expires at
  window end + ``label_ttl``; the window must still accept both. The slack is 1 s on
  the DirectRunner, whose watermark moves exactly, and
  :data:`CLUSTER_CLOSE_SLACK_SECONDS` on a cluster (Flink, Dataflow, any portable
  runner), where the watermark reaches the windows in steps: on Flink 1.19 with 1 s,
  18 of 106 expirations of a live Kafka stream came after their window had closed
  and were dropped (tests/integration/test_flink_kafka.py); with 30 s, none.
* Trigger (unbounded input): ``AfterWatermark(early=AfterProcessingTime(early),
  late=AfterCount(1))``, DISCARDING here, accumulated by ``ComputeMetrics`` (the
  rows are ACCUMULATING: each holds everything so far): speculative EARLY panes every
  ``early_firing_seconds`` of processing time while the window is open, one ON_TIME
  pane when the watermark passes the window end, then a LATE pane for each batch of
  late labels or expirations until the watermark passes end + allowed lateness;
  later data is dropped (it cannot happen: a prediction expires at
  ``event_time + label_ttl``, within the lateness). Bounded input uses the default
  trigger: one ON_TIME pane per window, holding everything.
"""

from __future__ import annotations

import dataclasses

import apache_beam as beam
from apache_beam.transforms import trigger, window

from msewatch.schemas.time_range import MAX_DURATION_DAYS, MAX_DURATION_MS

MAX_WINDOW_SECONDS = MAX_DURATION_MS // 1000
# how long past ``label_ttl`` a window stays open on a cluster runner (module docstring)
CLUSTER_CLOSE_SLACK_SECONDS = 60
# the longest label TTL + the cluster slack
MAX_ALLOWED_LATENESS_SECONDS = MAX_WINDOW_SECONDS + CLUSTER_CLOSE_SLACK_SECONDS


def allowed_lateness_for(label_ttl_ms: int, cluster: bool) -> int:
    """A window's allowed lateness in seconds: ``label_ttl`` rounded up to the second,
    plus 1 s, or :data:`CLUSTER_CLOSE_SLACK_SECONDS` when ``cluster`` (not the
    DirectRunner): see the module docstring."""
    return -(-label_ttl_ms // 1000) + (CLUSTER_CLOSE_SLACK_SECONDS if cluster else 1)


@dataclasses.dataclass(frozen=True)
class WindowConfig:
    """Window settings, in seconds (UTC, epoch-aligned).

    Attributes:
        window_seconds: window length, at most 3650 days (:data:`MAX_WINDOW_SECONDS`).
        every_seconds: period of sliding windows; equal to window_seconds for fixed.
        allowed_lateness_seconds: how long after its end a window accepts late data, at
            most 3650 days + 1 s (:data:`MAX_ALLOWED_LATENESS_SECONDS`). The caps keep
            every window bound inside Python's datetime (``schemas/time_range.py``).
        early_firing_seconds: processing-time delay between EARLY panes (unbounded).
    """

    window_seconds: int = 3600
    every_seconds: int | None = None
    # the default label TTL's (7 days, JoinConfig) on the DirectRunner
    allowed_lateness_seconds: int = 7 * 24 * 3600 + 1
    early_firing_seconds: int = 60

    @classmethod
    def for_label_ttl(
        cls,
        label_ttl_ms: int,
        *,
        cluster: bool,
        window_seconds: int = 3600,
        every_seconds: int | None = None,
        early_firing_seconds: int = 60,
    ) -> WindowConfig:
        """The windows of a run whose labels wait ``label_ttl_ms``: their allowed
        lateness is :func:`allowed_lateness_for` (the one place it is derived; the
        pipeline's config checks it, ``pipelines/monitor.py``)."""
        return cls(
            window_seconds=window_seconds,
            every_seconds=every_seconds,
            allowed_lateness_seconds=allowed_lateness_for(label_ttl_ms, cluster=cluster),
            early_firing_seconds=early_firing_seconds,
        )

    def __post_init__(self):
        if not 0 < self.window_seconds <= MAX_WINDOW_SECONDS:
            raise ValueError(
                f"--window must be positive and at most {MAX_DURATION_DAYS} days "
                f"({MAX_WINDOW_SECONDS} s), got {self.window_seconds} s"
            )
        every = self.period_seconds
        if every <= 0 or every > self.window_seconds or self.window_seconds % every:
            raise ValueError(
                f"--every ({every} s) must be positive and divide --window "
                f"({self.window_seconds} s), e.g. --window 24h --every 1h"
            )
        if not 0 <= self.allowed_lateness_seconds <= MAX_ALLOWED_LATENESS_SECONDS:
            raise ValueError(
                f"allowed lateness must be >= 0 and at most {MAX_DURATION_DAYS} days + "
                f"{CLUSTER_CLOSE_SLACK_SECONDS} s "
                f"({MAX_ALLOWED_LATENESS_SECONDS} s), got {self.allowed_lateness_seconds} s"
            )
        if self.early_firing_seconds <= 0:
            raise ValueError(f"early firing delay must be > 0, got {self.early_firing_seconds} s")

    @property
    def period_seconds(self) -> int:
        return self.every_seconds or self.window_seconds

    @property
    def sliding(self) -> bool:
        return self.period_seconds != self.window_seconds

    def window_fn(self):
        if self.sliding:
            return window.SlidingWindows(self.window_seconds, self.period_seconds)
        return window.FixedWindows(self.window_seconds)


class WindowMetrics(beam.PTransform):
    """Assigns metric partials to windows with the panes described in the module doc."""

    def __init__(self, config: WindowConfig, bounded: bool):
        super().__init__()
        self._config = config
        self._bounded = bounded

    def expand(self, partials):
        cfg = self._config
        if self._bounded:
            return partials | "AssignWindows" >> beam.WindowInto(cfg.window_fn())
        return partials | "AssignWindows" >> beam.WindowInto(
            cfg.window_fn(),
            trigger=trigger.AfterWatermark(
                early=trigger.AfterProcessingTime(cfg.early_firing_seconds),
                late=trigger.AfterCount(1),
            ),
            # ComputeMetrics accumulates the panes itself (AccumulatePanes).
            accumulation_mode=trigger.AccumulationMode.DISCARDING,
            allowed_lateness=cfg.allowed_lateness_seconds,
        )
