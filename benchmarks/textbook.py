"""The textbook Beam pipeline: what a Beam user would write to compute windowed MSE.

The benchmark's per-record peer (README, Performance), written the way the Beam
programming guide and the examples teach: one element per record, ``json.loads`` per line, key by
``prediction_id``, ``CoGroupByKey``, a first-wins join (per model version: a shadow
prediction of another version is its own prediction) with the TTL checked on the
label lag, ``WindowInto(FixedWindows)`` on the prediction's event time and
``CombinePerKey`` with a small ``(count, sum_w, sum_se, sum_ae)`` accumulator per
slice. It computes the same ``scored`` count, ``mse``, ``mae`` and ``rmse`` as
msewatch's bounded run (semantics in ``pandas_ref.py``), on the same files.

Time: element timestamps are the prediction's ``event_time`` (UTC); fixed windows,
default trigger, no lateness (bounded input: the watermark only moves at the end).
First wins needs the line position for ties, so files are read whole with
``fileio`` and enumerated, one element per line.

Runner: ``FnApiRunner``, the runner ``msewatch run`` uses for bounded input (Beam's
``DirectRunner`` would first try to start the Prism runner).

Usage::

    python benchmarks/textbook.py --predictions P.jsonl --labels L.jsonl --output DIR \
        [--window-seconds 3600] [--label-ttl-ms 604800000] [--slice region]

Writes ``DIR/metrics-*`` JSON Lines with ``window_start_ms, slice, scored, sum_w,
sum_se, sum_ae, mse, mae, rmse``, and ``DIR/timing.json`` with ``pipeline_s``: the
seconds from building the pipeline to its end, without interpreter start-up and
imports (the benchmark uses it for a comparison that does not charge the textbook
its fixed start-up cost).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import time
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms import window

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)
UNKNOWN = "unknown"


class Prediction(NamedTuple):
    """A parsed prediction line."""

    event_ms: int
    position: int
    y_pred: float
    weight: float
    segments: dict
    model_version: str


class Label(NamedTuple):
    """A parsed label line."""

    label_ms: int
    position: int
    y_true: float


def to_epoch_ms(value) -> int:
    """Epoch milliseconds (UTC) of an epoch-ms number or an RFC 3339 string."""
    if isinstance(value, (int, float)):
        return int(value)
    return (dt.datetime.fromisoformat(value) - _EPOCH) // _MS


def _number(value) -> float:
    return math.nan if value is None else float(value)


def parse_prediction(position_line):
    """``(prediction_id, Prediction)`` of one ``(line_number, line)``."""
    position, line = position_line
    rec = json.loads(line)
    weight = rec.get("weight")
    return rec["prediction_id"], Prediction(
        to_epoch_ms(rec["event_time"]),
        position,
        _number(rec["y_pred"]),
        1.0 if weight is None else float(weight),
        rec.get("segments") or {},
        rec.get("model_version") or UNKNOWN,
    )


def parse_label(position_line):
    """``(prediction_id, Label)`` of one ``(line_number, line)``."""
    position, line = position_line
    rec = json.loads(line)
    return rec["prediction_id"], Label(
        to_epoch_ms(rec["label_time"]), position, _number(rec["y_true"])
    )


def _lines(readable_file):
    """``(line_number, line)`` of every non-empty line of one file."""
    with readable_file.open() as f:
        for position, line in enumerate(f):
            if line.strip():
                yield position, line


def join_first_wins(grouped, label_ttl_ms: int):
    """The scored pairs of one prediction_id (one per model version), each stamped with
    the prediction's event time.

    First wins: earliest time, ties broken by line, per model version for predictions.
    The first label joins each version's prediction when its lag is at most
    ``label_ttl_ms``; a pair is scored when both values and e² are finite.
    """
    _, sides = grouped
    predictions, labels = list(sides["predictions"]), list(sides["labels"])
    if not predictions or not labels:
        return
    label = min(labels, key=lambda x: (x.label_ms, x.position))
    first = {}
    for p in sorted(predictions, key=lambda p: (p.event_ms, p.position)):
        first.setdefault(p.model_version, p)
    for pred in first.values():
        if label.label_ms - pred.event_ms > label_ttl_ms:
            continue
        error = pred.y_pred - label.y_true
        if math.isfinite(error) and math.isfinite(error * error):
            yield window.TimestampedValue((pred, error), pred.event_ms / 1000.0)


def by_slice(pair, slice_keys):
    """``(slice, (weight, error))`` for ``overall`` and each slice key."""
    pred, error = pair
    value = (pred.weight, error)
    yield "overall", value
    for key in slice_keys:
        yield f"{key}={pred.segments.get(key, UNKNOWN)}", value


class ErrorCombineFn(beam.CombineFn):
    """``(count, sum_w, sum_se, sum_ae)`` of ``(weight, error)`` pairs."""

    def create_accumulator(self):
        return 0, 0.0, 0.0, 0.0

    def add_input(self, acc, value):
        weight, error = value
        n, sw, sse, sae = acc
        return n + 1, sw + weight, sse + weight * error * error, sae + weight * abs(error)

    def merge_accumulators(self, accumulators):
        n, sw, sse, sae = 0, 0.0, 0.0, 0.0
        for a in accumulators:
            n, sw, sse, sae = n + a[0], sw + a[1], sse + a[2], sae + a[3]
        return n, sw, sse, sae

    def extract_output(self, acc):
        return acc


class FormatRow(beam.DoFn):
    """One JSON row per (window, slice)."""

    def process(self, element, win=beam.DoFn.WindowParam):
        slice_name, (n, sw, sse, sae) = element
        mse = sse / sw if sw > 0 else math.nan
        mae = sae / sw if sw > 0 else math.nan
        row = {"window_start_ms": win.start.micros // 1000, "slice": slice_name, "scored": n}
        row |= {"sum_w": sw, "sum_se": sse, "sum_ae": sae, "mse": mse, "mae": mae}
        row["rmse"] = math.sqrt(mse)
        yield json.dumps(row)


def build(p, predictions, labels, output, window_seconds, label_ttl_ms, slice_keys):
    """Adds the textbook pipeline to ``p`` (see the module docstring)."""

    def read(name, pattern, parse):
        return (
            p
            | f"Match{name}" >> fileio.MatchFiles(pattern)
            | f"Open{name}" >> fileio.ReadMatches()
            | f"Lines{name}" >> beam.FlatMap(_lines)
            | f"Parse{name}" >> beam.Map(parse)
        )

    preds = read("Predictions", predictions, parse_prediction)
    labs = read("Labels", labels, parse_label)
    return (
        {"predictions": preds, "labels": labs}
        | "CoGroupById" >> beam.CoGroupByKey()
        | "Join" >> beam.FlatMap(join_first_wins, label_ttl_ms)
        | "Window" >> beam.WindowInto(window.FixedWindows(window_seconds))
        | "BySlice" >> beam.FlatMap(by_slice, slice_keys)
        | "Combine" >> beam.CombinePerKey(ErrorCombineFn())
        | "Format" >> beam.ParDo(FormatRow())
        | "Write" >> beam.io.WriteToText(os.path.join(output, "metrics"))
    )


def main(argv=None) -> int:
    """Runs the textbook pipeline (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--predictions", required=True, help="predictions JSON Lines glob")
    parser.add_argument("--labels", required=True, help="labels JSON Lines glob")
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--window-seconds", type=int, default=3600)
    parser.add_argument("--label-ttl-ms", type=int, default=7 * 86_400_000)
    parser.add_argument("--slice", action="append", default=[], help="segment key (repeatable)")
    args, beam_args = parser.parse_known_args(argv)
    options = PipelineOptions(["--runner=FnApiRunner", *beam_args])
    start = time.perf_counter()
    with beam.Pipeline(options=options) as p:
        build(
            p,
            args.predictions,
            args.labels,
            args.output,
            args.window_seconds,
            args.label_ttl_ms,
            tuple(args.slice),
        )
    with open(os.path.join(args.output, "timing.json"), "w", encoding="utf-8") as f:
        json.dump({"pipeline_s": time.perf_counter() - start}, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
