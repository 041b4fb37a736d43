"""Durations as people write them: ``90s``, ``5m``, ``1h``, ``30d``, ``2w``, ``500ms``.

A duration is a number (digits, an optional fraction) and an optional unit: ``ms``,
``s`` (the default), ``m``, ``h``, ``d`` or ``w``. Durations are at most ten years
(``3650d``): beyond that no window, TTL or SLO period makes sense, and window
arithmetic would leave the range of timestamps. :func:`format_duration` writes
seconds back in the largest unit that divides them.
"""

from __future__ import annotations

import re

from msewatch.transforms.shown import shown

MAX_DURATION_SECONDS = 3650 * 86400
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration_seconds(text: str) -> float:
    """Seconds of a duration such as ``30m``, ``1h``, ``7d`` (a bare number is seconds).

    Raises:
        ValueError: not a number and a unit, or longer than ten years.
    """
    m = _DURATION.match(text or "")
    if not m:
        raise ValueError(f"bad duration {shown(text)}: use a number and a unit, e.g. 30m, 1h, 7d")
    seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2) or "s"]
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"duration {shown(text)} is longer than 3650d (ten years)")
    return seconds


def format_duration(seconds: float) -> str:
    """``3600`` -> ``1h``, ``2592000`` -> ``30d``, ``90`` -> ``90s``, ``0`` -> ``0s``."""
    if seconds > 0:
        for unit in ("d", "h", "m"):
            size = _UNIT_SECONDS[unit]
            if seconds % size == 0:
                return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{seconds:g}s"
