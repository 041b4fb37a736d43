"""BigQuery sink: :class:`WriteBigQueryTables`; :func:`ensure_tables` sets the tables up.

Tables in ``PROJECT.DATASET``, schemas ``schemas/bigquery/*.json`` (from the field
lists of the Parquet schemas, :mod:`msewatch.schemas.bigquery_files`): ``metrics``
(every pane of every window and slice; day-partitioned on ``window_start``, UTC;
clustered on ``slice``), ``dead_letter``, ``outcomes`` (deltas), and the view
``metrics_latest``: the latest pane (highest ``pane_index``) per
``(window_start, window_end, slice)``.

**Setup.** :func:`ensure_tables` creates the dataset, tables and view, idempotently.
Call it once at launch, from the launching process, never from workers.

**Time.** The sink has no time logic: rows are moved into the global window and
batched within a bundle, so each pane is written when the metrics transform fires it
(that transform owns windows, triggers and allowed lateness); nothing is dropped as late.

**Writing.** Streaming inserts (``insert_rows_json``, i.e. ``tabledata.insertAll``),
bounded or not, at most ``batch_rows`` rows and about ``batch_bytes`` per request.
Timestamps are ISO 8601 in UTC (``2026-01-01T00:00:00.000000+00:00``; a naive datetime
is taken as UTC). JSON cannot carry NaN or infinity, so **a non-finite float is written
as NULL**: an empty metric (NaN in Parquet) and an overflow (inf) are both NULL in
BigQuery; ``scored``, ``nonfinite_errors`` and the ``nan_*`` counts tell them apart.
A list-of-records column (``REPEATED RECORD``, e.g. ``error_exceedance``) is a JSON
array of objects, shaped value by value the same way; a missing one is ``[]``. A BYTES
value (a value sketch) is base64, as BigQuery's JSON reads BYTES.

**Idempotence.** Each row has a deterministic insertId (:func:`row_id`): metrics hash
``(window_start, window_end, slice, pane_index)``, outcomes ``(record_type, outcome,
count, pane index of the firing[, detail])``, dead letters the whole row. BigQuery drops a row
whose insertId it saw in about the last minute (best effort), so retried requests and
bundles do not duplicate rows; a later rerun can, which ``metrics_latest`` absorbs.

**Failures** are never retried forever:

* rows BigQuery rejects (``insertErrors``, or a 400 for a one-row request, found by
  halving a rejected request) go to ``dead_letter``: reason ``bigquery_insert_failed``,
  ``record_type`` the table, ``raw_payload`` the row JSON, ``detail`` the error.
* a request still failing (5xx, 429, network) after ``retry_deadline_seconds`` of the
  client's retries: streaming, its rows go to ``dead_letter`` likewise (a later
  accumulating pane carries the window's totals again); bounded, it raises, so the
  runner retries the bundle a few times and then fails the job.
* a missing table or dataset, or no permission (404, 403, 401), raises with what to do.
* a rejected dead-letter row has nowhere to go: it is logged at ERROR and counted
  (counter ``msewatch.bigquery:dead_letter_rows_rejected``).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import logging
import math
from collections.abc import Mapping

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.transforms import window
from google.api_core import exceptions
from google.cloud import bigquery

from msewatch.schemas.bigquery_files import (
    TABLE_LAYOUT,
    TABLES,
    VIEW_NAME,
    check_names,
    view_sql,
)
from msewatch.schemas.records import bigquery_schema

_LOG = logging.getLogger(__name__)
NAMESPACE = "msewatch.bigquery"
REASON_INSERT_FAILED = "bigquery_insert_failed"
MAX_REQUEST_ROWS = 50_000  # BigQuery's limit per insertAll request
MAX_REQUEST_BYTES = 10_000_000  # BigQuery's HTTP request size limit


def make_client(project: str, api_endpoint: str | None = None, credentials=None):
    """A ``google.cloud.bigquery.Client``; ``api_endpoint`` points it at an emulator."""
    options = {"api_endpoint": api_endpoint} if api_endpoint else None
    return bigquery.Client(project=project, client_options=options, credentials=credentials)


def json_value(value):
    """One value as BigQuery's JSON takes it (see the module docstring)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return value.astimezone(datetime.UTC).isoformat(timespec="microseconds")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):  # BYTES: base64, as BigQuery reads it
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, list | tuple | np.ndarray):  # REPEATED: an array
        return [json_value(item) for item in value]
    if isinstance(value, Mapping):  # RECORD: an object
        return {str(key): json_value(item) for key, item in value.items()}
    return str(value)


