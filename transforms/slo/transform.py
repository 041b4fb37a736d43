"""SLO evaluation in the pipeline: :class:`EvaluateSlos`, metrics rows -> alerts, slo_status.

Time: the input rows are ``metrics`` panes, whose windows are event-time windows of
the predictions (UTC); the evaluation itself (settling, frontier, burn rates, budget,
alert states) is :mod:`msewatch.transforms.slo.kernel`, in the global window.

* Bounded input: the latest pane of each window is known at the end. Each row is
  keyed by its slice, once, whatever the number of SLOs (rows covered by no SLO are
  dropped); one ``GroupByKey`` hands each slice its panes, which are read into
  columns once (:func:`evaluate_slice`), and every SLO covering the slice evaluates
  them in event-time order (:func:`~msewatch.transforms.slo.kernel.evaluate_history`).
  Memory follows rows + SLOs, not rows x SLOs. ``watermark`` is null.
* Unbounded input: each pane is routed to every SLO covering its slice and keyed by
  ``(slo, slice)``; a stateful DoFn keeps one
  :class:`~msewatch.transforms.slo.kernel.SloEvaluator` per key and updates it at
  every pane, so an alert fires at the pane that settles (or spoils) its window.
  Beam does not show a DoFn its input watermark; the ``watermark`` recorded is the
  lower bound the panes prove: the largest window end of an ON_TIME or LATE pane
  seen by the key (the watermark has passed it). label_freshness and nan_rate
  windows settle against that bound, and, when the input ends (the end of a replay,
  a drained job), against the end of time: an event-time timer at the end of the
  global window evaluates every window still waiting, as a bounded run does.

Traffic SLOs also read *zero rows* for the windows a covered slice was silent in
(:mod:`.silence`), up to the newest window end of the input: bounded, a side input
(``InputFrontier``); unbounded, heartbeats (:mod:`.live`), and each traffic key
evaluates its windows in grid order at an event-time timer at each window end.

Outputs: ``alerts`` rows (one per transition), ``slo_status`` rows, and ``resend``:
in streaming, every alert still firing after an update, for Alertmanager, which
forgets an alert it has not heard of for its ``resolve_timeout``.
"""

from __future__ import annotations

import datetime
import functools
import math
import typing
from collections.abc import Callable, Iterator, Sequence

import apache_beam as beam
import numpy as np
from apache_beam import coders
from apache_beam.transforms import userstate
from apache_beam.transforms.window import GlobalWindow

from msewatch.schemas import state_tree
from msewatch.schemas.slo import AlertTransition, SloStatus, epoch_ms
from msewatch.transforms.keyed_evaluation import (
    ALERTS,
    KEY_TYPE,
    RESEND,
    EvaluateAtEveryPane,
    RouteBySlice,
    advance_watermark,
    emit,
    evaluate_per_key,
)
from msewatch.transforms.slo.kernel import SloEvaluator, as_columns, evaluate_history
from msewatch.transforms.slo.live import (
    Heartbeats,
    RouteFrontier,
    TimerMs,
    grid_ms,
    newest_end,
)
from msewatch.transforms.slo.silence import HEARTBEAT, LiveSlice, zero_row, zero_window_ends
from msewatch.transforms.slo.sli import WINDOW_KEY, required_columns
from msewatch.transforms.slo.spec import Slo, SloFile

STATUS = "slo_status"
# sli -> the column read from the SLO's own threshold (error_rate), within (label_freshness)
# or valid_range (label_anomaly: the labels outside it) or feature (feature_drift: the
# sketch of that feature, bytes or None)
_PER_SLO = {
    "error_rate": "bad_w",
    "label_freshness": "fresh",
    "label_anomaly": "outside",
    "feature_drift": "feature_sketch",
}


def _feature_sketch(row: dict, feature: str):
    """The sketch of ``feature`` in a row's ``feature_sketches`` (None if absent)."""
    for entry in row.get("feature_sketches") or ():
        if entry["feature"] == feature:
            return entry["sketch"]
    return None


