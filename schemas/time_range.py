"""The accepted range of record times, and the longest windows and TTLs.

Every record time (``event_time``, ``label_time``; UTC epoch milliseconds) must lie in
``[EARLIEST_MS, END_MS)``, that is 1000-01-01T00:00:00Z <= t < 9000-01-01T00:00:00Z;
a record outside it is dead-lettered as ``bad_timestamp`` (``transforms/parse/``).
Windows, sliding periods, the label TTL and the orphan TTL are at most
:data:`MAX_DURATION_MS` (3650 days, about ten years); the configs refuse longer ones
(``WindowConfig``, ``JoinConfig``).

Why these bounds. Every time the pipeline derives from a record time ``t`` lies in
``[t - window, t + window + 2 * label_ttl + orphan_ttl + 1 s]``: a sliding window
starts at most one window before ``t``; the latest window holding ``t`` ends within
one window after it and is garbage-collected ``label_ttl + 1 s`` (its allowed lateness)
later; an expiry deadline is at most one grid cell (at most one period, itself at
most one window) plus ``label_ttl`` after ``t``; an orphan deadline ``orphan_ttl`` plus
one grid cell; a tombstone is forgotten ``2 * label_ttl`` after ``t``. With the caps
that span is within 50 years of ``t``, so every window bound, timer, watermark stop
and partition date stays between the years 950 and 9050: inside Python's
``datetime`` (years 1-9999), which Beam uses to format window bounds, and far inside
Beam's timestamp range (about +-292,000 years). Records 2,000 years apart are
accepted; ``tests/unit/test_time_range.py`` checks the arithmetic at both ends.
"""

from __future__ import annotations

import numpy as np

EARLIEST_MS = -30_610_224_000_000  # 1000-01-01T00:00:00Z, the first accepted time
END_MS = 221_845_392_000_000  # 9000-01-01T00:00:00Z, the first time past the range
RANGE_TEXT = "1000-01-01T00:00:00Z <= t < 9000-01-01T00:00:00Z"

DAY_MS = 86_400_000
MAX_DURATION_DAYS = 3650
MAX_DURATION_MS = MAX_DURATION_DAYS * DAY_MS  # windows, periods, label and orphan TTLs


def in_range(ms: np.ndarray) -> np.ndarray:
    """Whether each time (UTC epoch ms) lies in the accepted range."""
    return (ms >= EARLIEST_MS) & (ms < END_MS)


def iso_text(ms: np.ndarray) -> np.ndarray:
    """UTC epoch ms -> RFC 3339 text with millisecond precision, any year (for details)."""
    stamps = np.asarray(ms, np.int64).astype("datetime64[ms]")
    return np.char.add(np.datetime_as_string(stamps, unit="ms"), "Z")
