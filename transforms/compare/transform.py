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
import functools
import typing
from collections.abc import Callable

import apache_beam as beam

from msewatch.transforms.compare.kernel import ComparisonEvaluator, evaluate_history
from msewatch.transforms.compare.spec import VERSION_KEY, Comparison
from msewatch.transforms.keyed_evaluation import (
    ALERTS,
    RESEND,
    EvaluateAtEveryPane,
    RouteBySlice,
    emit,
    evaluate_per_key,
)
from msewatch.transforms.metrics.slices import parse_slice_name, slice_name

COMPARISONS = "comparisons"


def _version_and_rest(name: str) -> tuple[str | None, str]:
    """A slice name -> its model_version (None without one) and the rest of the slice."""
    pairs = parse_slice_name(name)
    return dict(pairs).get(VERSION_KEY), slice_name(tuple(p for p in pairs if p[0] != VERSION_KEY))


def _fed(comparisons, version: str | None, rest: str) -> list[Comparison]:
    """The comparisons a row of ``version`` and slice ``rest`` feeds."""
    if version is None:
        return []
    return [c for c in comparisons if version in (c.baseline, c.candidate) and c.covers(rest)]


def _keys(comparisons, name: str) -> list[tuple[str, str]]:
    """Unbounded: the ``(comparison, slice)`` keys a row of slice ``name`` feeds."""
    version, rest = _version_and_rest(name)
    return [(c.name, rest) for c in _fed(comparisons, version, rest)]


def _group(comparisons, name: str) -> list[str]:
    """Bounded: the rest of slice ``name`` (its group), when the row feeds a comparison."""
    version, rest = _version_and_rest(name)
    return [rest] if _fed(comparisons, version, rest) else []


def _emit(results, transitions, clock):
    return emit(clock, ((COMPARISONS, results), (ALERTS, transitions)))


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


class _EvaluateStreaming(EvaluateAtEveryPane):
    """Unbounded: one evaluator per (comparison, slice) in state, updated at every pane."""

    TAGS = (COMPARISONS, ALERTS)

    def __init__(self, comparisons, clock):
        super().__init__(clock)
        self._comparisons = {c.name: c for c in comparisons}

    def new_evaluator(self, key):
        name, rest = key
        return ComparisonEvaluator(self._comparisons[name], rest)


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
                RouteBySlice(functools.partial(_keys, self._comparisons)),
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
            >> beam.ParDo(
                RouteBySlice(functools.partial(_group, self._comparisons))
            ).with_output_types(
                typing.Tuple[str, typing.Dict[str, typing.Any]]  # noqa: UP006
            )
            | "GroupBySlice" >> beam.GroupByKey()
            | "History" >> beam.ParDo(history).with_outputs(*tags)
        )
        return {tag: evaluated[tag] for tag in tags}