def _entry(entries, key: str, value, field: str) -> float:
    """The ``field`` of the list entry whose ``key`` equals ``value`` (0 if absent)."""
    for entry in entries or ():
        if entry[key] == value:
            return entry[field]
    return 0.0


def _outside(entries, valid_range) -> float:
    """The ``outside`` count of the ``label_range`` entry of ``valid_range`` (0 if absent)."""
    for entry in entries or ():
        if (entry["low"], entry["high"]) == valid_range:
            return entry["outside"]
    return 0.0


def window_row(slo, row: dict) -> dict:
    """A metrics row as the kernel's window row for ``slo`` (times in ms)."""
    out = dict(row)
    out["window_start_ms"] = epoch_ms(row["window_start"])
    out["window_end_ms"] = epoch_ms(row["window_end"])
    if slo.sli == "error_rate":
        out["bad_w"] = _entry(row.get("error_exceedance"), "threshold", slo.threshold, "sum_w")
    elif slo.sli == "label_freshness":
        out["fresh"] = _entry(row.get("labeled_within"), "within_s", slo.within_s, "labeled")
    elif slo.sli == "label_anomaly":
        out["outside"] = _outside(row.get("label_range"), slo.valid_range)
    elif slo.sli == "feature_drift":
        out["feature_sketch"] = _feature_sketch(row, slo.feature)
    return out


def _per_slo_column(slo: Slo, rows: Sequence[dict]) -> np.ndarray:
    """The column of ``slo``'s threshold (error_rate: ``bad_w``), ``within``
    (label_freshness: ``fresh``) or ``valid_range`` (label_anomaly: ``outside``), as
    :func:`window_row` reads it."""
    if slo.sli == "error_rate":
        return np.array(
            [_entry(r.get("error_exceedance"), "threshold", slo.threshold, "sum_w") for r in rows]
        )
    if slo.sli == "label_anomaly":
        return np.array([_outside(r.get("label_range"), slo.valid_range) for r in rows], float)
    if slo.sli == "feature_drift":
        column = np.empty(len(rows), object)
        column[:] = [_feature_sketch(r, slo.feature) for r in rows]
        return column
    return np.array(
        [_entry(r.get("labeled_within"), "within_s", slo.within_s, "labeled") for r in rows]
    )


def evaluate_slice(
    slos: Sequence[Slo], slice_name: str, rows: Sequence[dict]
) -> Iterator[tuple[Slo, list[AlertTransition], list[SloStatus]]]:
    """Every SLO of ``slos`` evaluated over one slice's metrics rows (in pane order), as
    :func:`~msewatch.transforms.slo.kernel.evaluate_history` of each SLO alone would.

    The rows are read into numpy columns once; each SLO then reads the shared columns
    (and its own exact-count column, shared by SLOs of one threshold), so memory
    follows rows + SLOs, never rows x SLOs. Yields ``(slo, transitions, statuses)``,
    one SLO at a time.
    """
    plain = {n for s in slos for n in required_columns(s.sli) if n not in _PER_SLO.values()}
    shared = as_columns(rows, tuple(n for n in sorted(plain) if n not in WINDOW_KEY))
    for n, field in zip(WINDOW_KEY, ("window_start", "window_end"), strict=True):
        shared[n] = np.array([epoch_ms(r[field]) for r in rows], np.int64)
    own: dict[tuple, np.ndarray] = {}
    for slo in slos:
        columns = {n: shared[n] for n in required_columns(slo.sli) if n in shared}
        if slo.sli in _PER_SLO:
            key = (slo.sli, slo.threshold, slo.within_s, slo.valid_range, slo.feature)
            if key not in own:
                own[key] = _per_slo_column(slo, rows)
            columns[_PER_SLO[slo.sli]] = own[key]
        yield (slo, *evaluate_history(slo, slice_name, columns))


