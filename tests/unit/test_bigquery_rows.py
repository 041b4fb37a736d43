"""BigQuery sink without BigQuery: schema files, names, row shaping, and the insert
DoFn against a fake client (rejected rows, request splitting, retries).

The same sink against the bqemulator is in ``tests/integration/test_bigquery.py``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math

import apache_beam as beam
import numpy as np
import pytest
import requests
from google.api_core import exceptions

from msewatch.schemas import bigquery_files
from msewatch.schemas.records import bigquery_schema
from msewatch.transforms.io import bigquery as bq
from tests.bq_rows import HOUR, PROJECT, T0, UTC, metrics_row

# --- schema files and the view -------------------------------------------------------


def test_committed_schema_files_equal_the_field_lists():
    assert bigquery_files.stale_schema_files(bigquery_files.SCHEMA_DIR) == []
    for table, fields in bigquery_files.TABLES.items():
        path = bigquery_files.SCHEMA_DIR / f"{table}.json"
        assert json.loads(path.read_text()) == bigquery_schema(fields)


def test_check_reports_a_stale_schema_file(tmp_path, capsys):
    bigquery_files.write_schema_files(tmp_path)
    assert bigquery_files.main(["--check", str(tmp_path)]) == 0
    (tmp_path / "metrics.json").write_text("[]\n")
    assert bigquery_files.main(["--check", str(tmp_path)]) == 1
    assert "metrics.json" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("project", "dataset"),
    [("msewatch-test", "ds`; DROP TABLE x"), ("Bad_Project", "ds"), ("", "ds"), ("proj-1", ""),
     ("msewatch-test", "ds\n")],  # a final newline: "$" matched before it
)  # fmt: skip
def test_bad_names_are_refused(project, dataset):
    with pytest.raises(ValueError, match="bad BigQuery"):
        bigquery_files.parse_output_url(f"bq://{project}.{dataset}")
    with pytest.raises(ValueError, match="bad BigQuery"):
        bigquery_files.view_sql(project, dataset)
    with pytest.raises(ValueError, match="bad BigQuery"):
        bq.WriteBigQueryTables(project, dataset, streaming=False)


@pytest.mark.parametrize(
    ("output", "expected"),
    [("bq://my-project.monitoring", ("my-project", "monitoring")), ("out/dir", None),
     ("bq://example.com:my-project.ds_1/", ("example.com:my-project", "ds_1"))],
)  # fmt: skip
def test_parse_output_url(output, expected):
    assert bigquery_files.parse_output_url(output) == expected


def test_parse_output_url_needs_a_dataset():
    with pytest.raises(ValueError, match="expected bq://PROJECT.DATASET"):
        bigquery_files.parse_output_url("bq://my-project")


@pytest.mark.parametrize(
    "kwargs", [{"batch_rows": 0}, {"batch_bytes": 20_000_000}, {"retry_deadline_seconds": 0}]
)
def test_batch_limits_are_checked(kwargs):
    with pytest.raises(ValueError, match="must be"):
        bq.WriteBigQueryTables(PROJECT, "ds", streaming=False, **kwargs)


# --- row shaping ---------------------------------------------------------------------


ISO = "2026-01-05T01:30:00.000000+00:00"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (math.nan, None), (math.inf, None), (-math.inf, None), (np.float64("nan"), None),
        (2.5, 2.5), (np.int64(7), 7), (True, True), (None, None), ("eu", "eu"),
        (datetime.datetime(2026, 1, 5, 1, 30, tzinfo=UTC), ISO),
        # 03:30 at UTC+2 is 01:30 UTC; a naive datetime is taken as UTC
        (datetime.datetime(2026, 1, 5, 3, 30, tzinfo=datetime.timezone(2 * HOUR)), ISO),
        (datetime.datetime(2026, 1, 5, 1, 30), ISO),
        # BYTES (a value sketch) as base64: base64.b64encode(b"\x01\xff\x00") by hand
        (b"\x01\xff\x00", "Af8A"), (memoryview(b"\x01\xff\x00"), "Af8A"),
    ],
)  # fmt: skip
def test_json_value(value, expected):
    out = bq.json_value(value)
    assert out == expected and type(out) is type(expected)


def test_lists_of_records_are_arrays_of_objects():
    value = [{"threshold": 1.0, "sum_w": math.inf, "count": np.int64(2)}, {"threshold": 2.5}]
    assert bq.json_value(value) == [
        {"threshold": 1.0, "sum_w": None, "count": 2},  # inf -> NULL, as at the top level
        {"threshold": 2.5},
    ]
    assert bq.json_value(()) == []
    row = metrics_row(0, "overall", 0, 4.0, labeled_within=[{"within_s": 60, "labeled": 3}])
    del row["error_exceedance"]
    out = bq.json_row(row, "metrics")
    assert out["error_exceedance"] == []  # BigQuery has no NULL arrays
    assert out["labeled_within"] == [{"within_s": 60, "labeled": 3}]
    json.dumps(out, allow_nan=False)  # JSON-safe


def test_the_metrics_schema_has_repeated_records():
    by_name = {f["name"]: f for f in bigquery_schema(bigquery_files.TABLES["metrics"])}
    exceed, within = by_name["error_exceedance"], by_name["labeled_within"]
    assert (exceed["type"], exceed["mode"], within["type"], within["mode"]) == (
        "RECORD", "REPEATED", "RECORD", "REPEATED",
    )  # fmt: skip
    assert [(f["name"], f["type"], f["mode"]) for f in exceed["fields"]] == [
        ("threshold", "FLOAT64", "REQUIRED"),
        ("sum_w", "FLOAT64", "NULLABLE"),
        ("count", "INT64", "NULLABLE"),
    ]
    assert [(f["name"], f["type"]) for f in within["fields"]] == [
        ("within_s", "INT64"),
        ("labeled", "INT64"),
    ]
    assert "fields" not in by_name["sum_w"]


def test_row_ids_are_the_natural_keys():
    row = bq.json_row(metrics_row(0, "overall", 0, 4.0), "metrics")
    same_key = bq.json_row(metrics_row(0, "overall", 0, 1.0, emitted_at=T0), "metrics")
    next_pane = bq.json_row(metrics_row(0, "overall", 1, 4.0), "metrics")
    assert bq.row_id("metrics", row) == bq.row_id("metrics", same_key)
    assert bq.row_id("metrics", row) != bq.row_id("metrics", next_pane)
    outcome = {"record_type": "label", "outcome": "joined", "count": 3}
    assert bq.row_id("outcomes", outcome, 0) == bq.row_id("outcomes", dict(outcome), 0)
    assert bq.row_id("outcomes", outcome, 0) != bq.row_id("outcomes", outcome, 1)
    # a duplicate row and its conflicting part of one firing may have equal counts
    plain = {"record_type": "label", "outcome": "duplicate", "count": 2, "detail": None}
    part = dict(plain, detail="conflicting")
    assert bq.row_id("outcomes", plain, 0) != bq.row_id("outcomes", part, 0)
    # a row without a detail keeps the id it had before the column existed
    key = json.dumps(["outcomes", ["label", "duplicate", 2, 0]], separators=(",", ":"))
    assert bq.row_id("outcomes", plain, 0) == hashlib.sha256(key.encode()).hexdigest()


# --- the insert DoFn against a fake client -------------------------------------------


class _FakeClient:
    """Records insert_rows_json calls; ``behaviour(rows)`` returns errors or raises."""

    def __init__(self, behaviour):
        self.behaviour, self.calls = behaviour, []

    def insert_rows_json(self, table, rows, row_ids, **kwargs):
        self.calls.append((table, list(rows), list(row_ids), kwargs))
        return self.behaviour(rows)


def _insert_fn(behaviour, streaming=False, batch_bytes=1_000_000):
    client = _FakeClient(behaviour)
    settings = {"streaming": streaming, "api_endpoint": None, "credentials": None,
                "batch_bytes": batch_bytes, "retry_deadline_seconds": 1.0}  # fmt: skip
    fn = bq._InsertRowsFn(PROJECT, "ds", "metrics", settings, lambda *args: client)
    fn.setup()
    return fn, client


def _items(n):
    return [(f"id{i}", {"slice": f"s{i}", "predictions": i}) for i in range(n)]


def _rejected(outputs):
    return [o.value for o in outputs if isinstance(o, beam.pvalue.TaggedOutput)]


def test_rows_in_insert_errors_become_dead_letters_and_row_ids_are_sent():
    error = [{"reason": "invalid", "location": "predictions", "message": "bad"}]
    fn, client = _insert_fn(lambda rows: [{"index": 1, "errors": error}])
    rejected = _rejected(fn.process(_items(3)))
    assert client.calls[0][0] == f"{PROJECT}.ds.metrics"
    assert client.calls[0][2] == ["id0", "id1", "id2"]
    assert client.calls[0][3]["skip_invalid_rows"] is True
    assert len(rejected) == 1
    assert rejected[0]["reason"] == "bigquery_insert_failed"
    assert rejected[0]["record_type"] == "metrics"
    assert json.loads(rejected[0]["raw_payload"]) == {"slice": "s1", "predictions": 1}
    assert json.loads(rejected[0]["detail"]) == error


def test_a_rejected_request_is_halved_until_the_bad_row_is_found():
    def behaviour(rows):
        if any(row["slice"] == "s5" for row in rows):
            raise exceptions.BadRequest("row too large")
        return []

    fn, client = _insert_fn(behaviour)
    rejected = _rejected(fn.process(_items(8)))
    assert [json.loads(r["raw_payload"])["slice"] for r in rejected] == ["s5"]
    written = [row["slice"] for _, rows, _, _ in client.calls for row in rows]
    # every good row was sent in a request that succeeded; s5 alone was refused
    assert sorted(set(written) - {"s5"}) == [f"s{i}" for i in range(8) if i != 5]
    assert len(client.calls) <= 2 * 8


def _raise(exc):
    def behaviour(rows):
        raise exc

    return behaviour


TRANSIENT = [exceptions.ServiceUnavailable("backend down"),
             exceptions.RetryError("deadline exceeded: backend down", cause=None),
             requests.exceptions.ConnectionError("backend down")]  # fmt: skip


@pytest.mark.parametrize("error", TRANSIENT)
def test_streaming_sends_a_request_that_failed_after_retries_to_dead_letter(error):
    fn, _ = _insert_fn(_raise(error), streaming=True)
    rejected = _rejected(fn.process(_items(3)))
    assert len(rejected) == 3 and "backend down" in rejected[0]["detail"]


@pytest.mark.parametrize("error", TRANSIENT)
def test_bounded_raises_a_request_that_failed_after_retries(error):
    fn, _ = _insert_fn(_raise(error))
    with pytest.raises(type(error)):
        list(fn.process(_items(3)))


def test_a_missing_table_is_a_configuration_error():
    fn, _ = _insert_fn(_raise(exceptions.NotFound("no table")), streaming=True)
    with pytest.raises(RuntimeError, match="ensure_tables"):
        list(fn.process(_items(1)))


def test_requests_are_split_by_size():
    fn, client = _insert_fn(lambda rows: [], batch_bytes=200)
    list(fn.process(_items(10)))
    assert len(client.calls) > 1
    assert sum(len(rows) for _, rows, _, _ in client.calls) == 10


def test_a_dataset_with_a_final_newline_is_refused_in_the_named_queries():
    from msewatch.schemas import queries

    assert "proj.ds." in queries.load_query("bigquery", queries.QUERY_NAMES[0], dataset="proj.ds")
    with pytest.raises(ValueError, match="bad BigQuery dataset"):
        queries.load_query("bigquery", queries.QUERY_NAMES[0], dataset="proj.ds\n")
