"""Stateful join of predictions and labels: :class:`JoinPredictionsAndLabels`.

Time: the join runs in the **global window** (Beam state is per key *and* window).
Predictions carry their ``event_time`` and labels their ``label_time`` (UTC) as
element timestamps. The join uses one **event-time timer** per shard, set to the
shard's next deadline on the expiry grid (``JoinConfig.timer_grid_ms``: a prediction
made in a grid cell expires at the cell's end + ``label_ttl``; a waiting label's
``label_time + orphan_ttl`` rounds up to the grid; a shard holding only tombstones
fires once, when the last can be forgotten); when the watermark passes it, expired
predictions are emitted as EXPIRED examples and orphan labels counted.
Every example it emits carries the *prediction's* event time (in the
``event_time_ms`` column; the metrics stage stamps elements from it), so a label
that arrives after the watermark has passed its prediction's window produces late
data for that window, which the metrics stage turns into a LATE pane.

Records move in Arrow batches. Each batch is split by a stable 64-bit hash of
``prediction_id`` into ``shards`` keys (``str``, deterministic coder), so every model
version's prediction of an id meets the id's label in one shard; the stateful DoFn
keeps a shard's :class:`~msewatch.transforms.join.kernel.ShardState` in three state
cells (pending predictions, waiting labels, tombstones; ``state.py``) and joins a
whole batch at once with the vectorized kernel in ``kernel.py``. A prediction is a
``(prediction_id, model_version)`` pair: shadow predictions of one id from several
versions are each scored by the id's label (which is ``joined`` once), and the
LABELED examples one label scores in a batch or at the end of input come out in one
``examples`` batch, each with its ``prediction_id``.

Bounded mode (``bounded=True``): no state. The records are spilled to files by hash
bucket of ``prediction_id``, the file names grouped by bucket, and each bucket joined
at once with first-wins by event/label time and ingest position
(``spill.py``, ``bounded.resolve_bounded``), so memory does not grow with the input.

Outcome counts are data: the ``outcomes`` output carries one dict per batch or timer
firing with ``prediction_valid`` and ``label_valid`` (records that entered the join)
and ``prediction_joined``, ``prediction_expired``, ``prediction_duplicate``,
``label_joined``, ``label_late``, ``label_orphan``, ``label_duplicate``. The same
numbers go to Beam counters (namespace ``msewatch``) for runner UIs, and
``join_state_rows`` is a distribution of the shard state size after each batch.
(Counters are not relied on: the streaming DirectRunner loses some of them.)
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.utils.timestamp import Timestamp

from msewatch.schemas.records import LABELS
from msewatch.transforms.join import kernel as join_kernel
from msewatch.transforms.join import spill
from msewatch.transforms.join import state as join_state
from msewatch.transforms.join.conflicts import JOIN_DETAILS
from msewatch.transforms.join.kernel import JoinConfig
from msewatch.transforms.join.matching import shard_of, split_by_shard

__all__ = ["JoinConfig", "JoinPredictionsAndLabels", "shard_of"]

OUTCOMES_TAG = "outcomes"
_PRED = spill.PREDICTIONS_SIDE
_LABEL = spill.LABELS_SIDE
_COUNTERS = {
    name: beam.metrics.Metrics.counter("msewatch", name)
    for name in (*join_kernel.JOIN_COUNTERS, *JOIN_DETAILS)
}
_STATE_ROWS = beam.metrics.Metrics.distribution("msewatch", "join_state_rows")


class _KeyByShard(beam.DoFn):
    """Splits a batch into one sub-batch per shard: ``(shard_key, (tag, table))``.

    Keeps the batch's row order inside each shard (arrival order in streaming).
    """

    def __init__(self, tag: str, shards: int):
        self._tag = tag
        self._shards = shards

    def process(self, table: pa.Table):
        for shard, rows in split_by_shard(table, self._shards):
            yield f"{shard:04d}", (self._tag, rows)


def _count(counts: dict[str, int], valid_predictions: int = 0, valid_labels: int = 0):
    """Counter updates and the ``outcomes`` element of one batch or firing."""
    counts = dict(counts, prediction_valid=valid_predictions, label_valid=valid_labels)
    for name, n in counts.items():
        if n and name in _COUNTERS:
            _COUNTERS[name].inc(n)
    nonzero = {k: v for k, v in counts.items() if v}
    if nonzero:
        yield beam.pvalue.TaggedOutput(OUTCOMES_TAG, nonzero)


def _split(batches, config: JoinConfig):
    preds = [t for tag, t in batches if tag == _PRED]
    labels = [t for tag, t in batches if tag == _LABEL]
    return (
        join_kernel.concat_tables(preds, config.prediction_schema),
        join_kernel.concat_tables(labels, LABELS),
    )


class _StreamingJoinDoFn(beam.DoFn):
    """Joins each arriving batch against the shard's pending state; one timer per shard.

    The state is three cells (``state.py``); a batch or firing writes only those it changed.
    """

    PREDS, LABELS, TOMBS = join_state.CELLS
    EXPIRY = userstate.TimerSpec("expiry", TimeDomain.WATERMARK)

    def __init__(self, config: JoinConfig):
        self._config = config

    def process(
        self,
        element=beam.DoFn.ElementParam,
        preds_cell=beam.DoFn.StateParam(PREDS),
        labels_cell=beam.DoFn.StateParam(LABELS),
        tombs_cell=beam.DoFn.StateParam(TOMBS),
        expiry=beam.DoFn.TimerParam(EXPIRY),
    ):
        _, (tag, table) = element
        preds, labels = _split([(tag, table)], self._config)
        cells = (preds_cell, labels_cell, tombs_cell)
        shard, raw = join_state.read_shard(cells, self._config)
        shard, examples, counts = join_kernel.step(shard, preds, labels, self._config)
        yield from _count(counts, preds.num_rows, labels.num_rows)
        yield from self._finish(shard, raw, examples, cells, expiry)

    @userstate.on_timer(EXPIRY)
    def on_expiry(
        self,
        fire_ts=beam.DoFn.TimestampParam,
        preds_cell=beam.DoFn.StateParam(PREDS),
        labels_cell=beam.DoFn.StateParam(LABELS),
        tombs_cell=beam.DoFn.StateParam(TOMBS),
        expiry=beam.DoFn.TimerParam(EXPIRY),
    ):
        cells = (preds_cell, labels_cell, tombs_cell)
        shard, raw = join_state.read_shard(cells, self._config)
        now_ms = fire_ts.micros // 1000
        shard, examples, counts = join_kernel.expire(shard, now_ms, self._config)
        yield from _count(counts)
        yield from self._finish(shard, raw, examples, cells, expiry)

    def _finish(self, shard, raw, examples, cells, expiry):
        _STATE_ROWS.update(shard.size)
        join_state.write_shard(cells, raw, shard)
        deadline = join_kernel.next_deadline_ms(shard, self._config)
        if deadline is not None:
            expiry.set(Timestamp(micros=deadline * 1000))
        if examples.num_rows:
            yield examples


class JoinPredictionsAndLabels(beam.PTransform):
    """Joins prediction batches with label batches by prediction_id.

    Input: a dict ``{"predictions": PCollection[pa.Table], "labels":
    PCollection[pa.Table]}`` of valid records (see ``schemas/records.py``).
    Output: a dict with ``examples``, a ``PCollection[pa.Table]`` of EXAMPLES
    batches (ARRIVED, LABELED and EXPIRED rows) in the global window, and
    ``outcomes``, a ``PCollection[dict[str, int]]`` of outcome counts. See the module
    docstring for time semantics.
    """

    def __init__(
        self,
        config: JoinConfig,
        bounded: bool,
        spill_folder: str | None = None,
        spill_buckets: int | None = None,
    ):
        super().__init__()
        self._config = config
        self._bounded = bounded
        self._spill_folder = spill_folder
        self._spill_buckets = spill_buckets or config.shards

    def expand(self, pcolls: dict):
        if self._bounded:
            return self._expand_bounded(pcolls)
        shards = self._config.shards
        keyed = beam.typehints.Tuple[str, beam.typehints.Tuple[str, pa.Table]]
        keyed_preds = pcolls["predictions"] | "KeyPredictionsByShard" >> beam.ParDo(
            _KeyByShard(_PRED, shards)
        ).with_output_types(keyed)
        keyed_labels = pcolls["labels"] | "KeyLabelsByShard" >> beam.ParDo(
            _KeyByShard(_LABEL, shards)
        ).with_output_types(keyed)
        joined = (
            (keyed_preds, keyed_labels)
            | "FlattenShards" >> beam.Flatten()
            | "JoinShards"
            >> beam.ParDo(_StreamingJoinDoFn(self._config))
            .with_input_types(keyed)
            .with_outputs(OUTCOMES_TAG, main="examples")
        )
        return {"examples": joined.examples, "outcomes": joined[OUTCOMES_TAG]}

    def _expand_bounded(self, pcolls: dict):
        """Spill by bucket, group the file names, join bucket by bucket (``spill.py``)."""
        folder = self._spill_folder or spill.local_folder()
        buckets = self._spill_buckets
        spilled = [
            pcolls[name]
            | f"Spill{name.title()}"
            >> beam.ParDo(spill.SpillToBuckets(side, folder, buckets)).with_output_types(
                spill.SpilledFile
            )
            for name, side in (("predictions", _PRED), ("labels", _LABEL))
        ]
        joined = (
            spilled
            | "FlattenSpills" >> beam.Flatten()
            | "GroupSpillsByBucket" >> beam.GroupByKey()
            | "JoinBuckets"
            >> beam.ParDo(spill.JoinBuckets(self._config, _count)).with_outputs(
                OUTCOMES_TAG, main="examples"
            )
        )
        return {"examples": joined.examples, "outcomes": joined[OUTCOMES_TAG]}
