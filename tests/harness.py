"""Runs the real pipeline on small in-memory record tables, bounded or as a replay.

Records are given as lists of dicts; times in ms since the epoch (UTC). The pipeline
writes real Parquet tables to a temporary directory; results are read back with
pandas, as a user would.
"""

from __future__ import annotations

import dataclasses
import datetime
import glob
import os

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions

from msewatch.pipelines.monitor import build
from msewatch.runners import direct_clock, direct_speedups
from msewatch.runners import outcomes as run_outcomes
from msewatch.runners.config import monitor_config
from msewatch.schemas.records import DEAD_LETTER, DEAD_LETTER_TAG, LABEL, PREDICTION
from msewatch.transforms.io.replay import ReplaySpool
from msewatch.transforms.io.replay_spool import plan_events, write_spool

H = 3600 * 1000
MODES = ("bounded", "replay")
FIXED_NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)


def fixed_clock() -> datetime.datetime:
    return FIXED_NOW


def predictions(rows: list[dict], segment_keys=(), features=()) -> pa.Table:
    """Prediction table from dicts with id, t, y and optional mv/weight/segments, and a
    ``features`` dict (a missing feature is NaN)."""
    schema = PREDICTION.batch_schema(segment_keys, features)
    cols = {
        "prediction_id": [r["id"] for r in rows],
        "event_time_ms": [r["t"] for r in rows],
        "y_pred": [float(r["y"]) for r in rows],
        "model_version": [r.get("mv", "v1") for r in rows],
        "weight": [float(r.get("w", 1.0)) for r in rows],
        "position": [r.get("pos", i) for i, r in enumerate(rows)],
    }
    for key in segment_keys:
        cols[f"seg.{key}"] = [r.get(key, "unknown") for r in rows]
    for name in features:
        cols[f"feat.{name}"] = [float(r.get("features", {}).get(name, np.nan)) for r in rows]
    return pa.table(cols, schema=schema)


def labels(rows: list[dict]) -> pa.Table:
    """Label table from dicts with id, t (label_time) and y."""
    return pa.table(
        {
            "prediction_id": [r["id"] for r in rows],
            "y_true": [float(r["y"]) for r in rows],
            "label_time_ms": [r["t"] for r in rows],
            "position": [r.get("pos", i) for i, r in enumerate(rows)],
        },
        schema=LABEL.schema,
    )


def make_config(
    output,
    bounded,
    *,
    ttl_ms=3 * H,
    orphan_ms=H,
    window_s=3600,
    every_s=None,
    slices=(),
    shards=4,
    early_s=60,
    grid_ms=None,
    error_thresholds=(),
    freshness_within_s=(),
    features=(),
    slo=None,
):
    """The config of a test run on the DirectRunner (``runners/config.py``'s factory, as
    ``msewatch run`` builds it), stamped by :func:`fixed_clock`; ``slo`` (an
    ``SloFile``) adds its exact counts, version pairs and the comparisons' slices."""
    return monitor_config(
        str(output),
        bounded=bounded,
        label_ttl_ms=ttl_ms,
        orphan_ttl_ms=orphan_ms,
        window_seconds=window_s,
        every_seconds=every_s,
        early_firing_seconds=early_s,
        slices=slices,
        features=features,
        shards=shards,
        expiry_grid_ms=grid_ms,
        slo=slo,
        error_thresholds=error_thresholds,
        freshness_within_s=freshness_within_s,
        clock=fixed_clock,
    )


class _TablesSource(beam.PTransform):
    def __init__(self, preds, labs):
        super().__init__()
        self._preds, self._labs = preds, labs

    def expand(self, pbegin):
        return {
            PREDICTION.tag: pbegin | "P" >> beam.Create([self._preds]),
            LABEL.tag: pbegin | "L" >> beam.Create([self._labs]),
            DEAD_LETTER_TAG: pbegin | "D" >> beam.Create([DEAD_LETTER.empty_table()]),
        }


