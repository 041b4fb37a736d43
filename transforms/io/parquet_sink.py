"""Parquet sinks: :class:`WriteParquetTable`.

Tables are directories of Parquet files readable by pyarrow, pandas and DuckDB:

* ``metrics/window_date=YYYY-MM-DD/*.parquet``: Hive-partitioned by the UTC date of
  ``window_start``. Rows of every pane are kept (panes accumulate, so the latest
  ``pane_index`` per window and slice is the current answer; see ``metrics_latest``).
* ``dead_letter/*.parquet`` and ``outcomes/*.parquet``: unpartitioned.

How panes reach files. Rows are moved into the global window with a DISCARDING
trigger (a grouping that inherited the metrics' windows and trigger would write a
file per window and pane; each row keeps its metric window in its columns), grouped by
partition, and each group firing becomes one Parquet file. Bounded input fires once,
at the end. Unbounded input fires every ``flush_seconds`` of processing time (after the first
element of a flush) and at the end of the stream, so late panes are written
like any other (Beam's ``WriteToParquet`` loses or rejects them in streaming).

Files are written under a hidden temporary name and renamed into place, so readers
never see a partial file. A file's name is the firing's pane index and a hash of its
content: a retried bundle rewrites the same file instead of adding a copy, and two
firings never collide, even with equal contents (two equal outcome deltas).

(``fileio.WriteToFiles`` was the first choice, but its second grouping, which moves
temporary files into place, inherits a synchronized-processing-time trigger that the
streaming DirectRunner does not fire again in the global window: later flushes stayed
in its temporary folder.)
"""

from __future__ import annotations

import hashlib

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms import window

from msewatch.schemas.coders import table_to_bytes
from msewatch.transforms.flush import flush_in_global_window

PARTITION_COLUMN = "window_date"
_UNPARTITIONED = ""


def _window_date(row) -> str:
    """``YYYY-MM-DD`` of ``window_start`` (UTC); the year always four digits (``strftime``
    drops the zeros of years before 1000)."""
    day = row["window_start"]
    return f"{day.year:04d}-{day.month:02d}-{day.day:02d}"


def _as_table(records, schema: pa.Schema) -> pa.Table:
    """Rows (dicts) and Arrow batches -> one table of ``schema``."""
    rows, tables = [], []
    for record in records:
        if isinstance(record, pa.Table):
            tables.append(record.select(schema.names).cast(schema))
        else:
            rows.append(record)
    if rows:
        tables.append(pa.Table.from_pylist(rows, schema=schema))
    return pa.concat_tables(tables) if tables else schema.empty_table()


class _WriteParquetFile(beam.DoFn):
    """``(partition, records)`` -> one Parquet file, written atomically; yields its path."""

    def __init__(self, path: str, schema: pa.Schema):
        self._path = path
        self._schema = schema

    def process(self, element, pane=beam.DoFn.PaneInfoParam):
        partition, records = element
        table = _as_table(records, self._schema)
        if table.num_rows == 0:
            return
        directory = self._path
        if partition:
            directory = FileSystems.join(directory, f"{PARTITION_COLUMN}={partition}")
        if not FileSystems.exists(directory):
            try:
                FileSystems.mkdirs(directory)
            except OSError:  # created meanwhile by another bundle
                pass
        digest = hashlib.sha256(table_to_bytes(table)).hexdigest()[:24]
        name = f"part-{pane.index:06d}-{digest}"
        final = FileSystems.join(directory, f"{name}.parquet")
        temp = FileSystems.join(directory, f".{name}.parquet.tmp")
        with FileSystems.create(temp) as fh:
            pq.write_table(table, fh, compression="zstd")
        if FileSystems.exists(final):  # a retry of the same content
            FileSystems.delete([temp])
        else:
            FileSystems.rename([temp], [final])
        yield final


class WriteParquetTable(beam.PTransform):
    """Writes rows (dicts) or Arrow batches to ``output_dir/name`` as Parquet.

    Args:
        output_dir: the output root (local path or ``gs://``).
        name: the table name (a subdirectory).
        schema: the table's Arrow schema (from ``schemas/records.py``).
        partition_by_window_date: partition by the UTC date of ``window_start``.
        streaming: flush repeatedly (see the module docstring) instead of once.
        flush_seconds: processing time between streaming flushes.

    Returns (from ``expand``): the PCollection of written file paths.
    """

    def __init__(
        self,
        output_dir: str,
        name: str,
        schema: pa.Schema,
        partition_by_window_date: bool = False,
        streaming: bool = False,
        flush_seconds: int = 60,
    ):
        super().__init__()
        self._path = FileSystems.join(output_dir, name)
        self._schema = schema
        self._partition = partition_by_window_date
        self._streaming = streaming
        self._flush_seconds = flush_seconds

    def expand(self, pcoll):
        if self._streaming:
            windowed = pcoll | "FlushTrigger" >> flush_in_global_window(self._flush_seconds)
        else:
            windowed = pcoll | "GlobalWindow" >> beam.WindowInto(window.GlobalWindows())
        key = _window_date if self._partition else (lambda _: _UNPARTITIONED)
        return (
            windowed
            | "KeyByPartition" >> beam.Map(lambda record: (key(record), record))
            | "GroupByPartition" >> beam.GroupByKey()
            | "WriteFiles" >> beam.ParDo(_WriteParquetFile(self._path, self._schema))
        )
