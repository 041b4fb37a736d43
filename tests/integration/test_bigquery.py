"""BigQuery sink: schema files, row shaping, failure handling, and emulator runs.

The emulator tests start ``bqemulator`` (tests/bq_emulator.py) once per module on
127.0.0.1, skip with the reason when it cannot start (fail if
``MSEWATCH_REQUIRE_BQ_EMULATOR=1``, as in CI), and use one dataset per test. bqemulator
1.4 rejects a value it cannot convert to the column type (a non-numeric string for
INT64) in ``insertErrors`` when ``skipInvalidRows`` is set; it does not enforce
REQUIRED, ignores unknown fields, and ignores insertIds (no dedupe).
"""

from __future__ import annotations

import datetime
import json
import math
import uuid

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
import requests
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing import test_stream
from apache_beam.testing.util import assert_that, equal_to
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials

from msewatch.schemas import bigquery_files
from msewatch.schemas.records import DEAD_LETTER, METRICS_FIELDS, bigquery_schema
from msewatch.transforms.io import bigquery as bq
from tests.bq_emulator import emulator_or_skip

PROJECT = "msewatch-test"
UTC = datetime.UTC
T0 = datetime.datetime(2026, 1, 5, tzinfo=UTC)
HOUR = datetime.timedelta(hours=1)


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
    [("msewatch-test", "ds`; DROP TABLE x"), ("Bad_Project", "ds"), ("", "ds"), ("proj-1", "")],
)
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
    ],
)  # fmt: skip
def test_json_value(value, expected):
    out = bq.json_value(value)
    assert out == expected and type(out) is type(expected)


def _metrics_row(hour, slice_, pane, mse, **extra):
    """A full metrics row: NaN floats and zero counts except the named values."""
    start = T0 + hour * HOUR
    row = {f.name: (math.nan if f.bq_type == "FLOAT64" else 0) for f in METRICS_FIELDS}
    row.update(
        window_start=start,
        window_end=start + HOUR,
        slice=slice_,
        predictions=10 + pane,
        mse=mse,
        rmse=math.sqrt(mse),
        pane_index=pane,
        pane_timing="EARLY" if pane == 0 else "LATE",
        complete=False,
        emitted_at=T0 + datetime.timedelta(days=1, minutes=pane),
    )
    row.update(extra)
    return row


def test_row_ids_are_the_natural_keys():
    row = bq.json_row(_metrics_row(0, "overall", 0, 4.0), "metrics")
    same_key = bq.json_row(_metrics_row(0, "overall", 0, 1.0, emitted_at=T0), "metrics")
    next_pane = bq.json_row(_metrics_row(0, "overall", 1, 4.0), "metrics")
    assert bq.row_id("metrics", row) == bq.row_id("metrics", same_key)
    assert bq.row_id("metrics", row) != bq.row_id("metrics", next_pane)
    outcome = {"record_type": "label", "outcome": "joined", "count": 3}
    assert bq.row_id("outcomes", outcome, 0) == bq.row_id("outcomes", dict(outcome), 0)
    assert bq.row_id("outcomes", outcome, 0) != bq.row_id("outcomes", outcome, 1)


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


# --- against the emulator ------------------------------------------------------------


@pytest.fixture(scope="module")
def endpoint():
    with emulator_or_skip() as url:
        yield url


@pytest.fixture
def client(endpoint):
    return bq.make_client(PROJECT, endpoint, AnonymousCredentials())


@pytest.fixture
def dataset(endpoint):
    name = "t_" + uuid.uuid4().hex[:12]
    bq.ensure_tables(PROJECT, name, api_endpoint=endpoint, credentials=AnonymousCredentials())
    return name


