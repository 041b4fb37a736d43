"""The streaming side of silent slices (:mod:`.silence`): heartbeats and the window grid.

Time: event time (UTC epoch ms), in the global window. A traffic SLO's slice keys
cannot see each other, so none of them knows on its own whether the input has a window
it was silent in. :class:`RouteFrontier` sends every ``metrics`` row (its slice and
window end) to one key per traffic SLO, where :class:`Heartbeats` keeps the *input
frontier* (the newest window end of any row) and the live slices; when the frontier
moves it sends ``{heartbeat_ms: frontier}`` to each live slice key of
:class:`~msewatch.transforms.slo.transform.EvaluateSlos`, which then walks its windows
up to it at its event-time timer. A slice idle beyond ``retire_after`` plus one window
step is forgotten.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import apache_beam as beam
from apache_beam import coders
from apache_beam.transforms import userstate
from apache_beam.utils.timestamp import Timestamp

from msewatch.schemas import state_tree
from msewatch.schemas.slo import epoch_ms
from msewatch.transforms.slo.silence import HEARTBEAT
from msewatch.transforms.slo.sli import MIN_BASELINE_WINDOWS
from msewatch.transforms.slo.spec import InvalidValue, Slo, SloFile


class LiveSlicesCoder(state_tree.TreeStateCoder):
    """``{slice: newest window end ms}`` of a traffic SLO (tag ``MWSL``)."""

    MAGIC = b"MWSL"
    VERSION = 1


class TimerMs:
    """A Beam timer set in UTC epoch ms (what :class:`~.silence.LiveSlice` calls)."""

    def __init__(self, timer):
        self._timer = timer

    def set_ms(self, ms: int) -> None:
        self._timer.set(Timestamp(micros=ms * 1000))


class RouteFrontier(beam.DoFn):
    """Unbounded, with traffic SLOs: every metrics row -> ``((slo, ""), {slice, end_ms})``
    for each traffic SLO (``slice`` None when the SLO does not cover it)."""

    def __init__(self, slos: Sequence[Slo]):
        self._slos = tuple(slos)

    def process(self, row: dict):
        end_ms = epoch_ms(row["window_end"])
        for slo in self._slos:
            covered = row["slice"] if slo.covers(row["slice"]) else None
            yield (slo.name, ""), {"slice": covered, "end_ms": end_ms}


class Heartbeats(beam.DoFn):
    """Unbounded: one key per traffic SLO. Keeps the input frontier (the newest window
    end of any row) and each covered slice's newest window end; when the frontier moves,
    sends ``{heartbeat_ms: frontier}`` to every slice not idle beyond ``retire_after``
    plus a window step (the others are forgotten: the state stays bounded)."""

    FRONTIER = userstate.ReadModifyWriteStateSpec("frontier_ms", coders.VarIntCoder())
    LIVE = userstate.ReadModifyWriteStateSpec("live", LiveSlicesCoder())  # {slice: end}

    def __init__(self, slos: Sequence[Slo], period_ms: int):
        self._slos = {s.name: s for s in slos}
        self._period_ms = period_ms

    def process(
        self, element, frontier=beam.DoFn.StateParam(FRONTIER), live=beam.DoFn.StateParam(LIVE)
    ):
        (name, _), row = element
        seen, end_ms = live.read() or {}, row["end_ms"]
        if row["slice"] is not None and end_ms > seen.get(row["slice"], -math.inf):
            seen[row["slice"]] = end_ms
            live.write(seen)
        known = frontier.read()
        if known is not None and end_ms <= known:
            return
        frontier.write(end_ms)
        keep_ms = self._slos[name].retire_after_s * 1000 + self._period_ms
        kept = {s: e for s, e in seen.items() if end_ms - e <= keep_ms}
        if len(kept) < len(seen):
            live.write(kept)
        for slice_name in sorted(kept):
            yield (name, slice_name), {HEARTBEAT: end_ms}


def newest_end(ends) -> int:
    return max(ends, default=0)


def grid_ms(slo_file: SloFile, window_seconds, every_seconds) -> tuple[int, int] | None:
    """``(window_ms, period_ms)`` of the metrics windows, checked against the traffic
    SLOs (a trailing span must hold MIN_BASELINE_WINDOWS windows); None without them."""
    traffic = [s for s in slo_file.slos if s.sli == "traffic"]
    if not traffic:
        return None
    if window_seconds is None:
        raise ValueError("traffic SLOs need the window grid: pass window_seconds")
    period_s = every_seconds or window_seconds
    for slo in traffic:
        if slo.trailing_s < MIN_BASELINE_WINDOWS * period_s:
            raise InvalidValue(
                "trailing",
                f"must span at least {MIN_BASELINE_WINDOWS} windows of the grid "
                f"({MIN_BASELINE_WINDOWS * period_s} s with windows every {period_s} s); "
                f"got {slo.trailing_s} s",
                slo.name,
            )
    return window_seconds * 1000, period_s * 1000
