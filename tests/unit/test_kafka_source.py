"""The Kafka source's Beam-free parts: ``kafka://`` URLs, one kind of input for both sides,
the runner check, and a Kafka record -> message -> dead letter with topic/partition/offset."""

from __future__ import annotations

import collections
import json

import pytest

from msewatch.runners import presets
from msewatch.schemas.records import DEAD_LETTER_TAG
from msewatch.transforms.io import kafka
from msewatch.transforms.io.messages import ParseMessageBatch

# what KafkaIO's metadata row carries (the fields _ToMessages reads)
Row = collections.namedtuple("Row", "topic partition offset timestamp value")


@pytest.mark.parametrize(
    ("url", "bootstrap", "topic"),
    [
        ("kafka://127.0.0.1:9092/predictions", "127.0.0.1:9092", "predictions"),
        ("kafka://b1:9092,b2.example.com:9093/p.v2_x-1", "b1:9092,b2.example.com:9093", "p.v2_x-1"),
        ("kafka://[::1]:9092/labels", "[::1]:9092", "labels"),
    ],
)
def test_a_kafka_url_names_the_brokers_and_the_topic(url, bootstrap, topic):
    parsed = kafka.parse_kafka_url(url)
    assert parsed == kafka.KafkaTopic(bootstrap, topic)
    assert parsed.url == url


@pytest.mark.parametrize(
    ("url", "what"),
    [
        ("kafka://127.0.0.1/predictions", "HOST:PORT"),  # no port
        ("kafka://127.0.0.1:9092", "HOST:PORT"),  # no topic
        ("kafka:///predictions", "HOST:PORT"),  # no broker
        ("kafka://h:0/t", "no port between 1 and 65535"),
        ("kafka://h:99999/t", "no port between 1 and 65535"),
        ("kafka://h:9092/a/b", "the topic must be"),  # '/' is not a topic character
        ("kafka://h:9092/..", "the topic must be"),
        ("kafka://h:9092/<script>", "the topic must be"),
        ("kafka://h:9092/" + "t" * 250, "the topic must be"),  # Kafka's limit is 249
        ("kafka://h:9092/new\nline", "the topic must be"),
        ("kafka://h:9092/topic\n", "the topic must be"),  # '$' would match before it
        ("kafka://h:9092\n/topic", "HOST:PORT"),
        ("pubsub://projects/p/subscriptions/s", "is not a Kafka URL"),
    ],
)
def test_a_malformed_kafka_url_is_one_line_showing_the_form(url, what):
    with pytest.raises(ValueError) as err:
        kafka.parse_kafka_url(url)
    assert what in str(err.value) and "kafka://HOST:PORT/TOPIC" in str(err.value)
    assert "\n" not in str(err.value).replace(repr(url), "")


def test_both_inputs_must_be_of_one_kind():
    assert presets.kafka_topics("kafka://h:1/p", "kafka://h:1/l") == (
        kafka.KafkaTopic("h:1", "p"),
        kafka.KafkaTopic("h:1", "l"),
    )
    assert presets.kafka_topics("a/*.jsonl", "b/*.jsonl") is None
    for pair in (
        ("kafka://h:1/p", "labels.jsonl"),
        ("kafka://h:1/p", "pubsub://projects/my-proj/subscriptions/labels"),
    ):
        with pytest.raises(ValueError, match="must be of one kind"):
            presets.kafka_topics(*pair)
        with pytest.raises(ValueError, match="must be of one kind"):
            presets.pubsub_subscriptions(*pair)


def test_the_direct_runner_is_refused_for_kafka_with_what_to_do():
    with pytest.raises(ValueError, match="--runner FlinkRunner"):
        presets.check_kafka_runner("DirectRunner")
    presets.check_kafka_runner("FlinkRunner")  # no error


def test_a_malformed_record_reaches_dead_letter_with_topic_partition_and_offset():
    good = {"prediction_id": "a", "y_true": 2.5}  # no label_time: the record timestamp
    rows = [Row("labels", 3, 41, 7000, json.dumps(good).encode()), Row("labels", 3, 42, 8000, b"{")]
    messages = [m for row in rows for m in kafka._ToMessages(16).process(row)]
    shards = {key for key, _ in messages}
    assert all(len(k) == 3 and 0 <= int(k) < 16 for k in shards)
    assert [m.message_id for _, m in messages] == ["labels/3/41", "labels/3/42"]
    parse = ParseMessageBatch("label", "kafka://h:1/labels", (), counter_prefix="kafka")
    records, dead = list(parse.process(("000", [m for _, m in messages])))
    assert records.value.column("label_time_ms").to_pylist() == [7000]
    assert dead.tag == DEAD_LETTER_TAG
    row = dead.value.value.to_pylist()[0]
    assert (row["reason"], row["source"], row["message_id"]) == (
        "unparseable",
        "kafka://h:1/labels",
        "labels/3/42",
    )
    assert json.loads(row["attributes"]) == {"topic": "labels", "partition": "3", "offset": "42"}
    assert row["raw_payload"] == "{"


def test_source_settings_are_checked_when_built():
    topics = (kafka.KafkaTopic("h:1", "p"), kafka.KafkaTopic("h:1", "l"))
    for kwargs, message in (
        ({"group_id": ""}, "group_id"),
        ({"max_batch": 0}, "max_batch"),
        ({"max_buffering_seconds": 0}, "max_buffering_seconds"),
        ({"shards": 0}, "shards"),
    ):
        with pytest.raises(ValueError, match=message):
            kafka.KafkaSource(*topics, expansion_service="localhost:1", **kwargs)


def test_a_job_started_before_its_topics_exist_fails_in_one_line_saying_what_to_do():
    from msewatch.runners import launch

    class _Result:  # what Beam 2.62's PortableRunner raised on Flink (measured)
        def wait_until_finish(self):
            raise RuntimeError(
                "Pipeline BeamApp-root-1207114408-80223c0_dcb0 failed in state FAILED: "
                "java.lang.IllegalStateException: Could not find any partitions. Please "
                "check Kafka configuration and topic names\nTraceback (most recent call last):"
            )

    with pytest.raises(launch.JobFailed) as err:
        launch._wait(_Result())
    text = str(err.value)
    assert "\n" not in text and "Could not find any partitions" in text
    assert text.endswith(
        "the Kafka topics must exist before the job starts: create them "
        "(kafka-topics.sh --create) or let their producer write first"
    )
