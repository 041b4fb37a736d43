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
from msewatch.transforms.join.kernel import JoinConfig
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
    predictions: str,
    labels: str,
    spool_dir: str,
    segment_keys: tuple[str, ...],
    features: tuple[str, ...] = (),
) -> dict[str, np.ndarray]:
    """Parses the input files (same parser as the bounded run) and writes the spool.

    Chunks of 16 MiB are parsed by one forked process per core.

    Args:
        predictions: glob of prediction files.
        labels: glob of label files.
        spool_dir: directory to write (created).
        segment_keys: segment attributes to keep.
        features: feature names of predictions to keep.

    Returns:
        The sorted arrival times (ms) of predictions and labels, by kind.
    """
    from msewatch.transforms.io.files import read_all

    chunk = 16 << 20
    fork = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(os.cpu_count() or 1, mp_context=fork) as pool:
        preds, pred_dead = read_all(
            predictions, PREDICTION.name, segment_keys, chunk, pool, features=features
        )
        labs, label_dead = read_all(labels, LABEL.name, (), chunk, pool)
    return write_spool(preds, labs, pa.concat_tables([pred_dead, label_dead]), spool_dir)


def watermark_stops(
    arrivals: dict[str, np.ndarray], window: WindowConfig, join: JoinConfig
) -> np.ndarray:
    """Where the watermark stops besides the chunk boundaries (sorted, unique, ms).

    * Just before the garbage collection of the first window to close among those
      holding each prediction: its period bucket's end + allowed lateness - 1 ms.
      A prediction's expiry deadline lies at or before its bucket's end + label_ttl
      (the expiry grid divides the period), so at that stop the join's timer has fired
      and the EXPIRED example reaches every window of the prediction while all of them
      are open. (The DirectRunner holds no watermark for timers: one advance that
      passed both a deadline and the window's garbage collection would drop the
      expiry it fired.)
    * The last deadline of a join timer that has output: the latest orphan deadline
      of a label (``label_time + orphan_ttl``, up to the grid) and the latest expiry.
      The replay ends by moving the watermark to the end of time; an outcome fired by
      that last jump would reach the outcome table after its global window closed and
      be lost, so no timer with output may be left for it.

    Only periods holding predictions get a stop, so the cost follows the data, not the
    time its records span.
    """
    period = window.period_seconds * 1000
    lateness = window.allowed_lateness_seconds * 1000
    grid = join.timer_grid_ms
    preds, labels = arrivals[PREDICTION.tag], arrivals[LABEL.tag]
    stops = [(np.unique(preds // period) + 1) * period + lateness - 1]
    if len(preds):
        stops.append([(int(preds.max()) // grid + 1) * grid + join.label_ttl_ms])
    if len(labels):
        stops.append([-(-(int(labels.max()) + join.orphan_ttl_ms + 1) // grid) * grid])
    return np.unique(np.concatenate([np.asarray(x, np.int64) for x in stops]))


def default_chunk_rows(records: int) -> int:
    """Records per replay step when ``--replay-chunk-rows`` is not given: a twentieth
    of the input (so that even a small sample replays in steps that fire EARLY and
    LATE panes), between 1,000 and 50,000."""
    return max(1_000, min(50_000, records // 20))


def plan_events(
    arrivals: dict[str, np.ndarray],
    window: WindowConfig,
    join: JoinConfig,
    chunk_rows: int | None = None,
) -> list[ReplayEvent]:
    """Plans chunks and watermark advances.

    Arrival times are cut into ranges of about ``chunk_rows`` records (predictions and
    labels together). Each range becomes one prediction chunk and one label chunk;
    then the watermark moves to 1 ms before the next range's first arrival, via every
    stop of :func:`watermark_stops` in between. After the last range the watermark
    walks the remaining stops, past every window's expirations and the last orphan
    deadline. The events grow with the records, not with the time they span.

    Args:
        arrivals: sorted arrival times (ms) per kind, from :func:`prepare_spool`.
        window: the metrics windows (for the garbage-collection stops).
        join: the join settings (expiry grid, label and orphan TTLs).
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
    stops = watermark_stops(arrivals, window, join)
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
