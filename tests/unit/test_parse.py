"""Parsing and validation of prediction and label records (msewatch.transforms.parse).

Expected times come from Python's datetime, expected offsets from the byte lengths of
the lines written, and expected reasons from the rules in the docstring of
msewatch.transforms.parse.validate.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msewatch.schemas.records import DEAD_LETTER, LABELS, PREDICTIONS, make_position, with_segments
from msewatch.transforms.parse import jsonl as _jsonl
from msewatch.transforms.parse import text_blocks as _text_blocks
from msewatch.transforms.parse.pubsub_messages import parse_json_messages
from msewatch.transforms.parse.records import parse_labels, parse_predictions
from msewatch.transforms.parse.text_blocks import Unparsed

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
OK = {"prediction_id": "ok", "event_time": 1_000, "y_pred": 1.0}


def utc_ms(text: str) -> int:
    """Reference: RFC 3339 -> epoch ms by Python's datetime (floors to the millisecond)."""
    return (dt.datetime.fromisoformat(text.upper()) - EPOCH) // dt.timedelta(milliseconds=1)


def line(obj) -> str:
    return obj if isinstance(obj, str) else json.dumps(obj)


def block(*objs) -> bytes:
    return ("\n".join(line(o) for o in objs) + "\n").encode()


def offsets(*objs) -> list[int]:
    """Byte offset of each line of ``block(*objs)``."""
    sizes = [len(line(o).encode()) + 1 for o in objs]
    return [sum(sizes[:i]) for i in range(len(objs))]


def preds(data, keys=(), fmt="jsonl", file_index=0, base=0, **kw):
    return parse_predictions(data, fmt, "src", file_index, base, keys, **kw)


def test_valid_prediction_fills_defaults_and_keeps_segments():
    rec, dead = preds(
        block(
            {
                "prediction_id": "p1",
                "event_time": "2024-03-01T12:00:00Z",
                "y_pred": 2.5,
                "model_version": "v7",
                "weight": 0.5,
                "segments": {"region": "eu", "tier": 3, "vip": True, "other": "x"},
            },
            {"prediction_id": "p2", "event_time": 5, "y_pred": -1},
        ),
        keys=("region", "tier", "vip", "absent"),
    )
    assert dead.num_rows == 0
    assert rec.schema == with_segments(PREDICTIONS, ("region", "tier", "vip", "absent"))
    first, second = rec.to_pylist()
    # 2024-03-01T12:00Z: 19783 days after 1970-01-01, plus 12 h.
    assert first["event_time_ms"] == 19783 * 86_400_000 + 12 * 3_600_000
    assert (first["y_pred"], first["model_version"], first["weight"]) == (2.5, "v7", 0.5)
    assert [first[f"seg.{k}"] for k in ("region", "tier", "vip", "absent")] == [
        "eu",
        "3",  # numbers and booleans become their JSON text
        "true",
        "unknown",
    ]
    assert (second["model_version"], second["weight"], second["seg.region"]) == (
        "unknown",
        1.0,
        "unknown",
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("NaN", "nan"),
        ("Infinity", "inf"),
        ("-Infinity", "-inf"),
        ("null", "nan"),  # null y counts as non-finite
        ("1e999", "inf"),  # overflows to infinity in Python's json too
    ],
)
def test_non_finite_y_is_accepted(text, expected):
    rec, dead = preds(block(f'{{"prediction_id": "a", "event_time": 1, "y_pred": {text}}}'))
    assert dead.num_rows == 0
    y = rec["y_pred"][0].as_py()
    assert (math.isnan(y) and expected == "nan") or y == float(expected)


