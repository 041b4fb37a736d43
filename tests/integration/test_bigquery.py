"""BigQuery sink against the bqemulator: tables, the view, pipeline writes, rejected rows.

The tests start ``bqemulator`` (tests/bq_emulator.py) once per module on 127.0.0.1,
skip with the reason when it cannot start (fail if ``MSEWATCH_REQUIRE_SERVERS=1``,
as in CI), and use one dataset per test. bqemulator 1.4 rejects a value it cannot
convert to the column type (a non-numeric string for INT64) in ``insertErrors`` when
``skipInvalidRows`` is set; it does not enforce REQUIRED, ignores unknown fields, and
ignores insertIds (no dedupe). Schema files, row shaping and the insert DoFn without
BigQuery are unit tests: ``tests/unit/test_bigquery_rows.py``.
"""

from __future__ import annotations

import json
import math
import uuid

import apache_beam as beam
import pandas as pd
import pyarrow as pa
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing import test_stream
from apache_beam.testing.util import assert_that, equal_to
from google.auth.credentials import AnonymousCredentials

from msewatch.schemas import bigquery_files
from msewatch.schemas.records import DEAD_LETTER, bigquery_schema
from msewatch.transforms.io import bigquery as bq
from tests.bq_emulator import emulator_or_skip
from tests.bq_rows import HOUR, PROJECT, T0, metrics_row

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
    # the row as inserted; the column it left out (detail, nullable) reads back NULL
    assert _query(client, f"SELECT * FROM `{PROJECT}.{dataset}.outcomes`") == [
        {**row, "detail": None}
    ]
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


def test_ensure_tables_adds_a_missing_repeated_record_column(endpoint, client, dataset):
    # A table made before the column existed gains it, with its sub-fields.
    table_id = f"{PROJECT}.{dataset}.metrics"
    _drop_column(client, table_id, "error_exceedance")
    bq.ensure_tables(PROJECT, dataset, api_endpoint=endpoint, credentials=AnonymousCredentials())
    added = [f for f in client.get_table(table_id).schema if f.name == "error_exceedance"]
    assert [(f.field_type, f.mode) for f in added] == [("RECORD", "REPEATED")]
    assert [(f.name, f.field_type) for f in added[0].fields] == [
        ("threshold", "FLOAT64"),
        ("sum_w", "FLOAT64"),
        ("count", "INT64"),
    ]


def test_ensure_tables_refuses_a_missing_required_column(endpoint, client, dataset):
    _drop_column(client, f"{PROJECT}.{dataset}.outcomes", "count")
    with pytest.raises(ValueError, match="REQUIRED columns count"):
        bq.ensure_tables(
            PROJECT, dataset, api_endpoint=endpoint, credentials=AnonymousCredentials()
        )


