"""Comparisons in the pipeline: :class:`CompareVersions`, metrics rows -> comparisons, alerts.

Time: the input rows are ``metrics`` panes, whose windows are event-time windows of
the predictions (UTC). A row of a baseline's or candidate's slice
(``model_version=v2,region=eu``) is routed to every comparison of that pair covering
the rest of its slice (``region=eu``) and keyed by ``(comparison, slice)``; the
evaluation (label gate, frontier, statistics, decisions, alert state) is
:mod:`msewatch.transforms.compare.kernel`, in the global window.

* Bounded input: one ``GroupByKey`` hands each key its panes, evaluated at every
  counted window end in event-time order; ``watermark`` is null.
* Unbounded input: a stateful DoFn keeps one
  :class:`~msewatch.transforms.compare.kernel.ComparisonEvaluator` per key and
  updates it at every pane, so a FAIL fires at the pane that makes it; ``watermark``
  is the largest window end of an ON_TIME or LATE pane the key has seen (the lower
  bound the panes prove, as in the SLO stage).

Outputs: ``comparisons`` rows (one per evaluation), ``alerts`` rows (FAIL fires,
PASS resolves) and ``resend`` (streaming: the alert while it fires, for
Alertmanager).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

import apache_beam as beam
from apache_beam import coders
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms import userstate

from msewatch.transforms.compare.kernel import ComparisonEvaluator, evaluate_history
from msewatch.transforms.compare.spec import VERSION_KEY, Comparison
from msewatch.transforms.keyed_evaluation import (
    RESEND,
    advance_watermark,
    evaluate_per_key,
    resends,
)
from msewatch.transforms.metrics.slices import parse_slice_name, slice_name

COMPARISONS, ALERTS = "comparisons", "alerts"


class _Route(beam.DoFn):
    """Metrics row -> ``((comparison, slice), row)`` for every comparison it feeds."""

    def __init__(self, comparisons: tuple[Comparison, ...]):
        self._comparisons = comparisons

    def process(self, row: dict):
        pairs = parse_slice_name(row["slice"])
        version = dict(pairs).get(VERSION_KEY)
        if version is None:
            return
        rest = slice_name(tuple(p for p in pairs if p[0] != VERSION_KEY))
        for c in self._comparisons:
            if version in (c.baseline, c.candidate) and c.covers(rest):
                yield (c.name, rest), row


def _emit(results, transitions, clock):
    now = clock()
    for r in results:
        yield TaggedOutput(COMPARISONS, r.as_row(now))
    for t in transitions:
        yield TaggedOutput(ALERTS, t.as_row(now))


class _EvaluateHistory(beam.DoFn):
    """Bounded: all panes of one (comparison, slice), evaluated in event-time order."""

    def __init__(self, comparisons, clock):
        self._comparisons = {c.name: c for c in comparisons}
        self._clock = clock

    def process(self, element):
        (name, rest), rows = element
        panes = sorted(rows, key=lambda row: row["pane_index"])
        yield from _emit(*evaluate_history(self._comparisons[name], rest, panes), self._clock)


class _EvaluatorCoder(coders.PickleCoder):
    """Pickles the evaluator (the windows of one lookback, the alert state)."""


class _EvaluateStreaming(beam.DoFn):
    """Unbounded: one evaluator per (comparison, slice) in state, updated at every pane."""

    EVALUATOR = userstate.ReadModifyWriteStateSpec("evaluator", _EvaluatorCoder())
    WATERMARK = userstate.ReadModifyWriteStateSpec("watermark_ms", coders.VarIntCoder())

    def __init__(self, comparisons, clock):
        self._comparisons = {c.name: c for c in comparisons}
        self._clock = clock

    def process(
        self,
        element,
        evaluator_state=beam.DoFn.StateParam(EVALUATOR),
        watermark_state=beam.DoFn.StateParam(WATERMARK),
    ):
        (name, rest), row = element
        evaluator = evaluator_state.read() or ComparisonEvaluator(self._comparisons[name], rest)
        watermark = advance_watermark(row, watermark_state)
        results, transitions = evaluator.update([row], watermark_ms=watermark)
        evaluator_state.write(evaluator)
        yield from _emit(results, transitions, self._clock)
        for row in resends(evaluator.firing(), transitions, self._clock()):
            yield TaggedOutput(RESEND, row)


class CompareVersions(beam.PTransform):
    """Metrics rows -> ``{comparisons, alerts, resend}`` PCollections of row dicts.

    Args:
        comparisons: the SLO file's comparisons.
        bounded: bounded input (history at the end) or unbounded (at every pane).
        clock: the UTC ``emitted_at`` clock (inject a fixed one in tests).
    """

    def __init__(
        self,
        comparisons: tuple[Comparison, ...],
        bounded: bool,
        clock: Callable[[], datetime.datetime],
    ):
        super().__init__()
        self._comparisons = tuple(comparisons)
        self._bounded = bounded
        self._clock = clock

    def expand(self, metrics):
        return evaluate_per_key(
            metrics,
            _Route(self._comparisons),
            _EvaluateHistory(self._comparisons, self._clock),
            _EvaluateStreaming(self._comparisons, self._clock),
            (COMPARISONS, ALERTS, RESEND),
            self._bounded,
            "GroupByComparisonSlice",
        )