PREDICTION_REJECTS = [
    ("{not json", "unparseable", "invalid JSON"),
    ("[1, 2]", "unparseable", "not a JSON object"),
    ('{"prediction_id": "a"} {"prediction_id": "b"}', "unparseable", "invalid JSON"),
    ('{"y_pred": Inf, "prediction_id": "a", "event_time": 1}', "unparseable", ""),
    ({"event_time": 1, "y_pred": 1}, "missing_field", "prediction_id"),
    ({"prediction_id": None, "event_time": 1, "y_pred": 1}, "missing_field", "prediction_id"),
    ({"prediction_id": "a", "y_pred": 1}, "missing_field", "event_time"),
    ({"prediction_id": "a", "event_time": 1}, "missing_field", "y_pred"),
    ({"y_pred": 1}, "missing_field", "prediction_id, event_time"),
    ({"prediction_id": 12, "event_time": 1, "y_pred": 1}, "bad_type", "got 12"),
    ({"prediction_id": "", "event_time": 1, "y_pred": 1}, "empty_id", ""),
    ({"prediction_id": "  ", "event_time": 1, "y_pred": 1}, "empty_id", ""),
    (
        {"prediction_id": "a", "event_time": "2024-01-01T00:00:00", "y_pred": 1},
        "bad_timestamp",
        "2024-01-01T00:00:00",
    ),
    (
        {"prediction_id": "a", "event_time": "2023-02-29T00:00:00Z", "y_pred": 1},
        "bad_timestamp",
        "",
    ),
    (
        {"prediction_id": "a", "event_time": "2024-01-01T24:00:00Z", "y_pred": 1},
        "bad_timestamp",
        "",
    ),
    (
        {"prediction_id": "a", "event_time": "2024-12-31T23:59:60Z", "y_pred": 1},
        "bad_timestamp",
        "",
    ),
    ({"prediction_id": "a", "event_time": "yesterday", "y_pred": 1}, "bad_timestamp", "yesterday"),
    ({"prediction_id": "a", "event_time": True, "y_pred": 1}, "bad_timestamp", "true"),
    ({"prediction_id": "a", "event_time": 1e20, "y_pred": 1}, "bad_timestamp", ""),
    ({"prediction_id": "a", "event_time": 1, "y_pred": "1.5"}, "bad_number", '"1.5"'),
    ({"prediction_id": "a", "event_time": 1, "y_pred": False}, "bad_number", "false"),
    ({"prediction_id": "a", "event_time": 1, "y_pred": [1]}, "bad_number", "[1]"),
    ({"prediction_id": "a", "event_time": 1, "y_pred": 1, "weight": "2"}, "bad_number", "weight"),
    ({"prediction_id": "a", "event_time": 1, "y_pred": 1, "weight": math.inf}, "bad_number", "inf"),
    ({"prediction_id": "a", "event_time": 1, "y_pred": 1, "weight": math.nan}, "bad_number", "nan"),
    (
        {"prediction_id": "a", "event_time": 1, "y_pred": 1, "weight": -0.5},
        "negative_weight",
        "-0.5",
    ),
    (
        {"prediction_id": "a", "event_time": 1, "y_pred": 1, "model_version": 2},
        "bad_type",
        "model_version",
    ),
    (
        {"prediction_id": "a", "event_time": 1, "y_pred": 1, "segments": "eu"},
        "bad_type",
        "segments",
    ),
    (
        {"prediction_id": "a", "event_time": 1, "y_pred": 1, "segments": {"region": {}}},
        "bad_type",
        "segments",
    ),
]


@pytest.mark.parametrize("bad, reason, detail", PREDICTION_REJECTS)
def test_each_reason_code_rejects_only_the_bad_record(bad, reason, detail):
    lines = [OK, bad, OK]
    rec, dead = preds(block(*lines), keys=("region",), file_index=3, base=1000)
    assert rec.num_rows == 2 and dead.num_rows == 1
    assert dead.schema == DEAD_LETTER
    row = dead.to_pylist()[0]
    assert row["reason"] == reason
    assert detail in row["detail"]
    assert row["raw_payload"] == line(bad)
    assert row["ingest_position"] == 1000 + offsets(*lines)[1]
    assert (row["source"], row["record_type"], row["message_id"]) == ("src", "prediction", None)
    assert rec["position"].to_pylist() == [
        make_position(3, 1000 + o) for o in (offsets(*lines)[0], offsets(*lines)[2])
    ]


def test_invalid_utf8_line_is_unparseable():
    data = block(OK) + b'{"prediction_id": "\xff", "event_time": 1, "y_pred": 1}\n' + block(OK)
    rec, dead = preds(data)
    assert (rec.num_rows, dead["reason"].to_pylist()) == (2, ["unparseable"])


def test_rfc3339_and_epoch_ms_mix_in_one_file():
    texts = [
        "2024-01-01T00:00:00Z",
        "2024-06-30T23:59:59+05:30",
        "2024-06-30T23:59:59-08:00",
        "2024-02-29 12:00:00Z",
        "2024-02-29t12:00:00z",
        "1969-12-31T23:59:59.5Z",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999Z",
    ] + ["2024-05-05T05:05:05." + "123456789"[:n] + "+01:00" for n in range(1, 10)]
    epochs = [1_700_000_000_123, 0, -1, "1700000000123", 1.7e12, 1700000000123.9]
    lines = [
        {"prediction_id": str(i), "event_time": t, "y_pred": 0}
        for i, t in enumerate(texts + epochs)
    ]
    rec, dead = preds(block(*lines))
    assert dead.num_rows == 0
    # Epoch values are milliseconds; a fraction is floored.
    expected = [utc_ms(t) for t in texts] + [
        1_700_000_000_123,
        0,
        -1,
        1_700_000_000_123,
        1_700_000_000_000,
        1_700_000_000_123,
    ]
    assert rec["event_time_ms"].to_pylist() == expected


