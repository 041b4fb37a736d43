"""Flapping alerts of a run, and the setting that calms each.

An alert flaps when a row of the ``alerts`` table says it fired at least
:data:`~msewatch.transforms.flapping.FLAPPING_FIRINGS` times in the trailing day of
frontier (event) time (``fired_24h``, :func:`~msewatch.transforms.flapping.is_flapping`:
the one definition). For each flapping alert, :func:`find_flaps` takes the row with the
most firings, and the longest gap between two of its consecutive firings that are less
than a day apart (the re-firings that make it flap), and says what calms it:

* ``keep_firing_for`` at least that gap: an alert that fired at ``f1`` and next at
  ``f2`` last held a condition at or after ``f1``, so with ``keep_firing_for >= f2 -
  f1`` no evaluation between them can resolve it, and ``f2`` renews it instead of
  firing it again. A longer ``keep_firing_for`` only merges firing periods, so every
  firing left is a day or more after the one before: nothing flaps. The value
  suggested is the gap rounded up to a whole hour;
* a longer short lookback: a short lookback of one window or less is the newest window
  alone, so one bad window fires the alert and the next good one resolves it;
* a larger ``min_scored`` (rmse, error_rate, rmse_trend): windows with few scored
  predictions have a noisy RMSE.

The SLO's current settings come from the run's ``summary.json`` (its config), when
there. ``msewatch slo status``, the report and ``msewatch gameday`` call this module;
``docs/slo.md`` ("Flapping") explains it.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pandas as pd

from msewatch.schemas.slo import FIRING
from msewatch.transforms.durations import format_duration as _d
from msewatch.transforms.flapping import FLAP_SPAN_S, FLAPPING_FIRINGS, is_flapping

LABEL_GATED = ("rmse", "error_rate", "rmse_trend")
FLAPPING = (
    f"flapping (fired {FLAPPING_FIRINGS} or more times in {FLAP_SPAN_S // 3600} h of frontier time)"
)
_ALERTS_SQL = "SELECT * FROM alerts ORDER BY alert, frontier, emitted_at"
_HOUR_S = 3600


@dataclasses.dataclass(frozen=True)
class Flap:
    """A flapping alert: its busiest day and what calms it.

    Attributes:
        alert, slo, sli, severity, slice: as in the ``alerts`` table.
        fired_24h: the most firings in one trailing day (the row's ``fired_24h``).
        frontier_ms: that row's frontier, UTC epoch ms (the day is the 24 h before it).
        gap_s: the longest gap between two consecutive firings less than a day apart,
            seconds.
        hints: the settings that calm it, one line each.
    """

    alert: str
    slo: str
    sli: str
    severity: str
    slice: str
    fired_24h: int
    frontier_ms: int
    gap_s: int
    hints: tuple[str, ...]

    def describe(self) -> str:
        """One line: what flaps, when, and how far apart its firings were."""
        when = pd.Timestamp(self.frontier_ms, unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")
        return (
            f"{self.alert}: fired {self.fired_24h} times in the 24 h to {when} UTC, at most "
            f"{_d(self.gap_s)} apart: {FLAPPING}"
        )


def slo_settings(summary: dict | None) -> dict[str, dict]:
    """SLO name -> its settings in a run's ``summary.json`` (``{}`` without one)."""
    slo = ((summary or {}).get("config") or {}).get("slo") or {}
    return {s["name"]: s for s in slo.get("slos", [])}


def suggested_keep_s(gap_s: int) -> int:
    """``keep_firing_for`` that spans a gap of ``gap_s`` between firings: whole hours."""
    return max(1, math.ceil(gap_s / _HOUR_S)) * _HOUR_S


def _hints(row, gap_s: int, settings: dict | None) -> tuple[str, ...]:
    now = lambda key, fmt: "" if key not in (settings or {}) else f" (now {fmt(settings[key])})"  # noqa: E731
    if row.sli == "comparison":
        return (f"a longer lookback than {_d(int(row.long_window_s))} (more windows per decision)",)
    hints = [
        f"keep_firing_for: {_d(suggested_keep_s(gap_s))}{now('keep_firing_for_s', _d)}, longer "
        "than the gap between firings",
        f"a longer short lookback than {_d(int(row.short_window_s))} in the condition "
        f"{_d(int(row.long_window_s))}/{_d(int(row.short_window_s))} (one window or less is "
        "the newest window alone)",
    ]
    if row.sli in LABEL_GATED:
        hints.append(f"a larger min_scored{now('min_scored', str)} (few scored: a noisy SLI)")
    return tuple(hints)


def find_flaps(alerts: pd.DataFrame, settings: dict[str, dict] | None = None) -> list[Flap]:
    """The flapping alerts of an ``alerts`` table (a frame of its columns), by alert name.

    Args:
        alerts: ``alerts`` rows; ``frontier`` a UTC datetime column.
        settings: SLO name -> its settings (:func:`slo_settings`), for the current values.
    """
    if alerts.empty or "fired_24h" not in alerts:
        return []
    since_epoch = pd.to_datetime(alerts["frontier"], utc=True) - pd.Timestamp(0, tz="UTC")
    frame = alerts.assign(t_ms=since_epoch // pd.Timedelta(milliseconds=1)).reset_index(drop=True)
    out = []
    for alert, part in frame.sort_values(["alert", "t_ms"], kind="stable").groupby("alert"):
        busiest = part.loc[part["fired_24h"].astype(float).idxmax()]
        if not is_flapping(busiest.fired_24h):
            continue
        fired = part.loc[part["state"] == FIRING, "t_ms"].drop_duplicates().to_numpy()
        gaps = (fired[1:] - fired[:-1]) // 1000
        gap_s = int(gaps[gaps < FLAP_SPAN_S].max(initial=0))
        hints = _hints(busiest, gap_s, (settings or {}).get(busiest.slo))
        out.append(Flap(alert, busiest.slo, busiest.sli, busiest.severity, busiest.slice,
                        int(busiest.fired_24h), int(busiest.t_ms), gap_s, hints))  # fmt: skip
    return out


def read_flaps(output_dir) -> list[Flap]:
    """The flapping alerts of a run's output folder (none without an ``alerts`` table)."""
    from msewatch.commands import query as q
    from msewatch.schemas import layout

    try:
        alerts = q.query(output_dir, sql=_ALERTS_SQL)
    except q.QueryError:
        return []
    try:
        with open(layout.resolve(output_dir) / "summary.json", encoding="utf-8") as f:
            summary = json.load(f)
    except (OSError, ValueError):
        summary = None
    return find_flaps(alerts, slo_settings(summary))
