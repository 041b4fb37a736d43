"""A prediction's ``features`` map in every input format: the configured names become
float64 ``feat.<name>`` columns, bad values dead letters (rules in the docstring of
msewatch.transforms.parse.validate, rule 9), names not configured are ignored, and the
number of configured names is capped (schemas/features.py MAX_FEATURES).

Expected values are the numbers written into the records; expected reasons the rule's.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from msewatch.schemas.features import MAX_FEATURES, check_features
from msewatch.schemas.records import PREDICTION
from msewatch.transforms.io import kafka
from msewatch.transforms.io.files import read_all
from msewatch.transforms.io.messages import Message, ParseMessageBatch
from msewatch.transforms.io.pubsub import PubSubSource
from msewatch.transforms.join.kernel import JoinConfig
from msewatch.transforms.parse.pubsub_messages import parse_json_messages
from tests.parse_examples import block, preds

NAMES = ("price", "age")


def _rec(pid, features=None, **extra):
    rec = {"prediction_id": pid, "event_time": 1_000, "y_pred": 1.0, **extra}
    if features is not None:
        rec["features"] = features
    return rec


GOOD = [
    _rec("a", {"price": 9.5, "age": 31, "unread": "any text"}),
    _rec("b"),  # no features: NaN
    _rec("c", {"price": None, "age": -2e3}),  # null: NaN
    _rec("d", {"age": 1}),  # absent name: NaN
    _rec("e", {"price": "NaN-token"}, features_note=1),  # replaced below by a NaN token
]
GOOD_PRICE = [9.5, math.nan, math.nan, math.nan, math.nan]
GOOD_AGE = [31.0, math.nan, -2000.0, 1.0, math.nan]
BAD = [
    (_rec("s", {"price": "9.5"}), "bad_number", 'features.price must be a number, got "9.5"'),
    (_rec("t", {"age": True}), "bad_number", "features.age must be a number, got true"),
    (_rec("o", {"age": {"x": 1}}), "bad_number", 'features.age must be a number, got {"x":1}'),
    (_rec("l", [1, 2]), "bad_type", "features must be an object of numbers, got [1,2]"),
    (_rec("n", 7), "bad_type", "features must be an object of numbers, got 7"),
]


def _jsonl_lines() -> bytes:
    lines = block(*GOOD, *(rec for rec, _, _ in BAD)).decode()
    # A NaN token (valid for Python's json and pyarrow): an accepted, non-finite value.
    return lines.replace('"price": "NaN-token"', '"price": NaN').encode()


def _check(records: pa.Table, dead: pa.Table, ids=("a", "b", "c", "d", "e")):
    assert records.column("prediction_id").to_pylist() == list(ids)
    np.testing.assert_array_equal(records.column("feat.price").to_numpy(), GOOD_PRICE)
    np.testing.assert_array_equal(records.column("feat.age").to_numpy(), GOOD_AGE)
    got = sorted(zip(dead["reason"].to_pylist(), dead["detail"].to_pylist(), strict=True))
    assert got == sorted((reason, detail) for _, reason, detail in BAD)
    assert records.num_rows + dead.num_rows == len(GOOD) + len(BAD)  # conservation


def test_jsonl_features_good_bad_and_ignored_names():
    records, dead = preds(_jsonl_lines(), features=NAMES)
    assert records.schema == PREDICTION.batch_schema((), NAMES)
    _check(records, dead)


def test_without_configured_features_the_map_is_not_read():
    records, dead = preds(_jsonl_lines())
    assert records.schema == PREDICTION.batch_schema() and dead.num_rows == 0
    assert records.num_rows == len(GOOD) + len(BAD)


def test_a_record_may_hold_any_number_of_names_only_the_configured_are_kept():
    many = {f"f{i}": float(i) for i in range(500)}
    records, dead = preds(block(_rec("a", many)), features=("f7", "f499"))
    assert dead.num_rows == 0
    assert (records["feat.f7"][0].as_py(), records["feat.f499"][0].as_py()) == (7.0, 499.0)


def test_pubsub_messages_read_features_like_a_file():
    payloads = _jsonl_lines().rstrip(b"\n").split(b"\n")
    records, dead = parse_json_messages(payloads, "prediction", "sub", 100, features=NAMES)
    _check(records, dead)
    assert dead.column("ingest_position").to_pylist() == [105, 106, 107, 108, 109]


def test_kafka_messages_read_features_through_the_message_batch():
    payloads = _jsonl_lines().rstrip(b"\n").split(b"\n")
    messages = [Message(p, f"p/0/{i}", {}, 5_000 + i) for i, p in enumerate(payloads)]
    parse = ParseMessageBatch(
        "prediction", "kafka://h:1/p", (), counter_prefix="kafka", features=NAMES
    )
    out = list(parse.process(("000", messages)))
    records, dead = out[0].value, out[1].value.value
    _check(records, dead)


def test_csv_features_come_from_features_dot_name_columns():
    text = (
        b"prediction_id,event_time,y_pred,features.price,features.age,features.unread\n"
        b"a,1000,1,9.5,31,x\nb,1000,1,,,\nc,1000,1,,-2e3,\nd,1000,1,,1,\ne,1000,1,nan,,\n"
        b"s,1000,1,abc,,\n"
    )
    header, body = text.split(b"\n", 1)
    records, dead = preds(body, fmt="csv", csv_header=header + b"\n", features=NAMES)
    want_price = [9.5, math.nan, math.nan, math.nan, math.nan]
    np.testing.assert_array_equal(records.column("feat.price").to_numpy(), want_price)
    np.testing.assert_array_equal(records.column("feat.age").to_numpy(), GOOD_AGE)
    assert dead.column("reason").to_pylist() == ["bad_number"]
    assert dead.column("detail").to_pylist() == ['features.price must be a number, got "abc"']


@pytest.mark.parametrize("layout", ["struct", "map", "columns"])
def test_parquet_features_from_a_struct_a_map_or_flat_columns(layout):
    price, age = [9.5, None, None, None, math.nan], [31.0, None, -2000.0, 1.0, None]
    ids = ["a", "b", "c", "d", "e"]
    base = {"prediction_id": ids, "event_time": [1000] * 5, "y_pred": [1.0] * 5}
    if layout == "struct":
        base["features"] = pa.StructArray.from_arrays(
            [pa.array(price), pa.array(age, pa.float32())],  # any numeric type
            ["price", "age"],
        )
    elif layout == "map":
        entries = [
            [(k, v) for k, v in (("price", p), ("age", a)) if v is not None]
            for p, a in zip(price, age, strict=True)
        ]
        base["features"] = pa.array(entries, pa.map_(pa.string(), pa.float64()))
    else:
        base["features.price"], base["features.age"] = price, age
    records, dead = preds(pa.table(base), fmt="parquet", features=NAMES)
    assert dead.num_rows == 0
    np.testing.assert_array_equal(records.column("feat.price").to_numpy(), GOOD_PRICE)
    np.testing.assert_array_equal(records.column("feat.age").to_numpy(), GOOD_AGE)


def test_parquet_features_of_the_wrong_type_are_dead_letters(tmp_path):
    table = pa.table(
        {
            "prediction_id": ["a", "b"],
            "event_time": [1000, 1000],
            "y_pred": [1.0, 2.0],
            "features": pa.array([{"price": "cheap"}, {"price": None}]),
        }
    )
    pq.write_table(table, tmp_path / "p.parquet")
    records, dead = read_all(str(tmp_path / "p.parquet"), "prediction", features=("price",))
    assert records.column("prediction_id").to_pylist() == ["b"]
    assert dead.column("reason").to_pylist() == ["bad_number"]
    assert dead.column("detail").to_pylist() == ["features.price must be a number, got cheap"]
    flat = pa.table({"prediction_id": ["a"], "event_time": [1], "y_pred": [1.0], "features": [3]})
    _, dead = preds(flat, fmt="parquet", features=("price",))
    assert dead.column("reason").to_pylist() == ["bad_type"]


def test_the_file_source_reads_features_of_jsonl_files(tmp_path):
    (tmp_path / "p.jsonl").write_bytes(_jsonl_lines())
    records, dead = read_all(str(tmp_path / "p.jsonl"), "prediction", features=NAMES)
    _check(records, dead)
    labels, _ = read_all(str(tmp_path / "p.jsonl"), "label", features=NAMES)
    assert "feat.price" not in labels.schema.names  # labels have no features


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ([f"f{i}" for i in range(MAX_FEATURES + 1)], f"at most {MAX_FEATURES} features"),
        (["a", "a"], "feature names must be distinct"),
        ([""], "a feature name must be a non-empty string"),
        (["x" * 1025], "a feature name must be a non-empty string"),
        (["region"], "feature 'region' is also a segment key"),
        (["event_time"], "feature 'event_time' is also a segment key or the event_time"),
    ],
)
def test_the_configured_features_are_capped_and_checked(names, message):
    with pytest.raises(ValueError, match=message):
        check_features(names, ("region",))
    with pytest.raises(ValueError, match=message):
        JoinConfig(segment_keys=("region",), features=tuple(names))
    topics = (kafka.KafkaTopic("h:1", "p"), kafka.KafkaTopic("h:1", "l"))
    with pytest.raises(ValueError, match=message):
        kafka.KafkaSource(*topics, "localhost:1", segment_keys=("region",), features=names)
    subs = ("projects/my-project/subscriptions/preds", "projects/my-project/subscriptions/labels")
    with pytest.raises(ValueError, match=message):
        PubSubSource(*subs, ("region",), features=names)
    assert len(check_features([f"f{i}" for i in range(MAX_FEATURES)])) == MAX_FEATURES


def test_json_fast_path_and_line_parser_agree_on_features():
    """pyarrow reads the good lines in one pass; Python's json (the per-line reference
    parser, used where pyarrow fails) gives the same values, line by line."""
    from msewatch.transforms.parse.jsonl import _json_row
    from msewatch.transforms.parse.normalized import Spec

    spec = Spec.of(PREDICTION, (), NAMES)
    whole, _ = preds(_jsonl_lines(), features=NAMES)
    lines = _jsonl_lines().rstrip(b"\n").split(b"\n")[: len(GOOD)]
    for name in NAMES:
        by_line = [_json_row(line, spec).get("feat." + name, math.nan) for line in lines]
        np.testing.assert_array_equal(whole.column("feat." + name).to_numpy(), by_line)