def _keys(slos, name: str) -> list[tuple[str, str]]:
    """Unbounded: the ``(slo, slice)`` keys of slice ``name``: one per SLO covering it (a
    pair of str, so the key coder is deterministic: state is keyed by it)."""
    return [(slo.name, name) for slo in slos if slo.covers(name)]


def _group(slos, name: str) -> list[str]:
    """Bounded: the slice itself (its group), when an SLO covers it."""
    return [name] if any(slo.covers(name) for slo in slos) else []


def _emit(transitions, statuses, clock):
    return emit(clock, ((ALERTS, transitions), (STATUS, statuses)))


class PendingRowsCoder(state_tree.TreeStateCoder):
    """A window row waiting in a traffic SLO's ``pending`` bag (tag ``MWSP``)."""

    MAGIC = b"MWSP"
    VERSION = 1


class _EvaluateHistory(beam.DoFn):
    """Bounded: all panes of one slice -> the history of every SLO covering it, in
    event-time order (:func:`evaluate_slice`); traffic SLOs read the slice's zero rows
    too, up to ``frontier_ms``, the newest window end of the input."""

    def __init__(self, slo_file: SloFile, clock, grid: tuple[int, int] | None):
        self._slos = slo_file.slos
        self._clock = clock
        self._grid = grid

    def process(self, element, frontier_ms=None):
        slice_name, rows = element
        slos = [slo for slo in self._slos if slo.covers(slice_name)]
        # in pane order: the kernel keeps the last row it is given for each window
        panes = sorted(rows, key=lambda row: row["pane_index"])
        groups = [([s for s in slos if s.sli != "traffic"], panes)]
        traffic = [s for s in slos if s.sli == "traffic"]
        if traffic:
            window_ms, period_ms = self._grid
            ends = np.array([epoch_ms(r["window_end"]) for r in panes], np.int64)
            for retire_s in sorted({s.retire_after_s for s in traffic}):
                zeros = zero_window_ends(ends, period_ms, frontier_ms, retire_s * 1000)
                silent = [zero_row(slice_name, int(e), window_ms) for e in zeros]
                group = [s for s in traffic if s.retire_after_s == retire_s]
                groups.append((group, panes + silent))
        for group, group_rows in (g for g in groups if g[0]):
            for _, transitions, statuses in evaluate_slice(group, slice_name, group_rows):
                yield from _emit(transitions, statuses, self._clock)


