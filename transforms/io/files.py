"""Reading record files as Arrow batches: the ``ReadRecords`` transform and ``read_all``.

Files matching a glob are listed in sorted order (``file_index`` is the index in that
list). JSON Lines (``.jsonl``, ``.json``, ``.ndjson``) and CSV (``.csv``, with a header
line) files are cut into byte ranges of about ``chunk_bytes``; a chunk owns the lines
that *start* inside its range, so every line is read exactly once whatever the cut.
Parquet files (``.parquet``) are cut into row groups. Each chunk is parsed and
validated by :mod:`msewatch.transforms.parse.records` into one batch of valid records
and one batch of dead letters.

Time: reading assigns no timestamps and no windows. Batches stay in the global window
with Beam's default timestamp; record times travel inside the batches
(``event_time_ms`` / ``label_time_ms``, UTC epoch ms) for later steps to use.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Iterator
from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PBegin, TaggedOutput

from msewatch.schemas.features import check_features
from msewatch.schemas.records import (
    DEAD_LETTER,
    DEAD_LETTER_TAG,
    LABEL,
    PREDICTION,
    RecordType,
)
from msewatch.transforms.io import read_progress
from msewatch.transforms.parse.csv import parse_csv_header
from msewatch.transforms.parse.records import parse_labels, parse_predictions

EXTENSIONS = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
}
DEFAULT_CHUNK_BYTES = 64 << 20
_READ_AHEAD = 1 << 16


class Chunk(NamedTuple):
    """A unit of parallel reading.

    For text files, ``start``/``end`` is the byte range whose line starts it owns; for
    Parquet, ``start`` is the row group and ``end`` the row number of its first row.
    """

    path: str
    file_index: int
    fmt: str
    start: int
    end: int


def match_files(pattern: str) -> list[tuple[str, int, str, int]]:
    """Lists the files of ``pattern`` as (path, file_index, format, size_bytes), sorted.

    Raises:
        ValueError: nothing matches, or a file's extension is not a known format.
    """
    try:
        metadata = FileSystems.match([pattern])[0].metadata_list
    except BeamIOError as err:  # a plain path that does not exist
        raise ValueError(f"no file matches {pattern!r}: {err}") from err
    if not metadata:
        raise ValueError(f"no file matches {pattern!r}")
    files = []
    for index, meta in enumerate(sorted(metadata, key=lambda m: m.path)):
        ext = os.path.splitext(meta.path)[1].lower()
        if ext not in EXTENSIONS:
            raise ValueError(
                f"{meta.path}: unknown file extension {ext!r}; allowed: {', '.join(EXTENSIONS)}"
            )
        files.append((meta.path, index, EXTENSIONS[ext], meta.size_in_bytes))
    return files


def check_files(pattern: str) -> int:
    """Checks, before a run, what would otherwise fail a whole file inside the pipeline.

    A CSV file whose header repeats a column, or a Parquet file whose footer cannot be
    read, cannot be parsed record by record: it is a mistake to fix, named here with
    its path, instead of a job failure deep in a runner's traceback.

    Returns:
        The number of files matched.

    Raises:
        ValueError: nothing matches, an unknown extension, a repeated CSV column, or an
            unreadable Parquet file.
    """
    files = match_files(pattern)
    for path, _, fmt, _ in files:
        if fmt == "csv":
            with _open(path) as f:
                header = parse_csv_header(f.readline())
            repeated = sorted({c for c in header if header.count(c) > 1})
            if repeated:
                raise ValueError(
                    f"{path}: the CSV header repeats column {repeated[0]!r}: "
                    "give every column a distinct name"
                )
        elif fmt == "parquet":
            try:
                with _open(path) as f:
                    pq.ParquetFile(f).metadata  # noqa: B018 (reads and checks the footer)
            except (pa.ArrowException, OSError) as err:
                raise ValueError(
                    f"{path}: not a readable Parquet file ({err}); replace or remove it"
                ) from None
    return len(files)


def input_bytes(pattern: str) -> int:
    """The bytes ``pattern``'s files hold, Parquet weighted x6 for its compression: how
    much the join will hold (``transforms/join/spill.py`` sizes its buckets by it)."""
    return sum(size * (6 if fmt == "parquet" else 1) for _, _, fmt, size in match_files(pattern))


def split_file(file: tuple[str, int, str, int], chunk_bytes: int) -> list[Chunk]:
    """Cuts one file into chunks: byte ranges of ``chunk_bytes``, or Parquet row groups."""
    path, index, fmt, size = file
    if fmt != "parquet":
        return [
            Chunk(path, index, fmt, start, min(start + chunk_bytes, size))
            for start in range(0, size, chunk_bytes)
        ]
    with _open(path) as f:
        meta = pq.ParquetFile(f).metadata
    chunks, first_row = [], 0
    for group in range(meta.num_row_groups):
        chunks.append(Chunk(path, index, fmt, group, first_row))
        first_row += meta.row_group(group).num_rows
    return chunks


def read_chunk(
    chunk: Chunk,
    record_type: str,
    segment_keys: tuple[str, ...] = (),
    features: tuple[str, ...] = (),
) -> tuple[pa.Table, pa.Table]:
    """Reads and parses one chunk: returns (records, dead letters)."""
    chunk = Chunk(*chunk)
    with _open(chunk.path) as f:
        if chunk.fmt == "parquet":
            block, base, header = pq.ParquetFile(f).read_row_group(chunk.start), chunk.end, None
        else:
            base, block, header = _read_lines(f, chunk)
    if RecordType.of(record_type) is PREDICTION:
        return parse_predictions(
            block,
            chunk.fmt,
            chunk.path,
            chunk.file_index,
            base,
            segment_keys,
            csv_header=header,
            features=features,
        )
    return parse_labels(block, chunk.fmt, chunk.path, chunk.file_index, base, csv_header=header)


def _open(path: str):
    return FileSystems.open(
        path, mime_type="application/octet-stream", compression_type=CompressionTypes.UNCOMPRESSED
    )


def _read_lines(f, chunk: Chunk) -> tuple[int, bytes, bytes | None]:
    """Returns (offset of the first owned line, the owned lines, the CSV header line)."""
    header = None
    first = chunk.start
    if chunk.fmt == "csv":
        header = _read_to_newline(f, b"")  # the header is line 0: owned by no chunk
        first = max(first, len(header))
    if 0 < first and first == chunk.start:  # a line starts here only after a newline
        f.seek(first - 1)
        first += len(_read_to_newline(f, b"")) - 1
    if first >= chunk.end:
        return first, b"", header
    f.seek(first)
    data = f.read(chunk.end - first)
    if not data.endswith(b"\n"):
        data = _read_to_newline(f, data)  # finish the last line owned by this chunk
    return first, data, header


def _read_to_newline(f, data: bytes) -> bytes:
    """``data`` plus what follows in ``f`` up to and including the next newline (or EOF)."""
    parts = [data]
    while True:
        piece = f.read(_READ_AHEAD)
        cut = piece.find(b"\n")
        if cut >= 0 or not piece:
            parts.append(piece[: cut + 1] if cut >= 0 else piece)
            return b"".join(parts)
        parts.append(piece)


def _check_config(record_type: str, segment_keys, chunk_bytes: int) -> tuple[str, ...]:
    kind = RecordType.of(record_type)
    keys = tuple(segment_keys)
    if any(not isinstance(k, str) or not k for k in keys) or len(set(keys)) < len(keys):
        raise ValueError(f"segment_keys must be distinct non-empty strings; got {keys!r}")
    if not isinstance(chunk_bytes, int) or chunk_bytes <= 0:
        raise ValueError(f"chunk_bytes must be a positive int; got {chunk_bytes!r}")
    return keys if kind.has_segments else ()


def _kept_features(record_type: str, features, segment_keys) -> tuple[str, ...]:
    names = check_features(features, segment_keys)
    return names if RecordType.of(record_type).has_segments else ()


def chunk_shares(pattern: str, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> dict:
    """``{(path, start): bytes}``: the input bytes each chunk of ``pattern`` stands for
    (text: its byte range; Parquet: the file's size shared by rows among its row
    groups), for a progress bar (:mod:`.read_progress`). They sum to the files' sizes."""
    shares = {}
    for file in match_files(pattern):
        chunks = split_file(file, chunk_bytes)
        size = file[3]
        if file[2] != "parquet":
            shares.update({(c.path, c.start): c.end - c.start for c in chunks})
            continue
        with _open(file[0]) as f:
            rows = pq.ParquetFile(f).metadata.num_rows
        firsts = [c.end for c in chunks] + [rows]
        for c, lo, hi in zip(chunks, firsts, firsts[1:], strict=False):
            shares[(c.path, c.start)] = size * (hi - lo) // rows if rows else size
    return shares