def json_row(row, table: str) -> dict:
    """``row`` (a mapping) as a JSON-safe dict with exactly ``table``'s columns."""
    out = {f.name: json_value(row.get(f.name)) for f in TABLES[table]}
    for f in TABLES[table]:
        if f.repeated and out[f.name] is None:
            out[f.name] = []  # BigQuery has no NULL arrays
    return out


def row_id(table: str, row: dict, pane_index: int = 0) -> str:
    """The deterministic insertId (64 hex digits) of ``row``, a :func:`json_row` of ``table``.

    ``pane_index`` (outcomes only) is that of the firing that made the row: outcomes
    rows are deltas, so equal rows of two firings must both be kept.
    """
    if table == "metrics":
        key = [row["window_start"], row["window_end"], row["slice"], row["pane_index"]]
    elif table == "outcomes":
        key = [row["record_type"], row["outcome"], row["count"], pane_index]
        key += [row["detail"]] if row.get("detail") else []  # ids of plain rows unchanged
    else:
        key = row
    text = json.dumps([table, key], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _keyed(row: dict, table: str) -> tuple[str, dict]:
    return row_id(table, row), row


class _OutcomesToJsonFn(beam.DoFn):
    """Outcomes dict -> ``(row_id, JSON row)``; the id includes the firing's pane index."""

    def process(self, row, pane=beam.DoFn.PaneInfoParam):
        out = json_row(row, "outcomes")
        yield row_id("outcomes", out, pane.index if pane is not None else 0), out


def _batches(items, max_bytes):
    """Splits ``(row_id, row)`` items into requests of at most about ``max_bytes``."""
    chunk, size = [], 0
    for item in items:
        n = len(json.dumps(item[1])) + len(item[0]) + 32
        if chunk and size + n > max_bytes:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += n
    if chunk:
        yield chunk


class _InsertRowsFn(beam.DoFn):
    """Inserts lists of ``(row_id, JSON row)`` into one table; outputs only, tagged
    :attr:`REJECTED`, a ``dead_letter`` JSON row per rejected row (module docstring)."""

    REJECTED = "rejected"

    def __init__(self, project, dataset, table, settings, client_factory=make_client):
        self._project, self._dataset, self._table = project, dataset, table
        self._settings = settings  # dict: streaming, batch_bytes, deadline, endpoint, creds
        self._client_factory = client_factory

    def setup(self):
        s = self._settings
        self._client = self._client_factory(self._project, s["api_endpoint"], s["credentials"])
        self._ref = f"{self._project}.{self._dataset}.{self._table}"
        self._retry = bigquery.DEFAULT_RETRY.with_deadline(s["retry_deadline_seconds"])
        self._written = Metrics.counter(NAMESPACE, f"{self._table}_rows_written")
        self._rejected = Metrics.counter(NAMESPACE, f"{self._table}_rows_rejected")

    def process(self, batch):
        for chunk in _batches(batch, self._settings["batch_bytes"]):
            yield from self._insert(chunk)

    def _insert(self, chunk):
        try:
            errors = self._client.insert_rows_json(
                self._ref,
                [row for _, row in chunk],
                row_ids=[rid for rid, _ in chunk],
                skip_invalid_rows=True,
                retry=self._retry,
                timeout=min(60.0, self._settings["retry_deadline_seconds"]),
            )
        except exceptions.BadRequest as exc:
            if len(chunk) > 1:  # find the bad row(s): halve, at most log2(n) levels
                mid = len(chunk) // 2
                yield from self._insert(chunk[:mid])
                yield from self._insert(chunk[mid:])
            else:
                yield from self._reject(chunk, f"request rejected: {exc}")
            return
        except (exceptions.Unauthorized, exceptions.Forbidden, exceptions.NotFound) as exc:
            raise RuntimeError(
                f"cannot write to BigQuery table {self._ref}: {exc}. Create the tables "
                "first (ensure_tables; msewatch run does it at launch) and give the "
                "workers' service account roles/bigquery.dataEditor on the dataset."
            ) from exc
        except (exceptions.GoogleAPIError, OSError) as exc:  # requests' errors are OSErrors
            if not self._settings["streaming"]:
                raise
            deadline = self._settings["retry_deadline_seconds"]
            yield from self._reject(chunk, f"request failed after retrying {deadline} s: {exc}")
            return
        failed = {e["index"]: e.get("errors", []) for e in errors}
        self._written.inc(len(chunk) - len(failed))
        for index in sorted(failed):
            detail = json.dumps(failed[index], sort_keys=True)
            yield from self._reject([chunk[index]], detail)

    def _reject(self, items, detail):
        """Yields the ``dead_letter`` rows recording that BigQuery rejected ``items``."""
        self._rejected.inc(len(items))
        source = f"bq://{self._project}.{self._dataset}.{self._table}"
        for _, row in items:
            raw = json.dumps(row, sort_keys=True)
            out = {"source": source, "record_type": self._table, "detail": detail}
            out.update(reason=REASON_INSERT_FAILED, raw_payload=raw)
            yield beam.pvalue.TaggedOutput(self.REJECTED, json_row(out, "dead_letter"))


@beam.ptransform_fn
def _InsertRows(rows, fn: _InsertRowsFn, batch_rows: int):  # noqa: N802 (a transform)
    """``(row_id, JSON row)`` -> the dead-letter rows of rejected rows (global window)."""
    return (
        rows
        | "GlobalWindow" >> beam.WindowInto(window.GlobalWindows())
        | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=batch_rows)
        | "Insert" >> beam.ParDo(fn).with_outputs(_InsertRowsFn.REJECTED, main="written")
    )[_InsertRowsFn.REJECTED]