BAD_ROW = metrics_row(2, "overall", 0, 1.0, predictions="many")  # a string for INT64
METRICS_ROWS = [
    # window 0, overall: three accumulating panes; the latest (pane 2) has mse 1.0
    metrics_row(0, "overall", 0, 4.0),
    metrics_row(0, "overall", 1, 2.0),
    metrics_row(
        0,
        "overall",
        2,
        1.0,
        pane_timing="LATE",
        complete=True,
        error_exceedance=[
            {"threshold": 0.5, "sum_w": 2.5, "count": 3},
            {"threshold": 2.0, "sum_w": 0.0, "count": 0},
        ],
        labeled_within=[{"within_s": 3600, "labeled": 11}],
    ),  # fmt: skip
    # window 0, region=eu: the latest pane has no scored pairs, so mse is NaN
    metrics_row(0, "region=eu", 0, 9.0),
    metrics_row(0, "region=eu", 1, math.nan),
    # window 1, overall: one pane
    metrics_row(1, "overall", 0, 0.25),
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
    lists = _query(
        client,
        f"SELECT e.threshold, e.sum_w, e.count, w.within_s, w.labeled "
        f"FROM {table}.metrics_latest`, UNNEST(error_exceedance) AS e, "
        f"UNNEST(labeled_within) AS w ORDER BY e.threshold",
    )
    assert lists == [
        {"threshold": 0.5, "sum_w": 2.5, "count": 3, "within_s": 3600, "labeled": 11},
        {"threshold": 2.0, "sum_w": 0.0, "count": 0, "within_s": 3600, "labeled": 11},
    ]  # only window 0 overall has them; the other rows hold empty lists
    # every float column that was NaN is NULL, not NaN: r2 was NaN in every row
    assert _count(client, f"{PROJECT}.{dataset}.metrics", "r2 IS NULL") == GOOD_METRICS
    outcomes = _query(client, f"SELECT * FROM {table}.outcomes` ORDER BY outcome")
    expected = [{"detail": None, **r} for r in OUTCOMES_ROWS]  # detail: nullable, unset
    assert outcomes == sorted(expected, key=lambda r: r["outcome"])


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


def test_slo_tables_and_delivery_dead_letters_reach_bigquery(endpoint, client, dataset):
    """With an SLO file the sink also writes alerts, slo_status and comparisons rows, and
    dead letters made as rows (a failed alert delivery) go to the dead_letter table."""
    import datetime

    from tests.integration.test_alert_delivery import _row

    alert = _row("firing", datetime.datetime(2026, 11, 2, 9, tzinfo=datetime.UTC))
    status = {
        "slo": "forecast-rmse", "sli": "rmse", "slice": "overall", "frontier": T0,
        "watermark": None, "objective": 0.99, "threshold": 40.0, "period_s": 2592000,
        "value": 52.0, "good_share": 0.5, "eligible": 2.0, "budget_total": 0.02,
        "budget_consumed": 1.0, "budget_remaining": -49.0, "lookbacks_s": [300, 3600],
        "burn_rates": [100.0, 2.5], "suppressed": False, "page_state": "firing",
        "ticket_state": "ok", "emitted_at": T0,
    }  # fmt: skip
    comparison = {
        "comparison": "v2-rollout", "slice": "region=eu", "metric": "mse", "baseline": "v1",
        "candidate": "v2", "paired": True, "frontier": T0, "watermark": None, "windows": 24,
        "n_baseline": 900, "n_candidate": 900, "metric_baseline": 100.0,
        "metric_candidate": 130.0, "delta": 30.0, "ratio": 1.3, "ci_low": 0.18,
        "ci_high": 0.42, "margin": 0.05, "alpha": 0.05, "p_value": 1e-6,
        "decision": "FAIL", "emitted_at": T0,
    }  # fmt: skip
    failed = {
        "source": "http://127.0.0.1:9", "record_type": "alert",
        "reason": "alert_delivery_failed", "detail": "refused", "raw_payload": "{}",
        "ingest_position": None, "message_id": None, "attributes": None,
    }  # fmt: skip
    with beam.Pipeline(runner=FnApiRunner()) as p:
        result = {
            "metrics": p | "Metrics" >> beam.Create([]),
            "dead_letter": p | "DeadLetter" >> beam.Create([]),
            "outcomes": p | "Outcomes" >> beam.Create([]),
            "alerts": p | "Alerts" >> beam.Create([alert]),
            "slo_status": p | "Status" >> beam.Create([status]),
            "comparisons": p | "Comparisons" >> beam.Create([comparison]),
            "dead_letter_rows": p | "Failed" >> beam.Create([failed]),
        } | "WriteBigQuery" >> bq.WriteBigQueryTables(
            PROJECT, dataset, False, api_endpoint=endpoint,
            credentials=AnonymousCredentials(), retry_deadline_seconds=10,
        )  # fmt: skip
        assert_that(result["rejected"], equal_to([]), "Rejected")
    table = f"`{PROJECT}.{dataset}"
    got = _query(client, f"SELECT alert, state, slice, burn_rate_long FROM {table}.alerts`")
    assert got == [
        {"alert": alert["alert"], "state": "firing", "slice": alert["slice"],
         "burn_rate_long": 20.0},
    ]  # fmt: skip
    rates = _query(client, f"SELECT r FROM {table}.slo_status`, UNNEST(burn_rates) AS r")
    assert sorted(r["r"] for r in rates) == [2.5, 100.0]
    reasons = _query(client, f"SELECT reason FROM {table}.dead_letter`")
    assert reasons == [{"reason": "alert_delivery_failed"}]
    decided = _query(client, f"SELECT slice, paired, decision FROM {table}.comparisons`")
    assert decided == [{"slice": "region=eu", "paired": True, "decision": "FAIL"}]


def _rows(frame):
    """A frame's rows as tuples, every null (NaN, NA, NaT) as None: the two clients
    return nulls of integer and time columns as different pandas types."""
    return [
        tuple(None if not isinstance(v, list | tuple) and pd.isna(v) else v for v in row)
        for row in frame.astype(object).itertuples(index=False)
    ]


@pytest.mark.parametrize("name", ["latest", "trend", "coverage", "dead-letter"])
def test_both_dialects_give_the_same_rows(endpoint, client, dataset, name):
    """The named query's BigQuery file, run by the emulator on the tables the pipeline
    wrote, gives the rows its DuckDB text (translated from that file by sqlglot) gives on
    the same rows read back into DuckDB. (worst reads a day of complete windows: the
    pipeline's rows have one, tests/e2e/test_query.py checks it on a run's output.)"""
    import duckdb

    from msewatch.schemas import queries

    _run_pipeline(endpoint, dataset)
    params = {"slice": "overall"} if name in queries.QUERY_PARAMS else {}
    sql = queries.load_query("bigquery", name, dataset=f"{PROJECT}.{dataset}")
    for key, value in params.items():  # bqemulator 1.4 refuses named query parameters
        sql = sql.replace(f"@{key}", f"'{value}'")
    emulated = client.query(sql).result().to_arrow(create_bqstorage_client=False).to_pandas()
    con = duckdb.connect()
    for table in ("metrics", "dead_letter", "outcomes"):
        rows = client.query(f"SELECT * FROM `{PROJECT}.{dataset}.{table}`").result()
        con.register(table, rows.to_arrow(create_bqstorage_client=False))
    con.execute(f"CREATE VIEW metrics_latest AS {queries.load_query('duckdb', 'metrics_latest')}")
    local = con.sql(queries.load_query("duckdb", name), params=params or None).df()
    assert list(emulated.columns) == list(local.columns)
    assert len(local) > 0, name  # the rows exist: an empty answer would prove nothing
    assert _rows(emulated) == _rows(local)
