"""Unbounded source: predictions and labels from Kafka topics, :class:`KafkaSource`.

Each Kafka record's value holds one JSON record (the fields of a JSON Lines line, see
the README, "Input records"); the key is ignored. The topics are read by Beam's Java
``KafkaIO`` as a cross-language transform (``ReadFromKafka`` with metadata), so the
job needs a Java expansion service of the SDK's own Beam release
(``runners/java_services.py`` starts one from Maven jars) and a portable runner (Flink).

Data flow of each side (``ReadPredictions`` / ``ReadLabels``; labels are API):

    "Read"        ReadFromKafka(topic, with_metadata=True, CreateTime policy)
    "ToMessages"  -> (shard, Message): value, ``topic/partition/offset``, record timestamp
    "Batch"       GroupIntoBatches(max_batch, max_buffering_seconds) per shard
    "Parse"       -> records + dead letters (message_id ``topic/partition/offset``,
                     attributes ``{"topic", "partition", "offset"}``)

Time (all UTC):

* **Record time.** A prediction's time is its ``event_time``; a label's its
  ``label_time`` or, when absent, the Kafka record's timestamp (docs/semantics.md).
* **Watermark.** The read uses Kafka's ``CreateTime`` timestamp policy: an element's
  timestamp is the record's timestamp (set by the producer, so a producer should set
  it to the record's event time, or label time for labels) and the watermark of a
  partition is the newest timestamp read from it; the source's watermark is the
  oldest over its partitions, never past the wall clock (KafkaIO caps it at "now").
  When a partition is caught up (no backlog) its watermark moves to the wall clock,
  so a stream that stops flushes its windows and expires its predictions in real
  time. A record written with a timestamp behind the watermark is late data, handled
  as in every source: the join runs in the global window, late labels yield LATE
  panes within ``label_ttl``.
* **Delivery.** On Flink the read's offsets are part of each checkpoint: a restored
  job (a TaskManager lost, the job restarted by Flink, or a new job started from a
  retained checkpoint or savepoint with ``flink run -s``) re-reads from the
  checkpointed offsets with the join's state restored beside them, so no record is
  lost or joined twice (tests/integration/test_flink_kafka.py kills the TaskManager).
  The Parquet sink is not transactional with checkpoints: files written after the last
  checkpoint and before a crash stay beside the restored job's (docs/runners.md, "Not yet").
  Offsets are not committed to the consumer group: KafkaIO's
  ``commit_offset_in_finalize`` makes Beam 2.62's Flink runner buffer its input until
  each checkpoint (``@RequiresStableInput``), and that buffering fails the fused read
  stage ("State backend must be locked when retrieving the current key"). A new job
  without a checkpoint reads its topics from the earliest offset the broker keeps
  (``auto.offset.reset=earliest``).

URLs: ``kafka://HOST:PORT[,HOST:PORT...]/TOPIC`` (:func:`parse_kafka_url`).
"""

from __future__ import annotations

import re
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.kafka import ReadFromKafka
from apache_beam.pvalue import PBegin

from msewatch.schemas.features import check_features
from msewatch.schemas.records import DEAD_LETTER_TAG, LABEL, PREDICTION
from msewatch.transforms.io.messages import (
    Message,
    ParseMessageBatch,
    batch_and_parse,
    check_batching,
)

KAFKA_URL_SCHEME = "kafka://"
KAFKA_FORM = "kafka://HOST:PORT/TOPIC"
_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$|^\[[0-9A-Fa-f:.]+\]:\d{1,5}$")
# Kafka topic names: 1 to 249 of letters, digits, '.', '_', '-'; not '.' or '..'.
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


class KafkaTopic(NamedTuple):
    """A topic and the brokers to find it: ``bootstrap`` is ``HOST:PORT[,HOST:PORT]``."""

    bootstrap: str
    topic: str

    @property
    def url(self) -> str:
        return f"{KAFKA_URL_SCHEME}{self.bootstrap}/{self.topic}"


def is_kafka_url(text: str | None) -> bool:
    return bool(text) and text.startswith(KAFKA_URL_SCHEME)


def parse_kafka_url(url: str) -> KafkaTopic:
    """``kafka://HOST:PORT[,HOST:PORT]/TOPIC`` -> :class:`KafkaTopic`.

    Raises:
        ValueError: not of that form (the message shows the form).
    """
    if not is_kafka_url(url):
        raise ValueError(f"{url!r} is not a Kafka URL; use {KAFKA_FORM}")
    rest = url[len(KAFKA_URL_SCHEME) :]
    brokers, slash, topic = rest.partition("/")
    hosts = brokers.split(",") if brokers else []
    if not slash or not hosts or not all(_HOST_PORT.fullmatch(h) for h in hosts):
        raise ValueError(f"{url!r}: name the brokers as HOST:PORT[,HOST:PORT]; use {KAFKA_FORM}")
    for host in hosts:
        if not 1 <= int(host.rsplit(":", 1)[1]) <= 65535:
            raise ValueError(f"{url!r}: {host} has no port between 1 and 65535; use {KAFKA_FORM}")
    if not _TOPIC.fullmatch(topic) or topic in (".", ".."):
        raise ValueError(
            f"{url!r}: the topic must be 1 to 249 letters, digits, '.', '_' or '-'; "
            f"use {KAFKA_FORM}"
        )
    return KafkaTopic(brokers, topic)