class _ParseChunkFn(beam.DoFn):
    """Reads one chunk; counts records read and invalid, once per batch; reports its
    bytes and records to the launcher's progress bar (:mod:`.read_progress`)."""

    def __init__(
        self,
        record_type: str,
        segment_keys: tuple[str, ...],
        progress_token: str | None,
        features: tuple[str, ...] = (),
    ):
        self._record_type = record_type
        self._segment_keys = segment_keys
        self._features = features
        self._progress_token = progress_token
        self._read = Metrics.counter("msewatch", f"{record_type}_records_read")
        self._invalid = Metrics.counter("msewatch", f"{record_type}_invalid")

    def process(self, chunk: Chunk) -> Iterator[pa.Table | TaggedOutput]:
        records, dead = read_chunk(chunk, self._record_type, self._segment_keys, self._features)
        self._read.inc(records.num_rows + dead.num_rows)
        self._invalid.inc(dead.num_rows)
        read_progress.report(
            self._progress_token, (chunk.path, chunk.start), records.num_rows + dead.num_rows
        )
        if records.num_rows:
            yield records
        if dead.num_rows:
            yield TaggedOutput(ReadRecords.DEAD_LETTER_TAG, dead)


class ReadRecords(beam.PTransform):
    """Reads prediction or label files into batches of valid records and dead letters.

    The output has two tagged PCollections of ``pa.Table`` batches: ``records``
    (``PREDICTIONS`` with ``seg.<key>`` columns, or ``LABELS``) and ``dead_letter``
    (``DEAD_LETTER``). Empty batches are not emitted.

    Time: no timestamps or windows are assigned (global window, default timestamp);
    record times are the UTC epoch-ms columns inside the batches.

    Args:
        pattern: file glob, expanded with ``FileSystems.match`` when the pipeline is
            built.
        record_type: ``"prediction"`` or ``"label"``.
        segment_keys: segment attributes to keep (ignored for labels).
        chunk_bytes: approximate bytes per parallel chunk of a text file.
        progress_token: the run's token for :mod:`.read_progress` (None: no reports).
        features: feature names to keep as ``feat.<name>`` columns (ignored for labels).

    Raises:
        ValueError: a bad argument, no matching file, or an unknown extension.
    """

    RECORDS_TAG = "records"  # valid records
    DEAD_LETTER_TAG = DEAD_LETTER_TAG  # dead letters: the tag every source uses

    def __init__(
        self,
        pattern: str,
        record_type: str,
        segment_keys: tuple[str, ...] = (),
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        progress_token: str | None = None,
        features: tuple[str, ...] = (),
    ):
        super().__init__()
        self._segment_keys = _check_config(record_type, segment_keys, chunk_bytes)
        self._features = _kept_features(record_type, features, self._segment_keys)
        self._progress_token = progress_token
        self._pattern = pattern
        self._record_type = record_type
        self._chunk_bytes = chunk_bytes

    def expand(self, pbegin: PBegin):
        files = match_files(self._pattern)
        return (
            pbegin
            | "ListFiles" >> beam.Create(files)
            | "SplitFiles" >> beam.FlatMap(split_file, self._chunk_bytes)
            | "Reshuffle" >> beam.Reshuffle()
            | "ParseChunks"
            >> beam.ParDo(
                _ParseChunkFn(
                    self._record_type, self._segment_keys, self._progress_token, self._features
                )
            ).with_outputs(self.DEAD_LETTER_TAG, main=self.RECORDS_TAG)
        )