def _log_lost(row):
    _LOG.error(
        "BigQuery rejected a dead-letter row; it is not stored anywhere: %s (row: %.2000s)",
        row["detail"],
        row["raw_payload"],
    )


class WriteBigQueryTables(beam.PTransform):
    """Writes metrics, dead-letter and outcomes rows to existing BigQuery tables.

    Input: ``{"metrics": PCollection[dict], "dead_letter": PCollection[pa.Table],
    "outcomes": PCollection[dict]}``, rows keyed by the field names of
    ``schemas/records.py`` (timestamps tz-aware, UTC), in any windows and panes; each
    row is written as its pane fires (module docstring: values, insertIds, failures).

    Args:
        project: the BigQuery project id.
        dataset: the dataset id.
        streaming: the pipeline is unbounded: a request that fails after retries
            sends its rows to dead letter instead of raising.
        api_endpoint: the BigQuery API root, e.g. an emulator's ``http://127.0.0.1:PORT``;
            ``None`` for Google's.
        credentials: ``google.auth`` credentials (pickled to the workers); ``None``
            for the workers' default credentials.
        batch_rows: at most this many rows per insert request (BigQuery suggests 500).
        batch_bytes: about at most this many bytes of row JSON per request.
        retry_deadline_seconds: how long the client retries a failing request.

    ``expand`` returns ``{"rejected": ..., "lost": ...}``: the ``dead_letter`` rows
    (JSON dicts) written for rejected metrics and outcomes rows, and those made for
    rejected dead-letter rows (not written anywhere).

    Raises:
        ValueError: a malformed project or dataset id, or a batch limit out of range.
    """

    def __init__(
        self,
        project: str,
        dataset: str,
        streaming: bool,
        api_endpoint: str | None = None,
        credentials=None,
        *,
        batch_rows: int = 500,
        batch_bytes: int = 5_000_000,
        retry_deadline_seconds: float = 120.0,
    ):
        super().__init__()
        check_names(project, dataset)
        if not 1 <= batch_rows <= MAX_REQUEST_ROWS:
            raise ValueError(f"batch_rows must be in 1..{MAX_REQUEST_ROWS}, got {batch_rows}")
        if not 1 <= batch_bytes <= MAX_REQUEST_BYTES:
            raise ValueError(f"batch_bytes must be in 1..{MAX_REQUEST_BYTES}, got {batch_bytes}")
        if not retry_deadline_seconds > 0:
            raise ValueError(f"retry_deadline_seconds must be > 0, got {retry_deadline_seconds}")
        self._project, self._dataset, self._batch_rows = project, dataset, batch_rows
        self._settings = {
            "streaming": bool(streaming),
            "api_endpoint": api_endpoint,
            "credentials": credentials,
            "batch_bytes": batch_bytes,
            "retry_deadline_seconds": float(retry_deadline_seconds),
        }

    def expand(self, tables):
        metrics = tables["metrics"] | "MetricsToJson" >> beam.Map(
            lambda row: _keyed(json_row(row, "metrics"), "metrics")
        )
        outcomes = tables["outcomes"] | "OutcomesToJson" >> beam.ParDo(_OutcomesToJsonFn())
        dead_letter = (
            tables["dead_letter"]
            | "DeadLetterToJson"
            >> beam.FlatMap(
                lambda batch: [json_row(row, "dead_letter") for row in batch.to_pylist()]
            )
            | "DeadLetterGlobalWindow" >> beam.WindowInto(window.GlobalWindows())
        )
        inserted = [
            metrics | "InsertMetrics" >> self._insert("metrics"),
            outcomes | "InsertOutcomes" >> self._insert("outcomes"),
        ]
        for name in ("alerts", "slo_status", "comparisons"):  # runs with an SLO file
            if name in tables:
                rows = tables[name] | f"{name}ToJson" >> beam.Map(
                    lambda row, name=name: _keyed(json_row(row, name), name)
                )
                inserted.append(rows | f"Insert_{name}" >> self._insert(name))
        rejected = tuple(inserted) | "FlattenRejected" >> beam.Flatten()
        extra_dead = []
        if "dead_letter_rows" in tables:  # dead letters made as rows (alert deliveries)
            extra_dead.append(
                tables["dead_letter_rows"]
                | "DeadLetterRowsToJson" >> beam.Map(lambda row: json_row(row, "dead_letter"))
                | "DeadLetterRowsGlobalWindow" >> beam.WindowInto(window.GlobalWindows())
            )
        lost = (
            (dead_letter, rejected, *extra_dead)
            | "FlattenDeadLetter" >> beam.Flatten()
            | "KeyDeadLetter" >> beam.Map(_keyed, "dead_letter")
            | "InsertDeadLetter" >> self._insert("dead_letter")
        )
        lost | "LogLost" >> beam.Map(_log_lost)
        return {"rejected": rejected, "lost": lost}

    def _insert(self, table: str) -> beam.PTransform:
        fn = _InsertRowsFn(self._project, self._dataset, table, self._settings)
        return _InsertRows(fn, self._batch_rows)


