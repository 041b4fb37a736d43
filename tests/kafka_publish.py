"""A sample's JSON Lines published to Kafka as a producer service would: one record per line.

Each Kafka record's timestamp (CreateTime) is the line's own event time (``event_time``
of a prediction, ``label_time`` of a label), read here independently of msewatch's
parser; a line without a readable time (a malformed one) takes the time of the line
before it, so it never moves the source's watermark.
"""

from __future__ import annotations

import dataclasses
import datetime
import json

TIME_FIELDS = {"predictions": "event_time", "labels": "label_time"}
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


@dataclasses.dataclass(frozen=True)
class KafkaRecord:
    value: bytes
    timestamp_ms: int


def event_time_ms(value: bytes, field: str) -> int | None:
    """The line's event time in epoch ms (an int, or RFC 3339), None if it has none."""
    try:
        when = json.loads(value)[field]
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    if isinstance(when, bool):
        return None
    if isinstance(when, int):
        return when
    try:
        moment = datetime.datetime.fromisoformat(when)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return (moment - _EPOCH) // datetime.timedelta(milliseconds=1)


def records(path: str, kind: str, first_ms: int) -> list[KafkaRecord]:
    """One record per non-empty line of ``path`` (``kind``: predictions or labels)."""
    out, last = [], first_ms
    with open(path, "rb") as fh:
        for line in fh:
            line = line.rstrip(b"\n")
            if not line.strip():
                continue
            when = event_time_ms(line, TIME_FIELDS[kind])
            last = when if when is not None else last
            out.append(KafkaRecord(line, last))
    return out


class Publisher:
    """A producer that writes batches in order and waits until the broker has each."""

    def __init__(self, bootstrap: str):
        from confluent_kafka import Producer

        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
        self._failures: list[str] = []

    def _delivered(self, err, _msg):
        if err is not None:
            self._failures.append(str(err))

    def send(self, topic: str, batch: list[KafkaRecord]) -> None:
        for record in batch:
            while True:
                try:
                    self._producer.produce(
                        topic,
                        record.value,
                        timestamp=record.timestamp_ms,
                        on_delivery=self._delivered,
                    )
                    break
                except BufferError:  # the local queue is full: let it drain
                    self._producer.poll(0.5)
            self._producer.poll(0)
        remaining = self._producer.flush(60)
        assert remaining == 0 and not self._failures, (remaining, self._failures[:3])


def publish(bootstrap: str, topic: str, batch: list[KafkaRecord]) -> None:
    """Writes ``batch`` to ``topic`` in order and waits until the broker has it all."""
    Publisher(bootstrap).send(topic, batch)


def create_topics(bootstrap: str, names: list[str], partitions: int = 1) -> None:
    """Creates the topics (KafkaIO's reader needs its topics' partitions at start).

    They accept any record timestamp: since Kafka 4.0 a broker refuses records stamped
    more than an hour ahead (``message.timestamp.after.max.ms``), and the tests stamp
    labels days after their predictions, and end-of-stream markers a month ahead.
    """
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {"message.timestamp.after.max.ms": str(2**63 - 1)}
    futures = admin.create_topics([NewTopic(n, partitions, 1, config=config) for n in names])
    for future in futures.values():
        future.result(60)