def test_ensure_tables_creates_partitioned_clustered_tables_and_the_view(endpoint, client, dataset):
    row = {"record_type": "label", "outcome": "input", "count": 1}
    assert client.insert_rows_json(f"{PROJECT}.{dataset}.outcomes", [row]) == []
    # a second call keeps the tables and their rows
    bq.ensure_tables(PROJECT, dataset, api_endpoint=endpoint, credentials=AnonymousCredentials())
    assert _query(client, f"SELECT * FROM `{PROJECT}.{dataset}.outcomes`") == [row]
    metrics = client.get_table(f"{PROJECT}.{dataset}.metrics")
    assert metrics.time_partitioning.type_ == "DAY"
    assert metrics.time_partitioning.field == "window_start"
    assert metrics.clustering_fields == ["slice"]
    for table, fields in bigquery_files.TABLES.items():
        got = client.get_table(f"{PROJECT}.{dataset}.{table}")
        assert [(f.name, f.field_type, f.mode) for f in got.schema] == [
            (f["name"], f["type"], f["mode"]) for f in bigquery_schema(fields)
        ]
    assert client.get_table(f"{PROJECT}.{dataset}.dead_letter").time_partitioning is None
    assert client.get_table(f"{PROJECT}.{dataset}.metrics_latest").table_type == "VIEW"


def _drop_column(client, table_id, column):
    table = client.get_table(table_id)
    client.delete_table(table)
    table.schema = [f for f in table.schema if f.name != column]
    client.create_table(table)


def test_ensure_tables_adds_a_missing_nullable_column(endpoint, client, dataset):
    table_id = f"{PROJECT}.{dataset}.dead_letter"
    _drop_column(client, table_id, "attributes")
    bq.ensure_tables(PROJECT, dataset, api_endpoint=endpoint, credentials=AnonymousCredentials())
    assert [f.name for f in client.get_table(table_id).schema] == DEAD_LETTER.names


def test_ensure_tables_refuses_a_missing_required_column(endpoint, client, dataset):
    _drop_column(client, f"{PROJECT}.{dataset}.outcomes", "count")
    with pytest.raises(ValueError, match="REQUIRED columns count"):
        bq.ensure_tables(
            PROJECT, dataset, api_endpoint=endpoint, credentials=AnonymousCredentials()
        )


BAD_ROW = _metrics_row(2, "overall", 0, 1.0, predictions="many")  # a string for INT64
METRICS_ROWS = [
    # window 0, overall: three accumulating panes; the latest (pane 2) has mse 1.0
    _metrics_row(0, "overall", 0, 4.0),
    _metrics_row(0, "overall", 1, 2.0),
    _metrics_row(0, "overall", 2, 1.0, pane_timing="LATE", complete=True),
    # window 0, region=eu: the latest pane has no scored pairs, so mse is NaN
    _metrics_row(0, "region=eu", 0, 9.0),
    _metrics_row(0, "region=eu", 1, math.nan),
    # window 1, overall: one pane
    _metrics_row(1, "overall", 0, 0.25),
    BAD_ROW,
]
GOOD_METRICS = len(METRICS_ROWS) - 1
OUTCOMES_ROWS = [
    {"record_type": "prediction", "outcome": "input", "count": 5},
    {"record_type": "prediction", "outcome": "joined", "count": 4},
]


def _dead_letter_batch():
    rows = [
        {"source": "p.jsonl", "record_type": "prediction", "reason": "missing_field",
         "detail": "no y_pred", "raw_payload": '{"prediction_id": "a"}', "ingest_position": 0},
        {"source": "l.jsonl", "record_type": "label", "reason": "bad_json",
         "detail": "not JSON", "raw_payload": "{", "ingest_position": 17},
    ]  # fmt: skip
    return pa.Table.from_pylist(rows, schema=DEAD_LETTER)


def _metrics_stream():
    """METRICS_ROWS as an unbounded source: one row per step, stamped at its window end."""
    stream = test_stream.TestStream()
    for row in METRICS_ROWS:
        stamped = beam.window.TimestampedValue(row, row["window_end"].timestamp() - 0.001)
        stream = stream.add_elements([stamped]).advance_processing_time(1)
    return stream.advance_watermark_to_infinity()


def _run_pipeline(endpoint, dataset, streaming=False):
    """METRICS_ROWS, two dead letters and OUTCOMES_ROWS through the sink: bounded on the
    FnApiRunner, or metrics from a TestStream on the streaming DirectRunner."""
    runner, options = (
        (None, PipelineOptions(streaming=True)) if streaming else (FnApiRunner(), None)
    )
    with beam.Pipeline(runner=runner, options=options) as p:
        source = _metrics_stream() if streaming else beam.Create(METRICS_ROWS)
        result = {
            "metrics": p | "Metrics" >> source,
            "dead_letter": p | "DeadLetter" >> beam.Create([_dead_letter_batch()]),
            "outcomes": p | "Outcomes" >> beam.Create(OUTCOMES_ROWS),
        } | "WriteBigQuery" >> bq.WriteBigQueryTables(
            PROJECT, dataset, streaming, api_endpoint=endpoint,
            credentials=AnonymousCredentials(), retry_deadline_seconds=10,
        )  # fmt: skip
        rejected = result["rejected"] | beam.Map(lambda r: (r["record_type"], r["reason"]))
        assert_that(rejected, equal_to([("metrics", "bigquery_insert_failed")]), "Rejected")
        assert_that(result["lost"], equal_to([]), label="Lost")


