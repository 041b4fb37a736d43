"""Parsing Pub/Sub messages (msewatch.transforms.parse.pubsub_messages).

Positions are the arrival sequence from ``base_sequence``; expected reasons follow the
rules in the docstring of msewatch.transforms.parse.pubsub_messages.
"""

from __future__ import annotations

import json

import pytest

from msewatch.transforms.parse.pubsub_messages import parse_json_messages


def test_pubsub_messages_carry_ids_attributes_and_sequence():
    payloads = [
        json.dumps({"prediction_id": "a", "y_true": 1.0}).encode(),
        b"",
        b'{"prediction_id": "b",\n "y_true": 1}',
        b"{oops",
        json.dumps({"prediction_id": "c", "y_true": 2.0, "label_time": 7}).encode(),
    ]
    rec, dead = parse_json_messages(
        payloads,
        "label",
        "subs/x",
        base_sequence=50,
        message_ids=["m0", "m1", "m2", "m3", "m4"],
        attributes=[None, {"k": "v"}, None, {"b": "2", "a": "1"}, None],
        publish_time_ms=[111, 222, 333, 444, 555],
    )
    assert rec.to_pylist() == [
        {"prediction_id": "a", "y_true": 1.0, "label_time_ms": 111, "position": 50},
        {"prediction_id": "c", "y_true": 2.0, "label_time_ms": 7, "position": 54},
    ]
    assert dead["message_id"].to_pylist() == ["m1", "m2", "m3"]
    assert dead["ingest_position"].to_pylist() == [51, 52, 53]
    assert dead["reason"].to_pylist() == ["unparseable"] * 3
    assert dead["attributes"].to_pylist() == ['{"k": "v"}', None, '{"a": "1", "b": "2"}']
    assert dead["raw_payload"][2].as_py() == "{oops"


def test_unknown_record_type_raises():
    with pytest.raises(ValueError, match="prediction, label"):
        parse_json_messages([], "metric", "s", 0)


def test_a_message_over_1_mib_is_unparseable_and_its_raw_payload_cut():
    # before: parsed and accepted whole; its dead letter would have carried all of it
    big = json.dumps({"prediction_id": "p" * (1 << 20), "y_true": 1.0}).encode()
    rec, dead = parse_json_messages([big], "label", "subs/x", 0, publish_time_ms=[1])
    assert rec.num_rows == 0
    assert dead["detail"].to_pylist() == [f"line of {len(big)} bytes, over 1048576"]
    raw = dead["raw_payload"][0].as_py()
    assert len(raw) < 70_000 and raw.endswith(f"[cut: the line has {len(big)} bytes]")