def ensure_tables(
    project: str,
    dataset: str,
    location: str = "US",
    api_endpoint: str | None = None,
    credentials=None,
) -> None:
    """Creates the dataset, the tables and the ``metrics_latest`` view; idempotent.

    Call it at launch time, not in workers. An existing dataset keeps its location; an
    existing table keeps its data and partitioning (a difference is logged: BigQuery
    cannot re-partition in place) and gains the columns its field list has and it
    lacks, as NULLABLE. The view is ``CREATE OR REPLACE``d by a query job.

    Args:
        project: the BigQuery project id.
        dataset: the dataset id.
        location: where to create the dataset if it does not exist (``US``, ``EU``,
            ``europe-west1``, ...).
        api_endpoint: the BigQuery API root (an emulator's), ``None`` for Google's.
        credentials: ``google.auth`` credentials; ``None`` for the default ones.

    Raises:
        ValueError: a malformed project or dataset id, or an existing table lacks a
            REQUIRED column (BigQuery cannot add one).
        google.api_core.exceptions.GoogleAPICallError: BigQuery refused (e.g. 403).
    """
    check_names(project, dataset)
    client = make_client(project, api_endpoint, credentials)
    ds = bigquery.Dataset(f"{project}.{dataset}")
    ds.location = location
    ds = client.create_dataset(ds, exists_ok=True)
    for name, fields in TABLES.items():
        schema = [bigquery.SchemaField.from_api_repr(f) for f in bigquery_schema(fields)]
        wanted = bigquery.Table(f"{project}.{dataset}.{name}", schema=schema)
        layout = TABLE_LAYOUT.get(name, {})
        if "partition_day_field" in layout:
            wanted.time_partitioning = bigquery.TimePartitioning(
                type_=bigquery.TimePartitioningType.DAY, field=layout["partition_day_field"]
            )
        wanted.clustering_fields = layout.get("clustering_fields")
        table = client.create_table(wanted, exists_ok=True)
        _add_missing_columns(client, table, wanted.schema)
        if _layout(table) != _layout(wanted):
            msg = "BigQuery table %s has (partitioning, clustering) %s, not %s: recreate it"
            _LOG.warning(msg, table.full_table_id, _layout(table), _layout(wanted))
    ddl = f"CREATE OR REPLACE VIEW `{project}.{dataset}.{VIEW_NAME}` AS\n" + view_sql(
        project, dataset
    )
    client.query(ddl, location=ds.location).result()


def _layout(table) -> tuple:
    tp = table.time_partitioning
    partitioning = (tp.type_, tp.field) if tp is not None else None
    return partitioning, tuple(table.clustering_fields or ())


def _add_missing_columns(client, table, wanted_schema) -> None:
    have = {f.name for f in table.schema}
    missing = [f for f in wanted_schema if f.name not in have]
    if not missing:
        return
    required = [f.name for f in missing if f.mode == "REQUIRED"]
    if required:
        raise ValueError(
            f"BigQuery table {table.full_table_id} lacks the REQUIRED columns "
            f"{', '.join(required)}, which BigQuery cannot add to an existing table: "
            "copy its data away and delete it, then run again to recreate it"
        )
    table.schema = list(table.schema) + missing
    client.update_table(table, ["schema"])
    _LOG.warning("added columns %s to %s", ", ".join(f.name for f in missing), table.full_table_id)