def test_blank_lines_are_not_records_and_offsets_are_bytes():
    lines = ["", OK, "   ", "\t", {"prediction_id": "é", "event_time": 2, "y_pred": 2}, ""]
    data = block(*lines).replace(b"\n", b"\r\n")  # CRLF: offsets count the \r too
    rec, dead = preds(data, base=7)
    sizes = [len(line(o).encode()) + 2 for o in lines]
    assert dead.num_rows == 0
    assert rec["position"].to_pylist() == [7 + sum(sizes[:1]), 7 + sum(sizes[:4])]
    assert rec["prediction_id"].to_pylist() == ["ok", "é"]


def test_bad_lines_inside_large_block_lose_nothing(monkeypatch):
    monkeypatch.setattr(_text_blocks, "SUB_BLOCK_BYTES", 512)  # many sub-blocks
    lines = [{"prediction_id": f"p{i}", "event_time": i, "y_pred": i} for i in range(400)]
    for i in (0, 57, 58, 199, 399):
        lines[i] = (
            "{garbage" if i % 2 else {"prediction_id": f"p{i}", "event_time": 1, "y_pred": "x"}
        )
    rec, dead = preds(block(*lines))
    assert rec.num_rows + dead.num_rows == 400
    assert sorted(dead["ingest_position"].to_pylist()) == [
        offsets(*lines)[i] for i in (0, 57, 58, 199, 399)
    ]
    kept = [i for i in range(400) if i not in (0, 57, 58, 199, 399)]
    assert rec["prediction_id"].to_pylist() == [f"p{i}" for i in kept]
    assert rec["position"].to_pylist() == [offsets(*lines)[i] for i in kept]


def test_labels_and_default_label_time():
    lines = [
        {"prediction_id": "a", "y_true": 3.0, "label_time": "2024-01-01T00:00:01Z"},
        {"prediction_id": "b", "y_true": None},
        {"prediction_id": "c", "y_true": "x", "label_time": 5},
    ]
    rec, dead = parse_labels(block(*lines), "jsonl", "l", 1, 0, default_label_time_ms=[10, 20, 30])
    assert rec.schema == LABELS
    assert rec.to_pylist()[0] == {
        "prediction_id": "a",
        "y_true": 3.0,
        "label_time_ms": 1_704_067_201_000,  # 2024-01-01 is 19723 days after 1970
        "position": make_position(1, 0),
    }
    assert rec["label_time_ms"][1].as_py() == 20 and math.isnan(rec["y_true"][1].as_py())
    assert dead.to_pylist()[0]["reason"] == "bad_number"
    _, dead = parse_labels(block(lines[1]), "jsonl", "l", 0, 0)
    assert dead["reason"].to_pylist() == ["missing_field"]  # label_time required in files
    with pytest.raises(ValueError, match="2 values for 3 records"):
        parse_labels(block(*lines), "jsonl", "l", 0, 0, default_label_time_ms=[1, 2])


def test_csv_reads_text_cells_and_rejects_wrong_field_counts():
    header = b"prediction_id,event_time,y_pred,model_version,weight,region\r\n"
    rows = [
        "a,2024-01-01T00:00:00Z,1.5,v1,2,eu",
        'b,1000,NaN,,,"us, east"',
        "c,1000,inf,v1,,",
        "d,1000,-inf,v1,,",
        "e,1000,,v1,,",  # empty y: null, NaN
        "f,1000,Infinity,v1,,",
        "only,two",
        "g,1000,abc,v1,,",
        "h,1000,1,v1,-1,",
        ",1000,1,v1,,",
    ]
    data = ("\n".join(rows) + "\n").encode()
    rec, dead = preds(data, keys=("region",), fmt="csv", csv_header=header)
    assert rec["prediction_id"].to_pylist() == ["a", "b", "c", "d", "e", "f"]
    assert rec["y_pred"].to_pylist()[:1] + rec["y_pred"].to_pylist()[2:4] == [
        1.5,
        math.inf,
        -math.inf,
    ]
    assert math.isnan(rec["y_pred"][1].as_py()) and math.isnan(rec["y_pred"][4].as_py())
    assert rec["seg.region"].to_pylist()[:3] == ["eu", "us, east", "unknown"]
    assert rec["weight"].to_pylist()[:2] == [2.0, 1.0]
    assert rec["model_version"][1].as_py() == "unknown"
    assert dead["reason"].to_pylist() == [
        "unparseable",
        "bad_number",
        "negative_weight",
        "empty_id",
    ]
    assert dead["ingest_position"].to_pylist() == offsets(*rows)[6:]
    assert dead["raw_payload"][0].as_py() == "only,two"
    assert json.loads(dead["raw_payload"][1].as_py())["y_pred"] == "abc"


