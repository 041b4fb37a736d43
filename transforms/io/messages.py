"""What the message sources (Pub/Sub, Kafka) share: one JSON record per message, parsed
a batch at a time: :func:`batch_and_parse`.

Each source turns its messages into ``(shard, Message)`` pairs (the shard a hash of the
message's identity); :func:`batch_and_parse` groups them per shard with
``GroupIntoBatches`` (a batch is emitted at ``max_batch`` messages or
``max_buffering_seconds`` of processing time after its first message) and parses each
batch into one Arrow records batch and one dead-letter batch with
:func:`msewatch.transforms.parse.pubsub_messages.parse_json_messages`, the rules of
files.

Time (UTC): a prediction's time is its ``event_time``; a label's is its ``label_time``
or, when absent, the message's broker time (Pub/Sub publish time, Kafka record
timestamp). Parsed batches are re-stamped with the earliest record time they hold
(dead-letter batches with the earliest broker time); the join keys on the times inside
the batch, in the global window.

Ingest position of message ``i`` of a batch: (broker ms of the batch's first message
``<< SEQUENCE_BITS``) + i: it follows arrival across the batches of a shard, is unique
within a batch, and fits an int64 until the year 2248.
"""

# No ``from __future__ import annotations``: Beam infers Message's Row schema from its
# annotations, and as strings they become "any" fields that Java's runners cannot decode.
import zlib
from collections.abc import Mapping
from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.utils.timestamp import Timestamp

from msewatch.schemas.records import DEAD_LETTER_TAG, RecordType
from msewatch.transforms.parse.pubsub_messages import parse_json_messages

SEQUENCE_BITS = 20
MAX_BATCH_LIMIT = 1 << SEQUENCE_BITS


class Message(NamedTuple):
    """One broker message, reduced to what parsing needs (Row-coded, not pickled).

    Attributes:
        payload: the message body (one JSON record).
        message_id: the broker's id (Pub/Sub message id; Kafka ``topic/partition/offset``).
        attributes: copied to dead letters (Pub/Sub attributes; Kafka topic, partition,
            offset).
        publish_time_ms: broker time, UTC epoch ms (the default label_time).
    """

    payload: bytes
    message_id: str
    attributes: Mapping[str, str]
    publish_time_ms: int


beam.coders.registry.register_coder(Message, beam.coders.RowCoder)


def shard_of(identity: bytes, shards: int) -> str:
    """The batching key of a message: a stable hash of its identity, ``000`` to ``shards-1``."""
    return f"{zlib.crc32(identity) % shards:03d}"


def stamped(table: pa.Table, time_ms) -> beam.window.TimestampedValue:
    """``table`` with the element timestamp ``time_ms`` (UTC epoch ms)."""
    return beam.window.TimestampedValue(table, Timestamp(micros=int(time_ms) * 1000))


class ParseMessageBatch(beam.DoFn):
    """``(shard, [Message])`` -> one records batch and one dead-letter batch.

    Args:
        record_type: ``"prediction"`` or ``"label"``.
        source: the subscription or topic, copied to dead letters.
        segment_keys: segment attributes of predictions to keep.
        counter_prefix: names the counters (``<prefix>_<record_type>_messages``).
        features: feature names of predictions to keep.
    """

    def __init__(
        self,
        record_type: str,
        source: str,
        segment_keys: tuple[str, ...],
        counter_prefix: str = "pubsub",
        features: tuple[str, ...] = (),
    ):
        self._record_type = record_type
        self._source = source
        self._segment_keys = segment_keys
        self._features = features
        name = f"{counter_prefix}_{record_type}"
        self._messages = Metrics.counter("msewatch", f"{name}_messages")
        self._invalid = Metrics.counter("msewatch", f"{name}_invalid")
        self._batch_size = Metrics.distribution("msewatch", f"{name}_batch")

    def process(self, element):
        _, messages = element
        messages = list(messages)
        if not messages:
            return
        publish_ms = [m.publish_time_ms for m in messages]
        records, dead = parse_json_messages(
            [m.payload for m in messages],
            self._record_type,
            self._source,
            base_sequence=publish_ms[0] << SEQUENCE_BITS,
            segment_keys=self._segment_keys,
            message_ids=[m.message_id or None for m in messages],
            attributes=[dict(m.attributes) for m in messages],
            publish_time_ms=publish_ms,
            features=self._features,
        )
        self._messages.inc(len(messages))
        self._batch_size.update(len(messages))
        if records.num_rows:
            time_column = RecordType.of(self._record_type).time_column
            yield stamped(records, records.column(time_column).to_numpy().min())
        if dead.num_rows:
            self._invalid.inc(dead.num_rows)
            yield TaggedOutput(DEAD_LETTER_TAG, stamped(dead, min(publish_ms)))


def check_batching(max_batch: int, max_buffering_seconds: float) -> None:
    """Raises ValueError unless 1 <= max_batch <= 2**20 and max_buffering_seconds > 0."""
    if not 1 <= max_batch <= MAX_BATCH_LIMIT:
        raise ValueError(f"max_batch must be between 1 and {MAX_BATCH_LIMIT}; got {max_batch}")
    if not max_buffering_seconds > 0:
        raise ValueError(f"max_buffering_seconds must be > 0; got {max_buffering_seconds}")


def batch_and_parse(
    messages, parse: ParseMessageBatch, max_batch: int, max_buffering_seconds: float
) -> dict:
    """``(shard, Message)`` -> ``{"records", "dead_letter"}`` Arrow batches.

    Applies the steps ``Batch`` (GroupIntoBatches per shard) and ``Parse`` in the
    caller's composite, so their labels stay the source's own (labels are API).
    The sources check ``max_batch`` and ``max_buffering_seconds`` when constructed
    (:func:`check_batching`).
    """
    batches = messages | "Batch" >> beam.GroupIntoBatches(
        max_batch, max_buffering_duration_secs=max_buffering_seconds
    )
    parsed = batches | "Parse" >> beam.ParDo(parse).with_outputs(DEAD_LETTER_TAG, main="records")
    return {"records": parsed.records, DEAD_LETTER_TAG: parsed[DEAD_LETTER_TAG]}
