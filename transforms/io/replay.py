"""Streaming replay of files in arrival order: :class:`ReplaySpool`.

A *spool* is a directory of Arrow IPC files prepared by ``transforms/io/replay_spool.py``:
``predictions.arrow`` sorted by event_time, ``labels.arrow`` sorted by label_time
(ties by ingest position), and ``dead_letter.arrow``. The replay drives a
``TestStream`` through Beam's streaming DirectRunner:

* elements are small references ``(kind, start_row, stop_row)`` stamped with the
  arrival time of their first record, never the records themselves (TestStream
  pickles its elements into the pipeline graph);
* after each chunk the watermark advances to just before the next chunk's first
  arrival (timely watermarks: no record is ever late on arrival), stopping before the
  garbage collection of the windows holding predictions, so that expirations fired by
  the join reach their windows before they close (the DirectRunner holds no watermark
  for timers), and at the last orphan deadline, so that no outcome is left to the
  final jump to the end of time (``replay_spool.watermark_stops``);
* processing time advances by the early-firing delay after each chunk, so EARLY panes
  fire as they would in production.

Arrival time: a prediction arrives at its event_time, a label at its label_time.
"""

from __future__ import annotations

import dataclasses

import apache_beam as beam
import pyarrow as pa
from apache_beam.testing.test_stream import TestStream
from apache_beam.utils.timestamp import Timestamp

from msewatch.schemas.records import DEAD_LETTER_TAG, LABEL, PREDICTION

WATERMARK = "watermark"  # the kind of a replay event that advances the watermark


@dataclasses.dataclass(frozen=True)
class ReplayEvent:
    """One step of the replay: a chunk of rows or a watermark advance.

    Attributes:
        kind: the tag of the batches of a chunk (``PREDICTION.tag``, ``LABEL.tag`` or
            ``DEAD_LETTER_TAG``), or ``WATERMARK``.
        start, stop: row range of a chunk (unused for ``watermark``).
        time_ms: the chunk's first arrival time, or the new watermark.
    """

    kind: str
    start: int = 0
    stop: int = 0
    time_ms: int = 0


def _read_rows(spool_dir: str, kind: str, start: int, stop: int) -> pa.Table:
    with pa.memory_map(f"{spool_dir}/{kind}.arrow") as source:
        table = pa.ipc.open_file(source).read_all()
    return table.slice(start, stop - start).combine_chunks()


class _ReadChunk(beam.DoFn):
    def __init__(self, spool_dir: str):
        self._spool_dir = spool_dir

    def process(self, ref):
        kind, start, stop = ref
        table = _read_rows(self._spool_dir, kind, start, stop)
        if kind == PREDICTION.tag:
            yield table
        else:
            yield beam.pvalue.TaggedOutput(kind, table)


class ReplaySpool(beam.PTransform):
    """PBegin -> ``{"predictions", "labels", "dead_letter"}`` PCollections of Arrow batches.

    Args:
        spool_dir: directory written by ``replay_spool.prepare_spool``.
        events: the schedule from ``replay_spool.plan_events``.
        early_firing_seconds: processing time advanced after each chunk.
    """

    def __init__(self, spool_dir: str, events: list[ReplayEvent], early_firing_seconds: int):
        super().__init__()
        self._spool_dir = spool_dir
        self._events = events
        self._early = early_firing_seconds

    def expand(self, pbegin):
        stream = TestStream()
        watermark = None
        for ev in self._events:
            if ev.kind == WATERMARK:
                if watermark is None or ev.time_ms > watermark:
                    stream = stream.advance_watermark_to(Timestamp(micros=ev.time_ms * 1000))
                    watermark = ev.time_ms
                    stream = stream.advance_processing_time(self._early)
            else:
                stream = stream.add_elements(
                    [
                        beam.window.TimestampedValue(
                            (ev.kind, ev.start, ev.stop), Timestamp(micros=ev.time_ms * 1000)
                        )
                    ]
                )
        stream = stream.advance_watermark_to_infinity()
        outs = (
            pbegin
            | "Stream" >> stream
            | "ReadChunks"
            >> beam.ParDo(_ReadChunk(self._spool_dir)).with_outputs(
                LABEL.tag, DEAD_LETTER_TAG, main=PREDICTION.tag
            )
        )
        return {tag: outs[tag] for tag in (PREDICTION.tag, LABEL.tag, DEAD_LETTER_TAG)}