def _query(client, sql):
    return [dict(row) for row in client.query(sql).result()]


def _count(client, table, where="TRUE"):
    return _query(client, f"SELECT COUNT(*) AS n FROM `{table}` WHERE {where}")[0]["n"]


def test_pipeline_writes_rows_and_the_view_picks_the_latest_pane(endpoint, client, dataset):
    _run_pipeline(endpoint, dataset)
    table = f"`{PROJECT}.{dataset}"
    assert _count(client, f"{PROJECT}.{dataset}.metrics") == GOOD_METRICS
    latest = _query(
        client,
        f"SELECT window_start, slice, pane_index, mse, predictions, complete "
        f"FROM {table}.metrics_latest` ORDER BY window_start, slice",
    )
    assert latest == [
        {"window_start": T0, "slice": "overall", "pane_index": 2, "mse": 1.0,
         "predictions": 12, "complete": True},
        {"window_start": T0, "slice": "region=eu", "pane_index": 1, "mse": None,
         "predictions": 11, "complete": False},
        {"window_start": T0 + HOUR, "slice": "overall", "pane_index": 0, "mse": 0.25,
         "predictions": 10, "complete": False},
    ]  # fmt: skip
    # every float column that was NaN is NULL, not NaN: r2 was NaN in every row
    assert _count(client, f"{PROJECT}.{dataset}.metrics", "r2 IS NULL") == GOOD_METRICS
    outcomes = _query(client, f"SELECT * FROM {table}.outcomes` ORDER BY outcome")
    assert outcomes == sorted(OUTCOMES_ROWS, key=lambda r: r["outcome"])


def test_a_row_bigquery_rejects_ends_in_dead_letter(endpoint, client, dataset):
    _run_pipeline(endpoint, dataset)
    rows = _query(client, f"SELECT * FROM `{PROJECT}.{dataset}.dead_letter` ORDER BY source")
    assert [(r["source"], r["reason"]) for r in rows] == [
        (f"bq://{PROJECT}.{dataset}.metrics", "bigquery_insert_failed"),
        ("l.jsonl", "bad_json"),
        ("p.jsonl", "missing_field"),
    ]
    rejected = rows[0]
    assert rejected["record_type"] == "metrics"
    assert json.loads(rejected["raw_payload"]) == bq.json_row(BAD_ROW, "metrics")
    # detail is BigQuery's insertErrors entry (bqemulator names the wrong column in it)
    assert json.loads(rejected["detail"])[0]["reason"] == "invalid"
    assert rows[2]["ingest_position"] == 0 and rows[2]["raw_payload"] == '{"prediction_id": "a"}'


def test_streaming_pipeline_writes_the_same_rows(endpoint, client, dataset):
    _run_pipeline(endpoint, dataset, streaming=True)
    assert _count(client, f"{PROJECT}.{dataset}.metrics") == GOOD_METRICS
    # the two input dead letters and the rejected row
    assert _count(client, f"{PROJECT}.{dataset}.dead_letter") == 3


def test_rerun_duplicates_rows_in_the_emulator_but_not_in_the_view(endpoint, client, dataset):
    _run_pipeline(endpoint, dataset)
    view = f"SELECT * FROM `{PROJECT}.{dataset}.metrics_latest` ORDER BY window_start, slice"
    first = _query(client, view)
    _run_pipeline(endpoint, dataset)
    # bqemulator ignores insertIds (the same ones are sent: see the row_id tests), so
    # the rerun's rows are stored again, where BigQuery would drop them within its
    # dedupe window; the view still has one row per window and slice, as before.
    assert _count(client, f"{PROJECT}.{dataset}.metrics") == 2 * GOOD_METRICS
    assert _query(client, view) == first