def test_csv_labels_with_default_time_and_rejects():
    header = b"\xef\xbb\xbfprediction_id,y_true,label_time\n"  # a byte order mark is dropped
    rows = ["a,1.5,1970-01-01T00:00:01Z", "b,,", " ,2,5", "c,2,soon", "d,NaN,7"]
    data = ("\n".join(rows) + "\n").encode()
    rec, dead = parse_labels(data, "csv", "l", 0, 0, [100, 200, 300, 400, 500], csv_header=header)
    assert rec["prediction_id"].to_pylist() == ["a", "b", "d"]
    assert rec["label_time_ms"].to_pylist() == [1000, 200, 7]  # "" label_time: the default
    assert math.isnan(rec["y_true"][1].as_py()) and math.isnan(rec["y_true"][2].as_py())
    assert dead["reason"].to_pylist() == ["empty_id", "bad_timestamp"]


def test_csv_missing_column_and_unterminated_quote():
    header = b"prediction_id,event_time\n"
    data = b'a,1\n"b,2\nc,3\n'
    rec, dead = preds(data, fmt="csv", csv_header=header)
    assert rec.num_rows == 0
    assert dead["reason"].to_pylist() == ["missing_field", "unparseable", "missing_field"]
    with pytest.raises(ValueError, match="csv_header"):
        preds(data, fmt="csv")


def test_parquet_types_segments_and_row_numbers():
    table = pa.table(
        {
            "prediction_id": ["a", "b", None, "d"],
            "event_time": pa.array([0, 1_500, 2_000, 3_000], pa.timestamp("us", tz="UTC")),
            "y_pred": pa.array([1, None, 3, 4], pa.int32()),
            "segments": pa.array(
                [[("region", "eu")], None, [], [("region", "us")]],
                pa.map_(pa.string(), pa.string()),
            ),
            "tier": ["gold", "silver", None, None],
            "weight": [1.0, None, 1.0, -2.0],
        }
    )
    rec, dead = preds(table, keys=("region", "tier"), fmt="parquet", file_index=2, base=100)
    assert rec["prediction_id"].to_pylist() == ["a", "b"]
    assert rec["event_time_ms"].to_pylist() == [0, 1]  # 1500 us floors to 1 ms
    assert rec["y_pred"][0].as_py() == 1.0 and math.isnan(rec["y_pred"][1].as_py())
    assert rec["seg.region"].to_pylist() == ["eu", "unknown"]
    assert rec["seg.tier"].to_pylist() == ["gold", "silver"]
    assert rec["position"].to_pylist() == [make_position(2, 100), make_position(2, 101)]
    assert dead["reason"].to_pylist() == ["missing_field", "negative_weight"]
    assert dead["ingest_position"].to_pylist() == [102, 103]
    assert json.loads(dead["raw_payload"][1].as_py())["prediction_id"] == "d"


@pytest.mark.parametrize(
    "column, expected",
    [
        (pa.array([86_400_000, None], pa.int64()), [86_400_000, None]),
        (pa.array(["1970-01-02T00:00:00Z", "1970-01-02"]), [86_400_000, None]),
        (pa.array([1, 2], pa.date32()), [86_400_000, 2 * 86_400_000]),
        (pa.array([-0.5, math.inf]), [-1, None]),
        (pa.array([True, False]), [None, None]),
    ],
)
def test_parquet_event_time_column_types(column, expected):
    table = pa.table({"prediction_id": ["a", "b"], "event_time": column, "y_pred": [0.0, 0.0]})
    rec, dead = preds(table, fmt="parquet")
    got = dict(zip(rec["prediction_id"].to_pylist(), rec["event_time_ms"].to_pylist(), strict=True))
    assert [got.get(i) for i in "ab"] == expected
    assert set(dead["reason"].to_pylist()) <= {"missing_field", "bad_timestamp"}
    assert rec.num_rows + dead.num_rows == 2


