"""Argument types the commands' parsers share: durations as a user writes them.

The rule of a duration is ``transforms/durations.py``; these wrap it for argparse, so a
bad value is one line naming the option (``msewatch/cli.py`` prints it, exit 2).
"""

from __future__ import annotations

import argparse

from msewatch.transforms import durations


def duration_seconds(text: str) -> float:
    """``30m``, ``1h``, ``7d``, ``90s``, ``500ms``, ``2w`` (bare numbers: seconds)."""
    try:
        return durations.parse_duration_seconds(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def whole_seconds(text: str) -> int:
    """A duration of whole seconds, at least 1s (windows, periods, intervals)."""
    seconds = duration_seconds(text)
    if seconds < 1 or seconds != int(seconds):
        raise argparse.ArgumentTypeError(f"must be whole seconds >= 1s, e.g. 3d; got {text!r}")
    return int(seconds)
