"""Parsing CSV records (msewatch.transforms.parse.csv).

Expected offsets are the byte lengths of the lines written; expected reasons follow the
rules in the docstring of msewatch.transforms.parse.validate and the cell rules in the
docstring of msewatch.transforms.parse.csv.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msewatch.transforms.parse.records import parse_labels
from tests.parse_examples import encode, offsets, preds


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


_csv_cells = st.sampled_from(["a", "", "1", "nan", "-inf", "x,y", '"q"', "2024-01-01T00:00:00Z"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(_csv_cells, min_size=1, max_size=5), max_size=30))
def test_property_csv_conservation(rows):
    header = b"prediction_id,event_time,y_pred,weight\n"
    lines = [",".join(cells) for cells in rows]
    rec, dead = preds(encode(lines), fmt="csv", csv_header=header)
    assert rec.num_rows + dead.num_rows == sum(1 for text in lines if text.strip())
