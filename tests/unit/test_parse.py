"""Parsing JSON Lines and the record rules every format shares (msewatch.transforms.parse:
records.py, jsonl.py, text_blocks.py, validate.py, timestamps.py).

Expected times come from Python's datetime, expected offsets from the byte lengths of
the lines written, and expected reasons from the rules in the docstring of
msewatch.transforms.parse.validate. CSV, Parquet and Pub/Sub messages have their own
test_parse_*.py beside this one.
"""

from __future__ import annotations

import json
import math
from unittest import mock

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msewatch.schemas.records import DEAD_LETTER, LABELS, PREDICTIONS, make_position, with_segments
from msewatch.transforms.parse import jsonl as _jsonl
from msewatch.transforms.parse import text_blocks as _text_blocks
from msewatch.transforms.parse.records import parse_labels
from msewatch.transforms.parse.text_blocks import Unparsed
from tests.parse_examples import OK, block, encode, line, offsets, preds, utc_ms


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
    # ids and names are at most 1 KiB of UTF-8 (README): the detail gives the length only
    (
        {"prediction_id": "x" * 1025, "event_time": 1, "y_pred": 1},
        "too_long",
        "prediction_id of 1025 bytes, over 1024",
    ),
    (
        {"prediction_id": "é" * 513, "event_time": 1, "y_pred": 1},
        "too_long",
        "prediction_id of 1026 bytes",
    ),  # 513 characters, 2 bytes each
    (
        {"prediction_id": "a", "event_time": 1, "y_pred": 1, "model_version": "v" * 2000},
        "too_long",
        "model_version of 2000 bytes, over 1024",
    ),
    (
        {"prediction_id": "a", "event_time": 1, "y_pred": 1, "segments": {"region": "r" * 1025}},
        "too_long",
        "segments.region of 1025 bytes, over 1024",
    ),
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
        "1000-01-01T00:00:00Z",
        "8999-12-31T23:59:59.999Z",
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


def test_unknown_format_raises():
    with pytest.raises(ValueError, match="jsonl, csv, parquet"):
        preds(b"", fmt="xml")


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


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_lines)
def test_property_conservation_and_fast_path_equals_python_reference(lines):
    data = encode(lines)
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


def test_an_id_of_exactly_1_kib_is_accepted():
    ok = {"prediction_id": "é" * 512, "event_time": 1, "y_pred": 1, "model_version": "v" * 1024}
    rec, dead = preds(block(OK, ok), keys=("region",))
    assert (rec.num_rows, dead.num_rows) == (2, 0)


def test_a_line_over_1_mib_is_unparseable_without_being_parsed(monkeypatch):
    # before: a 100 MB line was parsed (about 15 times its size in memory) and accepted
    big = {"prediction_id": "big", "event_time": 1, "y_pred": 1, "pad": "x" * (1 << 20)}
    lines = [OK, big, OK]
    pieces = []  # the sizes of what the JSON parsers were given
    read_json, json_row = _jsonl.pjson.read_json, _jsonl._json_row

    def fast(source, **options):
        pieces.append(len(source.getvalue()))
        return read_json(source, **options)

    def one_line(text, spec):
        pieces.append(len(text))
        return json_row(text, spec)

    monkeypatch.setattr(_jsonl.pjson, "read_json", fast)
    monkeypatch.setattr(_jsonl, "_json_row", one_line)
    rec, dead = preds(block(*lines))
    assert rec["prediction_id"].to_pylist() == ["ok", "ok"]
    size = len(line(big).encode()) + 1  # with its newline
    row = dead.to_pylist()[0]
    assert (row["reason"], row["detail"]) == ("unparseable", f"line of {size} bytes, over 1048576")
    assert row["ingest_position"] == offsets(*lines)[1]
    assert len(row["raw_payload"].encode()) < 70_000  # the first 64 KiB, and its length
    assert row["raw_payload"].endswith(f"[cut: the line has {size - 1} bytes]")
    assert pieces and all(n < 1 << 20 for n in pieces)  # no parser saw it
