"""Prepares a streaming replay (``msewatch run --streaming-replay``).

Reads the input files with the same parser as the bounded run, sorts records into
arrival order (predictions by event_time, labels by label_time, ties by ingest
position), writes them to a spool of Arrow IPC files, and plans the TestStream
schedule played by :class:`msewatch.transforms.io.replay.ReplaySpool`.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from msewatch.schemas.records import DEAD_LETTER_TAG, LABEL, PREDICTION
from msewatch.transforms.io.replay import WATERMARK, ReplayEvent
from msewatch.transforms.metrics.windowing import WindowConfig


def _write(table: pa.Table, path: str) -> None:
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def write_spool(
    preds: pa.Table, labels: pa.Table, dead: pa.Table, spool_dir: str
) -> dict[str, np.ndarray]:
    """Sorts parsed records into arrival order and writes the spool.

    Args:
        preds: valid predictions.
        labels: valid labels.
        dead: dead-letter rows (replayed first).
        spool_dir: directory to write (created).

    Returns:
        The sorted arrival times (ms) of predictions and labels, and zeros for the dead
        letters, by tag.
    """
    os.makedirs(spool_dir, exist_ok=True)
    arrivals = {}
    for kind, table in ((PREDICTION, preds), (LABEL, labels)):
        col = kind.time_column
        order = pc.sort_indices(table, [(col, "ascending"), ("position", "ascending")])
        table = table.take(order)
        _write(table, os.path.join(spool_dir, f"{kind.tag}.arrow"))
        arrivals[kind.tag] = table.column(col).to_numpy()
    _write(dead, os.path.join(spool_dir, f"{DEAD_LETTER_TAG}.arrow"))
    arrivals[DEAD_LETTER_TAG] = np.zeros(dead.num_rows, dtype=np.int64)
    return arrivals


def prepare_spool(
    predictions: str, labels: str, spool_dir: str, segment_keys: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Parses the input files (same parser as the bounded run) and writes the spool.

    Chunks of 16 MiB are parsed by one forked process per core.

    Args:
        predictions: glob of prediction files.
        labels: glob of label files.
        spool_dir: directory to write (created).
        segment_keys: segment attributes to keep.

    Returns:
        The sorted arrival times (ms) of predictions and labels, by kind.
    """
    from msewatch.transforms.io.files import read_all

    chunk = 16 << 20
    fork = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(os.cpu_count() or 1, mp_context=fork) as pool:
        preds, pred_dead = read_all(predictions, PREDICTION.name, segment_keys, chunk, pool)
        labs, label_dead = read_all(labels, LABEL.name, (), chunk, pool)
    return write_spool(preds, labs, pa.concat_tables([pred_dead, label_dead]), spool_dir)


def _gc_stops(first_ms: int, last_ms: int, window: WindowConfig) -> np.ndarray:
    """Watermark stops just before each window's garbage-collection time.

    Every window that holds data: the first ends one period after the first record's
    bucket starts (with sliding windows, windows that began before the first record
    hold it too), the last ends up to one window after the last record.
    """
    period = window.period_seconds * 1000
    size = window.window_seconds * 1000
    lateness = window.allowed_lateness_seconds * 1000
    ends = np.arange((first_ms // period) * period + period, last_ms + size + period, period)
    return ends + lateness - 1


def default_chunk_rows(records: int) -> int:
    """Records per replay step when ``--replay-chunk-rows`` is not given: a twentieth
    of the input (so that even a small sample replays in steps that fire EARLY and
    LATE panes), between 1,000 and 50,000."""
    return max(1_000, min(50_000, records // 20))


def plan_events(
    arrivals: dict[str, np.ndarray], window: WindowConfig, chunk_rows: int | None = None
) -> list[ReplayEvent]:
    """Plans chunks and watermark advances.

    Arrival times are cut into ranges of about ``chunk_rows`` records (predictions and
    labels together). Each range becomes one prediction chunk and one label chunk;
    then the watermark moves to 1 ms before the next range's first arrival, via every
    window garbage-collection stop in between. After the last range the watermark
    walks the stops until every window of the data has closed.

    Args:
        arrivals: sorted arrival times (ms) per kind, from :func:`prepare_spool`.
        window: the metrics windows (for the garbage-collection stops).
        chunk_rows: records per range; None: :func:`default_chunk_rows`.

    Returns:
        The ordered replay events.
    """
    if chunk_rows is None:
        chunk_rows = default_chunk_rows(len(arrivals[PREDICTION.tag]) + len(arrivals[LABEL.tag]))
    if chunk_rows < 1:
        raise ValueError(f"--replay-chunk-rows must be >= 1, got {chunk_rows}")
    events: list[ReplayEvent] = []
    n_dead = len(arrivals[DEAD_LETTER_TAG])
    if n_dead:
        events.append(ReplayEvent(DEAD_LETTER_TAG, 0, n_dead, 0))
    times = {k: arrivals[k] for k in (PREDICTION.tag, LABEL.tag)}
    merged = np.sort(np.concatenate(list(times.values())))
    if len(merged) == 0:
        return events
    cuts = np.unique(merged[::chunk_rows])
    bounds = np.append(cuts, merged[-1] + 1)
    stops = _gc_stops(int(merged[0]), int(merged[-1]), window)
    watermark = int(cuts[0]) - 1
    events.append(ReplayEvent(WATERMARK, time_ms=watermark))
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        for kind, t in times.items():
            a, b = np.searchsorted(t, [lo, hi], side="left")
            if b > a:
                events.append(ReplayEvent(kind, int(a), int(b), int(t[a])))
        target = int(hi) - 1
        for stop in stops[(stops > watermark) & (stops < target)]:
            events.append(ReplayEvent(WATERMARK, time_ms=int(stop)))
        events.append(ReplayEvent(WATERMARK, time_ms=target))
        watermark = target
    for stop in stops[stops > watermark]:
        events.append(ReplayEvent(WATERMARK, time_ms=int(stop)))
    return events