def read_metrics(output) -> pd.DataFrame:
    files = glob.glob(os.path.join(str(output), "metrics", "*", "*.parquet"))
    if not files:
        return pd.DataFrame()
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return df.sort_values(["window_start", "slice", "pane_index"]).reset_index(drop=True)


def latest(df: pd.DataFrame) -> pd.DataFrame:
    """Latest pane per (window, slice); an empty table (no metrics files) stays empty."""
    if df.empty:
        return df
    idx = df.groupby(["window_start", "window_end", "slice"])["pane_index"].idxmax()
    return df.loc[idx].sort_values(["window_start", "slice"]).reset_index(drop=True)


def read_table(output, table: str) -> pd.DataFrame:
    """An unpartitioned output table (``alerts``, ``slo_status``, ...); empty if absent."""
    files = sorted(glob.glob(os.path.join(str(output), table, "*.parquet")))
    return (
        pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        if files
        else (pd.DataFrame())
    )


def run_bounded(preds, labs, output, slo=None, spill_folder=None, spill_buckets=None, **cfg):
    config = make_config(output, True, slo=slo, **cfg)
    config = dataclasses.replace(config, spill_folder=spill_folder, spill_buckets=spill_buckets)
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    build(p, config, _TablesSource(preds, labs))
    p.run().wait_until_finish()
    return read_metrics(output), run_outcomes.outcome_counts(str(output))


def run_replay(preds, labs, output, chunk_rows=1, slo=None, **cfg):
    config = make_config(output, False, slo=slo, **cfg)
    spool = os.path.join(str(output), "_spool")
    arrivals = write_spool(preds, labs, DEAD_LETTER.empty_table(), spool)
    events = plan_events(arrivals, config.metrics.window, config.join, chunk_rows)
    p = beam.Pipeline(options=PipelineOptions(["--runner=BundleBasedDirectRunner", "--streaming"]))
    with direct_speedups.installed():
        build(p, config, ReplaySpool(spool, events, config.metrics.window.early_firing_seconds))
        with direct_clock.early_test_clock():
            result = p.run()
        result.wait_until_finish()
    return read_metrics(output), run_outcomes.outcome_counts(str(output))


def run_both(tmp_path_factory, preds, labs, chunk_rows: int, name: str = "", **cfg):
    """The same records through :func:`run_bounded` and :func:`run_replay` (``chunk_rows``
    records a replay chunk), each writing into a temporary directory of its own
    (``tmp_path_factory.mktemp(f"{name}-{mode}")``); ``cfg`` as for :func:`make_config`
    plus ``slo``. Returns ``{"bounded": output, "replay": output}``."""
    outputs = {}
    for mode in MODES:
        output = tmp_path_factory.mktemp(f"{name}-{mode}" if name else mode)
        if mode == "bounded":
            run_bounded(preds, labs, output, **cfg)
        else:
            run_replay(preds, labs, output, chunk_rows, **cfg)
        outputs[mode] = output
    return outputs


def alerts_and_status(outputs: dict) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """``{mode: (alerts, slo_status)}`` of :func:`run_both`'s outputs."""
    return {
        mode: (read_table(output, "alerts"), read_table(output, "slo_status"))
        for mode, output in outputs.items()
    }


def row(df: pd.DataFrame, window_start_ms: int, slice_name: str = "overall") -> pd.Series:
    ts = pd.Timestamp(window_start_ms, unit="ms", tz="UTC")
    hit = df[(df["window_start"] == ts) & (df["slice"] == slice_name)]
    assert len(hit) == 1, f"expected one row for {ts} {slice_name}, got {len(hit)}"
    return hit.iloc[0]


__all__ = [
    "H",
    "MODES",
    "alerts_and_status",
    "labels",
    "latest",
    "np",
    "predictions",
    "row",
    "run_both",
    "run_bounded",
    "run_replay",
]