class _ToMessages(beam.DoFn):
    """A KafkaIO metadata row -> ``(shard, Message)``; the shard is the partition
    (modulo ``shards``), so the records of one partition are batched, parsed and reach
    the join in the partition's order: "first to arrive" among duplicates is the first
    in the topic (a shard per offset hash let two batches of one partition race)."""

    def __init__(self, shards: int):
        self._shards = shards

    def process(self, row):
        topic, partition, offset = row.topic, int(row.partition), int(row.offset)
        message_id = f"{topic}/{partition}/{offset}"
        yield (
            f"{partition % self._shards:03d}",
            Message(
                payload=bytes(row.value or b""),
                message_id=message_id,
                attributes={"topic": topic, "partition": str(partition), "offset": str(offset)},
                publish_time_ms=int(row.timestamp),
            ),
        )


class _ReadTopic(beam.PTransform):
    """One topic -> ``{"records", "dead_letter"}`` Arrow batches."""

    def __init__(self, topic: KafkaTopic, record_type: str, segment_keys, options: dict):
        super().__init__()
        self._topic = topic
        self._record_type = record_type
        self._segment_keys = segment_keys
        self._options = options

    def expand(self, pbegin):
        opt = self._options
        consumer = {
            "bootstrap.servers": self._topic.bootstrap,
            "group.id": opt["group_id"],
            "auto.offset.reset": "earliest",
        }
        read = ReadFromKafka(
            consumer_config=consumer,
            topics=[self._topic.topic],
            with_metadata=True,
            timestamp_policy=ReadFromKafka.create_time_policy,
            # offsets live in Flink's checkpoints; see the module docstring (Delivery)
            commit_offset_in_finalize=False,
            expansion_service=opt["expansion_service"],
        )
        parse = ParseMessageBatch(
            self._record_type,
            self._topic.url,
            self._segment_keys,
            counter_prefix="kafka",
            features=opt["features"],
        )
        messages = (
            pbegin
            | "Read" >> read
            | "ToMessages"
            >> beam.ParDo(_ToMessages(opt["shards"])).with_output_types(tuple[str, Message])
        )
        return batch_and_parse(messages, parse, opt["max_batch"], opt["max_buffering_seconds"])


class KafkaSource(beam.PTransform):
    """PBegin -> ``{"predictions", "labels", "dead_letter"}`` PCollections of Arrow batches.

    Unbounded: build the pipeline with ``MonitorConfig(bounded=False)`` and run it with
    ``--streaming`` on a portable runner. See the module docstring for time semantics.

    Args:
        predictions: the predictions' topic.
        labels: the labels' topic.
        expansion_service: a Beam expansion service with KafkaIO, of the SDK's release
            (``HOST:PORT`` or an ``apache_beam.transforms.external`` service object).
        segment_keys: segment attributes of predictions to keep for slicing.
        group_id: the Kafka consumer group id the reader joins (offsets are kept in
            Flink's checkpoints, not committed to it: see the module docstring).
        max_batch: most messages per parsed batch (1 to 2**20).
        max_buffering_seconds: longest processing-time wait for a batch to fill (> 0).
        shards: batching keys per side.
        features: feature names of predictions to keep (their value sketches).

    Raises:
        ValueError: an empty group id or a number out of range.
    """

    def __init__(
        self,
        predictions: KafkaTopic,
        labels: KafkaTopic,
        expansion_service,
        segment_keys: tuple[str, ...] = (),
        group_id: str = "msewatch",
        max_batch: int = 2000,
        max_buffering_seconds: float = 1.0,
        shards: int = 16,
        features: tuple[str, ...] = (),
    ):
        super().__init__()
        check_batching(max_batch, max_buffering_seconds)
        if not group_id:
            raise ValueError("group_id must not be empty")
        if shards < 1:
            raise ValueError(f"shards must be >= 1; got {shards}")
        self._predictions = predictions
        self._labels = labels
        self._segment_keys = tuple(segment_keys)
        self._options = {
            "expansion_service": expansion_service,
            "group_id": group_id,
            "max_batch": max_batch,
            "max_buffering_seconds": max_buffering_seconds,
            "shards": shards,
            "features": check_features(features, segment_keys),
        }

    def expand(self, pbegin: PBegin):
        preds = pbegin | "ReadPredictions" >> _ReadTopic(
            self._predictions, PREDICTION.name, self._segment_keys, self._options
        )
        labels = pbegin | "ReadLabels" >> _ReadTopic(self._labels, LABEL.name, (), self._options)
        both = (preds[DEAD_LETTER_TAG], labels[DEAD_LETTER_TAG])
        dead = both | "FlattenDeadLetter" >> beam.Flatten()
        return {
            PREDICTION.tag: preds["records"],
            LABEL.tag: labels["records"],
            DEAD_LETTER_TAG: dead,
        }