class _EvaluateStreaming(EvaluateAtEveryPane):
    """Unbounded: one evaluator per (SLO, slice) in state, updated at every pane.

    A traffic SLO's key also holds the slice's silence state (:class:`LiveSlice`): its
    rows wait in ``pending`` until the ``silence`` timer at their window's end (the
    watermark has passed it), where each window of the grid is evaluated in order, with
    its rows or a zero row; heartbeats (``{heartbeat_ms: end}``) bring the input frontier.
    """

    TAGS = (ALERTS, STATUS)
    EVALUATOR, WATERMARK = EvaluateAtEveryPane.EVALUATOR, EvaluateAtEveryPane.WATERMARK
    END = userstate.TimerSpec("end_of_input", userstate.TimeDomain.WATERMARK)
    NEXT = userstate.ReadModifyWriteStateSpec("next_ms", coders.VarIntCoder())
    LAST_REAL = userstate.ReadModifyWriteStateSpec("last_real_ms", coders.VarIntCoder())
    FRONTIER = userstate.ReadModifyWriteStateSpec("frontier_ms", coders.VarIntCoder())
    PENDING = userstate.BagStateSpec("pending", PendingRowsCoder())
    SILENCE = userstate.TimerSpec("silence", userstate.TimeDomain.WATERMARK)

    def __init__(self, slo_file: SloFile, clock, grid: tuple[int, int] | None = None):
        super().__init__(clock)
        self._slos = {s.name: s for s in slo_file.slos}
        self._grid = grid

    def new_evaluator(self, key):
        name, slice_name = key
        return SloEvaluator(self._slos[name], slice_name)

    def _live(self, slo, *cells) -> LiveSlice:
        """The silence state of a traffic key over its cells (next, last real, frontier,
        pending) and its ``silence`` timer."""
        *cells, timer = cells
        named = dict(zip(("next_ms", "last_real_ms", "frontier_ms", "pending"), cells, strict=True))
        retire_ms = slo.retire_after_s * 1000
        return LiveSlice(named, TimerMs(timer), self._grid[1], retire_ms)

    def process(
        self,
        element,
        evaluator_state=beam.DoFn.StateParam(EVALUATOR),
        watermark_state=beam.DoFn.StateParam(WATERMARK),
        end=beam.DoFn.TimerParam(END),
        next_ms=beam.DoFn.StateParam(NEXT),
        last_real=beam.DoFn.StateParam(LAST_REAL),
        frontier=beam.DoFn.StateParam(FRONTIER),
        pending=beam.DoFn.StateParam(PENDING),
        silence=beam.DoFn.TimerParam(SILENCE),
    ):
        key, row = element
        end.set(GlobalWindow().max_timestamp())
        slo, beat = self._slos[key[0]], HEARTBEAT in row
        watermark = watermark_state.read() if beat else advance_watermark(row, watermark_state)
        if slo.sli == "traffic":  # heartbeats and rows of windows not done yet wait
            live = self._live(slo, next_ms, last_real, frontier, pending, silence)
            if not live.take(row, None if beat else epoch_ms(row["window_end"])):
                return
        yield from self.evaluate(key, [window_row(slo, row)], watermark, evaluator_state)

    def _silent_windows(self, key, passed_ms, states):
        """Traffic: evaluates the windows done once the watermark passed ``passed_ms``."""
        (name, slice_name), (evaluator_state, watermark_state, *cells) = key, states
        slo = self._slos[name]
        live = self._live(slo, *cells)
        rows = live.done(passed_ms, lambda r: epoch_ms(r["window_end"]), self._grid[0], slice_name)
        if not rows:
            return
        proven = max(epoch_ms(rows[-1]["window_end"]), watermark_state.read() or 0)
        watermark_state.write(proven)
        yield from self.evaluate(key, [window_row(slo, r) for r in rows], proven, evaluator_state)

    @userstate.on_timer(SILENCE)
    def silence(
        self,
        key=beam.DoFn.KeyParam,
        timestamp=beam.DoFn.TimestampParam,
        evaluator_state=beam.DoFn.StateParam(EVALUATOR),
        watermark_state=beam.DoFn.StateParam(WATERMARK),
        next_ms=beam.DoFn.StateParam(NEXT),
        last_real=beam.DoFn.StateParam(LAST_REAL),
        frontier=beam.DoFn.StateParam(FRONTIER),
        pending=beam.DoFn.StateParam(PENDING),
        silence=beam.DoFn.TimerParam(SILENCE),
    ):
        """A traffic key's next grid window is done: evaluates it (and any after it the
        watermark has passed), a zero row for a window without rows."""
        states = (evaluator_state, watermark_state, next_ms, last_real, frontier, pending, silence)
        yield from self._silent_windows(key, timestamp.micros // 1000, states)

    @userstate.on_timer(END)
    def end_of_input(
        self,
        key=beam.DoFn.KeyParam,
        evaluator_state=beam.DoFn.StateParam(EVALUATOR),
        watermark_state=beam.DoFn.StateParam(WATERMARK),
        next_ms=beam.DoFn.StateParam(NEXT),
        last_real=beam.DoFn.StateParam(LAST_REAL),
        frontier=beam.DoFn.StateParam(FRONTIER),
        pending=beam.DoFn.StateParam(PENDING),
        silence=beam.DoFn.TimerParam(SILENCE),
    ):
        """The input has ended (a replay, a drained job): every window is closed, so the
        windows waiting for their watermark (label_freshness, nan_rate, traffic) are judged."""
        if self._slos[key[0]].sli == "traffic":
            states = (evaluator_state, watermark_state, next_ms, last_real, frontier, pending)
            yield from self._silent_windows(key, math.inf, (*states, silence))
        if evaluator_state.read() is not None:
            yield from self.evaluate(key, None, None, evaluator_state, resend=False)


class EvaluateSlos(beam.PTransform):
    """Metrics rows -> ``{alerts, slo_status, resend}`` PCollections of row dicts.

    Args:
        slo_file: the validated SLO file (``--slo``).
        bounded: bounded input (history at the end) or unbounded (at every pane).
        clock: the UTC ``emitted_at`` clock (inject a fixed one in tests).
        window_seconds, every_seconds: the metrics window grid (``--window``,
            ``--every``; None: fixed windows), needed by traffic SLOs (zero rows).

    Raises:
        ValueError: traffic SLOs without the grid, or a trailing span too short for it.
    """

    def __init__(
        self,
        slo_file: SloFile,
        bounded: bool,
        clock: Callable[[], datetime.datetime],
        window_seconds: int | None = None,
        every_seconds: int | None = None,
    ):
        super().__init__()
        self._slo_file = slo_file
        self._bounded = bounded
        self._clock = clock
        self._grid = grid_ms(slo_file, window_seconds, every_seconds)

    def expand(self, metrics):
        tags = (ALERTS, STATUS, RESEND)
        if not self._bounded and self._grid is None:  # keyed by (slo, slice)
            return evaluate_per_key(
                metrics,
                RouteBySlice(functools.partial(_keys, self._slo_file.slos)),
                None,  # no history: the streaming DoFn evaluates at every pane
                _EvaluateStreaming(self._slo_file, self._clock),
                tags,
                False,
                "GroupBySloSlice",
            )
        rows = metrics | "GlobalWindow" >> beam.WindowInto(beam.window.GlobalWindows())
        if not self._bounded:
            return self._streaming_with_traffic(rows, tags)
        side = ()
        if self._grid is not None:
            newest = (
                rows
                | "WindowEnds" >> beam.Map(lambda row: epoch_ms(row["window_end"]))
                | "InputFrontier" >> beam.CombineGlobally(newest_end)
            )
            side = (beam.pvalue.AsSingleton(newest),)
        evaluated = (
            rows
            | "RouteBySlice"
            >> beam.ParDo(
                RouteBySlice(functools.partial(_group, self._slo_file.slos))
            ).with_output_types(
                typing.Tuple[str, typing.Dict[str, typing.Any]]  # noqa: UP006
            )
            | "GroupBySlice" >> beam.GroupByKey()
            | "History"
            >> beam.ParDo(
                _EvaluateHistory(self._slo_file, self._clock, self._grid), *side
            ).with_outputs(*tags)
        )
        return {tag: evaluated[tag] for tag in tags}

    def _streaming_with_traffic(self, rows, tags):
        """Unbounded with traffic SLOs: the routed rows and the heartbeats, one stateful
        evaluation per (SLO, slice)."""
        traffic = [s for s in self._slo_file.slos if s.sli == "traffic"]
        route = RouteBySlice(functools.partial(_keys, self._slo_file.slos))
        keyed = rows | "Route" >> beam.ParDo(route).with_output_types(KEY_TYPE)
        beats = (
            rows
            | "RouteFrontier" >> beam.ParDo(RouteFrontier(traffic)).with_output_types(KEY_TYPE)
            | "Heartbeats"
            >> beam.ParDo(Heartbeats(traffic, self._grid[1])).with_output_types(KEY_TYPE)
        )
        evaluated = (
            (keyed, beats)
            | "WithHeartbeats" >> beam.Flatten().with_output_types(KEY_TYPE)
            | "AtEveryPane"
            >> beam.ParDo(_EvaluateStreaming(self._slo_file, self._clock, self._grid)).with_outputs(
                *tags
            )
        )
        return {tag: evaluated[tag] for tag in tags}