def _read_chunk_job(job: tuple) -> tuple[pa.Table, pa.Table]:
    return read_chunk(*job)


def read_all(
    pattern: str,
    record_type: str,
    segment_keys: tuple[str, ...] = (),
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    executor: concurrent.futures.Executor | None = None,
    features: tuple[str, ...] = (),
) -> tuple[pa.Table, pa.Table]:
    """Reads every matching file with the chunk code of ``ReadRecords``, outside Beam.

    Args:
        pattern: file glob.
        record_type: ``prediction`` or ``label``.
        segment_keys: segment attributes to keep.
        chunk_bytes: byte range parsed at a time.
        executor: parses text chunks in parallel when given (e.g. a process pool);
            Parquet row groups, cheap to decode, are read in this thread.
        features: feature names to keep.

    Returns:
        (records, dead letters): whole tables, in file and line order.
    """
    keys = _check_config(record_type, segment_keys, chunk_bytes)
    names = _kept_features(record_type, features, keys)
    jobs = [
        (chunk, record_type, keys, names)
        for file in match_files(pattern)
        for chunk in split_file(file, chunk_bytes)
    ]
    parallel = executor is not None and any(job[0].fmt != "parquet" for job in jobs)
    results = (executor.map if parallel else map)(_read_chunk_job, jobs)
    schema = RecordType.of(record_type).batch_schema(keys, names)
    records, dead = [schema.empty_table()], [DEAD_LETTER.empty_table()]
    for r, d in results:
        records.append(r)
        dead.append(d)
    return pa.concat_tables(records), pa.concat_tables(dead)


class FileSource(beam.PTransform):
    """Reads prediction and label files (bounded).

    Args:
        predictions: glob of prediction files.
        labels: glob of label files.
        segment_keys: segment attributes to keep for slicing.
        progress_token: the run's token for :mod:`.read_progress` (None: no reports).
        features: feature names of predictions to keep (their value sketches).
    """

    def __init__(
        self,
        predictions: str,
        labels: str,
        segment_keys: tuple[str, ...],
        progress_token: str | None = None,
        features: tuple[str, ...] = (),
    ):
        super().__init__()
        self._predictions = predictions
        self._labels = labels
        self._segment_keys = segment_keys
        self._token = progress_token
        self._features = tuple(features)

    def expand(self, pbegin):
        preds = pbegin | "ReadPredictions" >> ReadRecords(
            self._predictions,
            PREDICTION.name,
            self._segment_keys,
            progress_token=self._token,
            features=self._features,
        )
        labels = pbegin | "ReadLabels" >> ReadRecords(
            self._labels, LABEL.name, progress_token=self._token
        )
        records, dead_letter = ReadRecords.RECORDS_TAG, ReadRecords.DEAD_LETTER_TAG
        dead = (preds[dead_letter], labels[dead_letter]) | "FlattenDeadLetter" >> beam.Flatten()
        return {
            PREDICTION.tag: preds[records],
            LABEL.tag: labels[records],
            DEAD_LETTER_TAG: dead,
        }