def test_parquet_struct_segments_through_a_file(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(
        pa.table(
            {
                "prediction_id": ["a"],
                "event_time": ["2024-01-01T00:00:00+01:00"],
                "y_pred": [1.0],
                "segments": [{"region": "eu", "n": 4}],
            }
        ),
        path,
    )
    rec, _ = preds(pq.read_table(path), keys=("region", "n"), fmt="parquet")
    assert rec.to_pylist()[0]["event_time_ms"] == utc_ms("2024-01-01T00:00:00+01:00")
    assert (rec["seg.region"][0].as_py(), rec["seg.n"][0].as_py()) == ("eu", "4")


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


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="jsonl, csv, parquet"):
        preds(b"", fmt="xml")
    with pytest.raises(ValueError, match="prediction, label"):
        parse_json_messages([], "metric", "s", 0)


# --- properties -------------------------------------------------------------------------

_times = st.one_of(
    st.integers(-(10**13), 10**13),
    st.sampled_from(["2024-01-01T00:00:00Z", "2024-01-01 10:00:00.5-02:00", "bad", "", True]),
)
_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-5, 5),
    st.sampled_from(["1", None, False, [], {}]),
)
_records = st.fixed_dictionaries(
    {},
    optional={
        "prediction_id": st.one_of(st.text(max_size=3), st.integers(0, 3), st.none()),
        "event_time": _times,
        "y_pred": _values,
        "weight": _values,
        "model_version": st.one_of(st.text(max_size=2), st.integers(0, 2), st.none()),
        "segments": st.one_of(
            st.dictionaries(
                st.sampled_from(["region", "x"]), st.one_of(st.text(max_size=2), _values)
            ),
            st.text(max_size=2),
            st.none(),
        ),
    },
)
_lines = st.lists(
    st.one_of(
        _records.map(json.dumps),
        st.sampled_from(
            ["", "  ", "{bad", "[]", "null", " null", "5", '"s"', "{} null", "{}{}", "\udcff"]
        ),
        st.sampled_from(
            [
                '{"y_pred": -Inf}',
                '{"y_pred": -NaN}',
                '  {"prediction_id": "x"}',
                '{"prediction_id": "e", "event_time": 1, "y\\u005fpred": null}',
                '{"prediction_id": "d", "event_time": 1, "y_pred": 1, "prediction_id": "d2"}',
            ]
        ),
    ),
    max_size=40,
)


def _encode(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode("utf-8", errors="surrogateescape")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_lines)
def test_property_conservation_and_fast_path_equals_python_reference(lines):
    data = _encode(lines)
    records = sum(1 for text in lines if text.strip())
    rec, dead = preds(data, keys=("region",))
    assert rec.num_rows + dead.num_rows == records
    assert len(set(rec["position"].to_pylist() + dead["ingest_position"].to_pylist())) == records

    def slow(spec):  # pyarrow rejects everything: every line goes to Python's json
        prepare, _, leaf = decoders(spec)

        def reject(piece, starts):
            raise Unparsed("forced")

        return prepare, reject, leaf

    decoders = _jsonl.json_decoders
    with mock.patch.object(_jsonl, "json_decoders", slow):
        ref_rec, ref_dead = preds(data, keys=("region",))
    assert rec.equals(ref_rec) or _same_with_nan(rec, ref_rec)
    assert dead.equals(ref_dead)


def _same_with_nan(a: pa.Table, b: pa.Table) -> bool:
    if a.schema != b.schema or a.num_rows != b.num_rows:
        return False
    for name in a.column_names:
        x, y = a[name].to_pylist(), b[name].to_pylist()
        if name in ("y_pred", "weight"):
            if not np.array_equal(np.array(x, float), np.array(y, float), equal_nan=True):
                return False
        elif x != y:
            return False
    return True


_csv_cells = st.sampled_from(["a", "", "1", "nan", "-inf", "x,y", '"q"', "2024-01-01T00:00:00Z"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(_csv_cells, min_size=1, max_size=5), max_size=30))
def test_property_csv_conservation(rows):
    header = b"prediction_id,event_time,y_pred,weight\n"
    lines = [",".join(cells) for cells in rows]
    rec, dead = preds(_encode(lines), fmt="csv", csv_header=header)
    assert rec.num_rows + dead.num_rows == sum(1 for text in lines if text.strip())
