"""Parsing Parquet row groups (msewatch.transforms.parse.parquet).

Expected times come from Python's datetime or are derived in comments; expected reasons
follow the rules in the docstring of msewatch.transforms.parse.validate.
"""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from msewatch.schemas.records import make_position
from tests.parse_examples import preds, utc_ms


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


def test_a_huge_prediction_id_is_too_long_and_its_raw_payload_cut():
    # before: a 100 MB prediction_id was accepted (here 200 KB: the same rule)
    table = pa.table(
        {"prediction_id": ["ok", "é" * 100_000], "event_time": [0, 0], "y_pred": [1, 2]}
    )
    rec, dead = preds(table, fmt="parquet")
    assert rec["prediction_id"].to_pylist() == ["ok"]
    row = dead.to_pylist()[0]
    assert (row["reason"], row["detail"]) == (
        "too_long",
        "prediction_id of 200000 bytes, over 1024",
    )
    assert len(row["raw_payload"].encode()) < 70_000 and row["raw_payload"].endswith(" bytes]")
