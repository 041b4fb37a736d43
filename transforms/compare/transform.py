"""Comparisons in the pipeline: :class:`CompareVersions`, metrics rows -> comparisons, alerts.

Time: the input rows are ``metrics`` panes, whose windows are event-time windows of
the predictions (UTC). A row of a baseline's or candidate's slice
(``model_version=v2,region=eu``) feeds every comparison of that pair covering the rest
of its slice (``region=eu``); the evaluation (label gate, frontier, statistics,
decisions, alert state) is :mod:`msewatch.transforms.compare.kernel`, in the global
window.

* Bounded input: each row is keyed by the rest of its slice, once, whatever the
  number of comparisons; one ``GroupByKey`` hands each such slice its panes, and
  every comparison covering it reads those of its two versions, in event-time order
  (memory follows rows + comparisons, not rows x comparisons); ``watermark`` is null.
* Unbounded input: the row is routed to each of those comparisons and keyed by
  ``(comparison, slice)``; a stateful DoFn keeps one
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
import typing
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


def _version_and_rest(name: str) -> tuple[str | None, str]:
    """A slice name -> its model_version (None without one) and the rest of the slice."""
    pairs = parse_slice_name(name)
    return dict(pairs).get(VERSION_KEY), slice_name(tuple(p for p in pairs if p[0] != VERSION_KEY))


def _fed(comparisons, version: str | None, rest: str) -> list[Comparison]:
    """The comparisons a row of ``version`` and slice ``rest`` feeds."""
    if version is None:
        return []
    return [c for c in comparisons if version in (c.baseline, c.candidate) and c.covers(rest)]


class _Route(beam.DoFn):
    """Unbounded: metrics row -> ``((comparison, slice), row)`` for every comparison it feeds."""

    def __init__(self, comparisons: tuple[Comparison, ...]):
        self._comparisons = comparisons

    def process(self, row: dict):
        version, rest = _version_and_rest(row["slice"])
        for c in _fed(self._comparisons, version, rest):
            yield (c.name, rest), row


class _RouteBySlice(beam.DoFn):
    """Bounded: metrics row -> ``(rest of its slice, row)`` once, when it feeds a comparison."""

    def __init__(self, comparisons: tuple[Comparison, ...]):
        self._comparisons = comparisons
        self._feeds: dict[str, tuple[str, bool]] = {}  # slice -> (rest, feeds one)

    def process(self, row: dict):
        name = row["slice"]
        if name not in self._feeds:
            version, rest = _version_and_rest(name)
            self._feeds[name] = (rest, bool(_fed(self._comparisons, version, rest)))
        rest, feeds = self._feeds[name]
        if feeds:
            yield rest, row


def _emit(results, transitions, clock):
    now = clock()
    for r in results:
        yield TaggedOutput(COMPARISONS, r.as_row(now))
    for t in transitions:
        yield TaggedOutput(ALERTS, t.as_row(now))


class _EvaluateHistory(beam.DoFn):
    """Bounded: all panes of one slice (without model_version) -> every comparison
    covering it, each reading the panes of its two versions in event-time order."""

    def __init__(self, comparisons, clock):
        self._comparisons = tuple(comparisons)
        self._clock = clock

    def process(self, element):
        rest, rows = element
        by_version: dict[str, list[dict]] = {}
        for row in sorted(rows, key=lambda row: row["pane_index"]):  # the last pane wins
            by_version.setdefault(_version_and_rest(row["slice"])[0], []).append(row)
        for c in self._comparisons:
            if c.covers(rest) and (c.baseline in by_version or c.candidate in by_version):
                panes = by_version.get(c.baseline, []) + by_version.get(c.candidate, [])
                yield from _emit(*evaluate_history(c, rest, panes), self._clock)


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
        tags = (COMPARISONS, ALERTS, RESEND)
        if not self._bounded:  # keyed by (comparison, slice): one small state cell per key
            return evaluate_per_key(
                metrics,
                _Route(self._comparisons),
                None,  # no history: the streaming DoFn evaluates at every pane
                _EvaluateStreaming(self._comparisons, self._clock),
                tags,
                False,
                "GroupByComparisonSlice",
            )
        history = _EvaluateHistory(self._comparisons, self._clock)
        evaluated = (
            metrics
            | "GlobalWindow" >> beam.WindowInto(beam.window.GlobalWindows())
            | "RouteBySlice"
            >> beam.ParDo(_RouteBySlice(self._comparisons)).with_output_types(
                typing.Tuple[str, typing.Dict[str, typing.Any]]  # noqa: UP006
            )
            | "GroupBySlice" >> beam.GroupByKey()
            | "History" >> beam.ParDo(history).with_outputs(*tags)
        )
        return {tag: evaluated[tag] for tag in tags}
