"""Parquet sinks: :class:`WriteParquetTable`.

Tables are directories of Parquet files readable by pyarrow, pandas and DuckDB:

* ``metrics/window_date=YYYY-MM-DD/*.parquet``: Hive-partitioned by the UTC date of
  ``window_start``. Rows of every pane are kept (panes accumulate, so the latest
  ``pane_index`` per window and slice is the current answer; see ``metrics_latest``).
* ``dead_letter/*.parquet`` and ``outcomes/*.parquet``: unpartitioned.

Writing uses ``fileio.WriteToFiles`` with a pyarrow sink (not ``WriteToParquet``,
which loses or rejects late panes in streaming). Rows are first moved into the global
window with a DISCARDING trigger: the writer's own grouping would otherwise inherit
the metrics' ACCUMULATING trigger and write earlier panes again. Each row keeps its
metric window in its columns. Bounded input is written once, at the end; unbounded
input is flushed every ``flush_seconds`` of processing time or ``flush_count``
elements, and at the end of the stream. Each flush is a new file (named after the
writer's pane), so no firing overwrites another.
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms import trigger, window

PARTITION_COLUMN = "window_date"


class _ParquetSink(fileio.FileSink):
    """Collects rows (dicts) or Arrow batches and writes one Parquet file on flush."""

    def __init__(self, schema: pa.Schema, directory: str | None):
        self._schema = schema
        self._directory = directory

    def open(self, fh):
        if self._directory and not FileSystems.exists(self._directory):
            try:
                FileSystems.mkdirs(self._directory)
            except OSError:  # created meanwhile by another bundle
                pass
        self._fh = fh
        self._rows: list[dict] = []
        self._tables: list[pa.Table] = []

    def write(self, record):
        if isinstance(record, pa.Table):
            self._tables.append(record)
        else:
            self._rows.append(record)

    def flush(self):
        tables = [t.select(self._schema.names).cast(self._schema) for t in self._tables]
        if self._rows:
            tables.append(pa.Table.from_pylist(self._rows, schema=self._schema))
        table = pa.concat_tables(tables) if tables else self._schema.empty_table()
        pq.write_table(table, self._fh, compression="zstd")


def _window_date(row) -> str:
    return row["window_start"].strftime("%Y-%m-%d")


def _name_by_pane(window_obj, pane, shard_index, total_shards, compression, destination):
    pane_index = pane.index if pane is not None else 0
    prefix = f"{PARTITION_COLUMN}={destination}/" if destination else ""
    return f"{prefix}part-{pane_index:06d}-{shard_index:03d}-of-{total_shards:03d}.parquet"


class WriteParquetTable(beam.PTransform):
    """Writes rows (dicts) or Arrow batches to ``output_dir/name`` as Parquet.

    Args:
        output_dir: the output root (local path or ``gs://``).
        name: the table name (a subdirectory).
        schema: the table's Arrow schema (from ``schemas/records.py``).
        partition_by_window_date: partition by the UTC date of ``window_start``.
        streaming: add a repeating trigger so that global-window input is flushed.
        flush_seconds, flush_count: that trigger's processing-time delay and count.
    """

    def __init__(
        self,
        output_dir: str,
        name: str,
        schema: pa.Schema,
        partition_by_window_date: bool = False,
        streaming: bool = False,
        flush_seconds: int = 60,
        flush_count: int = 100,
    ):
        super().__init__()
        self._path = FileSystems.join(output_dir, name)
        self._schema = schema
        self._partition = partition_by_window_date
        self._streaming = streaming
        self._flush = (flush_seconds, flush_count)

    def expand(self, pcoll):
        path, schema = self._path, self._schema
        if self._partition:

            def sink(dest):
                return _ParquetSink(schema, FileSystems.join(path, f"{PARTITION_COLUMN}={dest}"))

            destination = _window_date
        else:

            def sink(dest):
                return _ParquetSink(schema, None)

            destination = None
        if self._streaming:
            seconds, count = self._flush
            pcoll = pcoll | "FlushTrigger" >> beam.WindowInto(
                window.GlobalWindows(),
                trigger=trigger.AfterWatermark(
                    early=trigger.AfterAny(
                        trigger.AfterCount(count), trigger.AfterProcessingTime(seconds)
                    )
                ),
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
            )
        else:
            pcoll = pcoll | "GlobalWindow" >> beam.WindowInto(window.GlobalWindows())
        return pcoll | "WriteFiles" >> fileio.WriteToFiles(
            path=path,
            destination=destination,
            sink=sink,
            file_naming=_name_by_pane,
            shards=1,
            max_writers_per_bundle=0,
        )
