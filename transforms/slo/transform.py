"""SLO evaluation in the pipeline: :class:`EvaluateSlos`, metrics rows -> alerts, slo_status.

Time: the input rows are ``metrics`` panes, whose windows are event-time windows of
the predictions (UTC). Each row is routed to every SLO covering its slice and keyed by
``(slo, slice)``; the evaluation itself (settling, frontier, burn rates, budget,
alert states) is :mod:`msewatch.transforms.slo.kernel`, in the global window.

* Bounded input: the latest pane of each window is known at the end; one
  ``GroupByKey`` hands each (SLO, slice) its windows and
  :func:`~msewatch.transforms.slo.kernel.evaluate_history` evaluates them in
  event-time order. ``watermark`` is null.
* Unbounded input: a stateful DoFn keeps one
  :class:`~msewatch.transforms.slo.kernel.SloEvaluator` per key and updates it at
  every pane, so an alert fires at the pane that settles (or spoils) its window.
  Beam does not show a DoFn its input watermark; the ``watermark`` recorded is the
  lower bound the panes prove: the largest window end of an ON_TIME or LATE pane
  seen by the key (the watermark has passed it). label_freshness and nan_rate
  windows settle against that bound, and, when the input ends (the end of a replay,
  a drained job), against the end of time: an event-time timer at the end of the
  global window evaluates every window still waiting, as a bounded run does.

Outputs: ``alerts`` rows (one per transition), ``slo_status`` rows, and ``resend``:
in streaming, every alert still firing after an update, for Alertmanager, which
forgets an alert it has not heard of for its ``resolve_timeout``.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

import apache_beam as beam
from apache_beam import coders
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms import userstate
from apache_beam.transforms.window import GlobalWindow

from msewatch.schemas.slo import epoch_ms
from msewatch.transforms.keyed_evaluation import (
    RESEND,
    advance_watermark,
    evaluate_per_key,
    resends,
)
from msewatch.transforms.slo.kernel import SloEvaluator, evaluate_history
from msewatch.transforms.slo.spec import SloFile

ALERTS, STATUS = "alerts", "slo_status"


def _entry(entries, key: str, value, field: str) -> float:
    """The ``field`` of the list entry whose ``key`` equals ``value`` (0 if absent)."""
    for entry in entries or ():
        if entry[key] == value:
            return entry[field]
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
    return out


class _Route(beam.DoFn):
    """Metrics row -> ``((slo, slice), row)`` for every SLO covering the slice; the key
    is a pair of str, so its coder is deterministic (state is keyed by it)."""

    def __init__(self, slo_file: SloFile):
        self._slos = slo_file.slos

    def process(self, row: dict):
        for slo in self._slos:
            if slo.covers(row["slice"]):
                yield (slo.name, row["slice"]), row


def _emit(transitions, statuses, clock):
    now = clock()
    for t in transitions:
        yield TaggedOutput(ALERTS, t.as_row(now))
    for s in statuses:
        yield TaggedOutput(STATUS, s.as_row(now))


class _EvaluateHistory(beam.DoFn):
    """Bounded: all windows of one (SLO, slice) -> its history, in event-time order."""

    def __init__(self, slo_file: SloFile, clock):
        self._slos = {s.name: s for s in slo_file.slos}
        self._clock = clock

    def process(self, element):
        (name, slice_name), rows = element
        slo = self._slos[name]
        # in pane order: the kernel keeps the last row it is given for each window
        panes = sorted(rows, key=lambda row: row["pane_index"])
        windows = [window_row(slo, row) for row in panes]
        yield from _emit(*evaluate_history(slo, slice_name, windows), self._clock)


class _EvaluatorCoder(coders.PickleCoder):
    """Pickles the evaluator (numpy arrays of one period of windows, alert states)."""


class _EvaluateStreaming(beam.DoFn):
    """Unbounded: one evaluator per (SLO, slice) in state, updated at every pane."""

    EVALUATOR = userstate.ReadModifyWriteStateSpec("evaluator", _EvaluatorCoder())
    WATERMARK = userstate.ReadModifyWriteStateSpec("watermark_ms", coders.VarIntCoder())
    END = userstate.TimerSpec("end_of_input", userstate.TimeDomain.WATERMARK)

    def __init__(self, slo_file: SloFile, clock):
        self._slos = {s.name: s for s in slo_file.slos}
        self._clock = clock

    def process(
        self,
        element,
        evaluator_state=beam.DoFn.StateParam(EVALUATOR),
        watermark_state=beam.DoFn.StateParam(WATERMARK),
        end=beam.DoFn.TimerParam(END),
    ):
        (name, slice_name), row = element
        end.set(GlobalWindow().max_timestamp())
        slo = self._slos[name]
        evaluator = evaluator_state.read() or SloEvaluator(slo, slice_name)
        watermark = advance_watermark(row, watermark_state)
        transitions, statuses = evaluator.update([window_row(slo, row)], watermark_ms=watermark)
        evaluator_state.write(evaluator)
        yield from _emit(transitions, statuses, self._clock)
        for row in resends(evaluator.firing(), transitions, self._clock()):
            yield TaggedOutput(RESEND, row)

    @userstate.on_timer(END)
    def end_of_input(self, key=beam.DoFn.KeyParam, evaluator_state=beam.DoFn.StateParam(EVALUATOR)):
        """The input has ended (a replay, a drained job): every window is closed, so the
        windows waiting for their watermark (label_freshness, nan_rate) are judged."""
        evaluator = evaluator_state.read()
        if evaluator is None:
            return
        transitions, statuses = evaluator.update(None, watermark_ms=None)
        evaluator_state.write(evaluator)
        yield from _emit(transitions, statuses, self._clock)


class EvaluateSlos(beam.PTransform):
    """Metrics rows -> ``{alerts, slo_status, resend}`` PCollections of row dicts.

    Args:
        slo_file: the validated SLO file (``--slo``).
        bounded: bounded input (history at the end) or unbounded (at every pane).
        clock: the UTC ``emitted_at`` clock (inject a fixed one in tests).
    """

    def __init__(self, slo_file: SloFile, bounded: bool, clock: Callable[[], datetime.datetime]):
        super().__init__()
        self._slo_file = slo_file
        self._bounded = bounded
        self._clock = clock

    def expand(self, metrics):
        return evaluate_per_key(
            metrics,
            _Route(self._slo_file),
            _EvaluateHistory(self._slo_file, self._clock),
            _EvaluateStreaming(self._slo_file, self._clock),
            (ALERTS, STATUS, RESEND),
            self._bounded,
            "GroupBySloSlice",
        )
