"""The bounded join by hash bucket, through spill files: :class:`SpillToBuckets` and
:class:`JoinBuckets`.

A bounded join must see every record of an id before it decides (first-wins by
event and label time, ``bounded.resolve_bounded``). Holding the whole input for that,
in a bag of Beam state or in the shuffle that feeds it, made a bounded run's memory
grow with its input (about 235 MB per million events on the DirectRunner, which keeps
both in memory). Instead, the records go to disk, partitioned the way the join needs
them (the sort-merge-bucket pattern of Scio's SMB joins):

1. ``SpillToBuckets`` splits each valid batch by a stable hash of ``prediction_id``
   into ``buckets`` parts and appends each part to its bucket's spill file of the
   bundle: one Arrow IPC stream (LZ4) per bundle, bucket and side (predictions,
   labels), under the spill folder. When a bundle ends it emits one small
   ``(bucket, (side, path, rows))`` element per file it wrote, nothing else.
2. A ``GroupByKey`` brings every file name of a bucket together; only names cross it.
3. ``JoinBuckets`` reads one bucket's files, joins them with ``resolve_bounded``,
   emits the examples and the outcome counts, and deletes the files.

So a run holds one bundle's batches while it spills and one bucket while it joins,
whatever the input size: with about 32 MiB of input per bucket (``buckets_for``),
a bucket is some 200,000 events. The results are those of joining each id's
records all at once, as before: every record of an id lands in the id's bucket, and
ties are broken by the records' ingest positions, which travel with them.

The spill folder must be one every worker can read: a run writes it inside its
output folder (``runners/launch.py``; a local folder, or ``gs://`` on Dataflow), or
under ``--temp_location`` for a BigQuery output, and removes it when the run ends. A
bundle that a runner retries writes new files under new names; the files of the
failed attempt are never named downstream and go with the folder.
"""

from __future__ import annotations

import atexit
import math
import os
import shutil
import tempfile
import uuid

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindows

from msewatch.schemas.records import LABELS
from msewatch.transforms.join.bounded import resolve_bounded
from msewatch.transforms.join.kernel import JoinConfig, concat_tables
from msewatch.transforms.join.matching import split_by_shard

PREDICTIONS_SIDE = "P"
LABELS_SIDE = "L"
BYTES_PER_BUCKET = 32 << 20
MAX_BUCKETS = 4096
_IPC = pa.ipc.IpcWriteOptions(compression="lz4")

SpilledFile = beam.typehints.Tuple[str, beam.typehints.Tuple[str, str, int]]


def buckets_for(input_bytes: int, at_least: int = 1) -> int:
    """Buckets of a bounded join over ``input_bytes`` of input: one per 32 MiB, at
    least ``at_least`` (the configured shards) and at most 4096."""
    return max(at_least, min(MAX_BUCKETS, math.ceil(input_bytes / BYTES_PER_BUCKET)), 1)


def _open_output(path: str) -> pa.NativeFile:
    if "://" in path:
        return pa.PythonFile(FileSystems.create(path), mode="w")
    return pa.OSFile(path, "wb")


def _open_input(path: str) -> pa.NativeFile:
    if "://" in path:
        return pa.PythonFile(FileSystems.open(path), mode="r")
    return pa.memory_map(path)


class SpillToBuckets(beam.DoFn):
    """Appends each batch's rows to its buckets' spill files; emits the files' names
    when the bundle ends (see the module docstring)."""

    def __init__(self, side: str, folder: str, buckets: int):
        self._side = side
        self._folder = folder
        self._buckets = buckets

    def start_bundle(self):
        self._bundle = uuid.uuid4().hex
        self._writers: dict[int, tuple[str, pa.NativeFile, pa.ipc.RecordBatchStreamWriter]] = {}
        self._rows: dict[int, int] = {}

    def process(self, table: pa.Table):
        for bucket, rows in split_by_shard(table, self._buckets):
            self._writer(bucket, table.schema).write_table(rows)
            self._rows[bucket] = self._rows.get(bucket, 0) + rows.num_rows

    def _writer(self, bucket: int, schema: pa.Schema) -> pa.ipc.RecordBatchStreamWriter:
        if bucket not in self._writers:
            name = f"{bucket:05d}-{self._side}-{self._bundle}.arrows"
            path = FileSystems.join(self._folder, name)
            sink = _open_output(path)
            self._writers[bucket] = (path, sink, pa.ipc.new_stream(sink, schema, options=_IPC))
        return self._writers[bucket][2]

    def finish_bundle(self):
        for bucket, (path, sink, writer) in sorted(self._writers.items()):
            writer.close()
            sink.close()
            value = (f"{bucket:05d}", (self._side, path, self._rows[bucket]))
            yield GlobalWindows.windowed_value(value)
        self._writers = {}


class JoinBuckets(beam.DoFn):
    """Joins one bucket's spilled records at once and deletes its files.

    Outputs the EXAMPLES batch (main) and, tagged ``outcomes``, the outcome counts
    (the ``emit_counts`` callable of ``transform.py``).
    """

    def __init__(self, config: JoinConfig, emit_counts):
        self._config = config
        self._emit_counts = emit_counts

    def process(self, element):
        _, files = element
        files = sorted(files)  # side, then name: the same tables whatever the order
        preds = self._read([f for f in files if f[0] == PREDICTIONS_SIDE])
        labels = self._read([f for f in files if f[0] == LABELS_SIDE])
        examples, counts = resolve_bounded(
            concat_tables(preds, self._config.prediction_schema),
            concat_tables(labels, LABELS),
            self._config,
        )
        n_preds = sum(t.num_rows for t in preds)
        n_labels = sum(t.num_rows for t in labels)
        yield from self._emit_counts(counts, n_preds, n_labels)
        _delete([path for _, path, _ in files])
        if examples.num_rows:
            yield examples

    @staticmethod
    def _read(files) -> list[pa.Table]:
        tables = []
        for _, path, rows in files:
            with _open_input(path) as source:
                table = pa.ipc.open_stream(source).read_all()
            if table.num_rows != rows:  # a truncated file must not lose records silently
                raise OSError(f"{path}: {table.num_rows} rows spilled, {rows} expected")
            tables.append(table)
        return tables


def local_folder() -> str:
    """A spill folder in this machine's temp directory, removed when this process
    exits: for pipelines built without one (tests, the DirectRunner)."""
    folder = tempfile.mkdtemp(prefix="msewatch-spill-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _delete(paths: list[str]) -> None:
    # Beam's FileSystems.delete takes globs: a local path with "[1]" in it is a pattern
    local = [p for p in paths if "://" not in p]
    for path in local:
        os.remove(path)
    if len(local) < len(paths):
        FileSystems.delete([p for p in paths if "://" in p])


def remove_folder(folder: str) -> None:
    """Removes a run's spill folder and whatever a retried bundle left in it."""
    if "://" not in folder:
        shutil.rmtree(folder, ignore_errors=True)
    elif FileSystems.exists(folder):
        FileSystems.delete([folder])
