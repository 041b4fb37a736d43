"""The conservation table as data: :class:`CountOutcomes`.

Every input record ends in exactly one outcome (the conservation law, docs/semantics.md);
the vocabulary is :data:`msewatch.schemas.records.RECORD_OUTCOMES`:

* prediction: ``joined`` | ``expired`` | ``duplicate`` | ``invalid``
* label: ``joined`` | ``late_label`` | ``orphan_label`` | ``duplicate`` | ``invalid``

The join's counts arrive under its counter names and are mapped by
:data:`msewatch.transforms.join.kernel.JOIN_COUNTERS`; ``invalid`` comes from the
dead-letter batches.

The ``outcomes`` table holds rows ``(record_type, outcome, count, detail)``; ``input``
rows count the records read (valid records that entered the join plus invalid ones).
Rows are *deltas*: the totals are ``SUM(count) GROUP BY record_type, outcome``. A
``detail`` splits an outcome's count without adding to it: the join's
:data:`~msewatch.transforms.join.conflicts.JOIN_DETAILS` (``label``, ``duplicate``,
``conflicting``: a duplicate label whose ``y_true`` differs from the winner's) are
moved out of their outcome's ``detail = NULL`` row into their own. A
bounded run writes one row per outcome; a streaming run writes a row per outcome each
time the global-window trigger fires (every ``flush_seconds`` of processing time).
"""

from __future__ import annotations

import collections

import apache_beam as beam
import pyarrow.compute as pc

from msewatch.transforms.flush import flush_in_global_window
from msewatch.transforms.join.conflicts import JOIN_DETAILS
from msewatch.transforms.join.kernel import JOIN_COUNTERS


def _dead_letter_counts(table):
    """A dead-letter batch -> ``{(record_type, 'invalid'): n, (record_type, 'input'): n}``."""
    if table.num_rows == 0:
        return
    counts = pc.value_counts(table.column("record_type").combine_chunks())
    out = {}
    for item in counts.to_pylist():  # one entry per record type
        out[(item["values"], "invalid")] = item["counts"]
        out[(item["values"], "input")] = item["counts"]
    yield out


def _join_counts(counts: dict[str, int]) -> dict:
    """Join counts -> ``{(record_type, outcome): n, (record_type, outcome, detail): n}``."""
    out = {}
    for name, n in counts.items():
        if name.endswith("_valid"):
            out[(name.removesuffix("_valid"), "input")] = n
        elif name not in JOIN_DETAILS:
            out[JOIN_COUNTERS[name]] = out.get(JOIN_COUNTERS[name], 0) + n
    for name, key in JOIN_DETAILS.items():
        if counts.get(name):  # a subset of its outcome's count, moved to its own row
            out[key] = counts[name]
            out[key[:2]] = out.get(key[:2], 0) - counts[name]
    return out


class _SumCounts(beam.CombineFn):
    def create_accumulator(self):
        return collections.Counter()

    def add_input(self, acc, counts):
        acc.update(counts)
        return acc

    def merge_accumulators(self, accs):
        accs = iter(accs)
        total = collections.Counter(next(accs, {}))
        for acc in accs:
            total.update(acc)
        return total

    def extract_output(self, acc):
        return dict(acc)


def _rows(counts: dict):
    for (record_type, outcome, *detail), n in sorted(counts.items()):
        if n:  # an outcome whose records all moved to a detail has no NULL-detail row
            row = {"record_type": record_type, "outcome": outcome, "count": int(n)}
            yield {**row, "detail": detail[0] if detail else None}


class CountOutcomes(beam.PTransform):
    """``(join outcomes, dead-letter batches)`` -> ``outcomes`` rows (deltas).

    Args:
        streaming: fire repeatedly in the global window instead of once at the end.
        flush_seconds: processing time between streaming firings.
    """

    def __init__(self, streaming: bool, flush_seconds: int = 60):
        super().__init__()
        self._streaming = streaming
        self._flush_seconds = flush_seconds

    def expand(self, inputs):
        join_outcomes, dead_letter = inputs
        counts = (
            join_outcomes | "FromJoin" >> beam.Map(_join_counts),
            dead_letter | "FromDeadLetter" >> beam.FlatMap(_dead_letter_counts),
        ) | "FlattenCounts" >> beam.Flatten()
        if self._streaming:
            counts = counts | "FlushTrigger" >> flush_in_global_window(self._flush_seconds)
        return (
            counts
            | "Sum" >> beam.CombineGlobally(_SumCounts()).without_defaults()
            | "ToRows" >> beam.FlatMap(_rows)
        )
