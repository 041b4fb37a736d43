"""Windowed error metrics per slice: :class:`ComputeMetrics`.

Time: each example is counted in the windows that contain its **prediction's event
time** (UTC), whenever its label arrives: "how wrong were the predictions made in
this hour". Windows, trigger and lateness are those of
:class:`~msewatch.transforms.metrics.windowing.WindowMetrics`.

Data flow, all batched:

1. ``PreAggregate``: each EXAMPLES batch from the join is grouped, vectorized, by
   (bucket of event time, slice) into :class:`ErrorAccumulator` partials; each
   bucket is emitted once, as a ``{slice: partial}`` map stamped with its start.
2. ``WindowMetrics``: windows and panes.
3. ``CombinePartials``: ``CombinePerKey`` merges the maps per window, slice by slice.
   The key is the slice's group (a stable hash of the slice name modulo
   ``MetricsConfig.key_groups``): with one group a window fires one pane for all its
   slices, so a late label costs one firing, not one per slice (firings, not
   records, are what a runner pays for); with more (16 on cluster runners) the
   merge spreads over workers and a pane holds the slices of one group.
   Combiner lifting still merges partials before the shuffle.
   Unbounded input: the panes are DISCARDING and ``AccumulatePanes`` adds each to
   the window's running total in state, so every emitted pane holds everything
   seen so far (ACCUMULATING for the consumer) while each partial is merged once.
4. ``FormatRow``: one ``metrics`` row per (window, slice, pane): the metric values,
   ``pane_index``, ``pane_timing`` (EARLY / ON_TIME / LATE) and ``complete`` (not
   EARLY, and every prediction of the window and slice labeled or expired).
   ``emitted_at`` is the only wall-clock column; the clock is injected.
"""

from __future__ import annotations

import dataclasses
import datetime
import typing
import zlib
from collections.abc import Callable

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.transforms import userstate
from apache_beam.utils.windowed_value import PaneInfoTiming

from msewatch.schemas.features import check_features, feature_column
from msewatch.transforms.metrics.accumulators import (
    MetricsCombineFn,
    finalize,
    merge_accumulators,
)
from msewatch.transforms.metrics.aggregate import (
    aggregate_examples,
    check_error_thresholds,
    check_freshness_within_s,
)
from msewatch.transforms.metrics.distributions import check_valid_ranges
from msewatch.transforms.metrics.paired import check_pairs, group_paired, pair_rows
from msewatch.transforms.metrics.slices import SliceCoder, SliceConfig, dense_unique
from msewatch.transforms.metrics.totals_coder import PaneTotalsCoder, Totals
from msewatch.transforms.metrics.windowing import WindowConfig, WindowMetrics

_KEY = "metrics"

_UTC = datetime.UTC
_TIMING = {
    PaneInfoTiming.EARLY: "EARLY",
    PaneInfoTiming.ON_TIME: "ON_TIME",
    PaneInfoTiming.LATE: "LATE",
    PaneInfoTiming.UNKNOWN: "ON_TIME",  # batch runners fire once, at the end
}


def utc_now() -> datetime.datetime:
    """The default clock of ``emitted_at``."""
    return datetime.datetime.now(_UTC)


@dataclasses.dataclass(frozen=True)
class MetricsConfig:
    """Metric settings.

    Attributes:
        window: windows and panes.
        slices: slice specs and cardinality cap.
        huber_delta: delta of the Huber loss.
        clock: returns the UTC ``emitted_at`` time (inject a fixed one in tests).
        error_thresholds: error thresholds, finite, >= 0 and increasing: the
            ``error_exceedance`` column counts, per threshold, the scored pairs with
            ``|y_pred - y_true|`` above it (weight and number). None by default.
        freshness_within_s: bounds on label lag in whole seconds, increasing, at most
            3650 days: the ``labeled_within`` column counts, per bound, the labeled
            predictions whose ``label_time - event_time`` is at most it (a negative
            lag is within every bound). None by default.
        version_pairs: ``(baseline, candidate)`` model versions whose paired loss
            moments (:mod:`.paired`) fill the ``paired`` column of the candidate's
            slices; the comparisons of the SLO file. None by default.
        valid_ranges: ``(low, high)`` ranges of ``y_true`` (low < high, infinite bounds
            allowed): the ``label_range`` column counts, per range, the labeled pairs
            whose finite ``y_true`` is outside it; the label_anomaly SLOs'. None by default.
        features: feature names (at most 32, ``schemas/features.py``): the
            ``feature_sketches`` column holds, per name, the value sketch of that
            feature over the window's distinct predictions (the examples carry
            ``feat.<name>`` columns); ``--feature`` and the feature_drift SLOs'.
            None by default.
        key_groups: the per-window merge is keyed by a stable hash of the slice name
            modulo this (1..4096): each slice is merged completely under its group's
            key, so the merge of a window's slices spreads over that many workers.
            1 (one firing per window for all slices) suits the in-process
            DirectRunner; ``msewatch run`` uses 16 on cluster runners.
    """

    window: WindowConfig = WindowConfig()
    slices: SliceConfig = SliceConfig()
    huber_delta: float = 1.0
    clock: Callable[[], datetime.datetime] = utc_now
    error_thresholds: tuple[float, ...] = ()
    freshness_within_s: tuple[int, ...] = ()
    version_pairs: tuple[tuple[str, str], ...] = ()
    valid_ranges: tuple[tuple[float, float], ...] = ()
    features: tuple[str, ...] = ()
    key_groups: int = 1

    def __post_init__(self):
        object.__setattr__(self, "features", check_features(self.features))
        if not 1 <= self.key_groups <= 4096:
            raise ValueError(f"metrics key groups must be in 1..4096, got {self.key_groups}")
        if not self.huber_delta > 0:
            raise ValueError(f"huber delta must be > 0, got {self.huber_delta}")
        thresholds = check_error_thresholds(self.error_thresholds)
        object.__setattr__(self, "error_thresholds", thresholds)
        within_s = check_freshness_within_s(self.freshness_within_s)
        object.__setattr__(self, "freshness_within_s", within_s)
        object.__setattr__(self, "version_pairs", check_pairs(self.version_pairs))
        object.__setattr__(self, "valid_ranges", check_valid_ranges(self.valid_ranges))


class _PreAggregate(beam.DoFn):
    """EXAMPLES batch -> one ``(key, {slice: ErrorAccumulator})`` per bucket, stamped."""

    def __init__(self, config: MetricsConfig):
        self._config = config
        self._slicer = None
        self._keys: dict[str, str] = {}  # slice name -> its group's key

    def setup(self):
        self._slicer = SliceCoder(self._config.slices)

    def process(self, table: pa.Table):
        if table.num_rows == 0:
            return
        period_ms = self._config.window.period_seconds * 1000
        bucket = table.column("event_time_ms").to_numpy() // period_ms
        buckets, bucket_code = dense_unique(bucket)
        cols = {
            name: table.column(name).to_numpy(zero_copy_only=False)
            for name in ("kind", "y_pred", "y_true", "weight", "label_lag_s")
        }
        features = {
            name: table.column(feature_column(name)).to_numpy(zero_copy_only=False)
            for name in self._config.features
        }
        pairs = self._config.version_pairs
        found = pair_rows(table, pairs) if pairs else []
        by_bucket: dict[int, dict] = {}
        specs = self._config.slices.all_specs
        for spec, (codes, names) in zip(specs, self._slicer.codes(table), strict=True):
            group = bucket_code.astype(np.int64) * len(names) + codes
            present, dense = dense_unique(group)
            accs = aggregate_examples(
                dense,
                len(present),
                cols["kind"],
                cols["y_pred"],
                cols["y_true"],
                cols["weight"],
                cols["label_lag_s"],
                huber_delta=self._config.huber_delta,
                error_thresholds=self._config.error_thresholds,
                freshness_within_s=self._config.freshness_within_s,
                valid_ranges=self._config.valid_ranges,
                features=features,
            )
            if found and "model_version" in spec:
                for acc, paired in zip(accs, group_paired(found, dense, len(present)), strict=True):
                    acc.paired = paired
            for g, acc in zip(present.tolist(), accs, strict=True):
                b, s = divmod(g, len(names))
                by_bucket.setdefault(b, {})[names[s]] = acc
        for b, partials in by_bucket.items():
            start_s = int(buckets[b]) * period_ms / 1000.0
            for key, group in self._by_group(partials).items():
                yield beam.window.TimestampedValue((key, group), start_s)

    def _by_group(self, partials: dict) -> dict[str, dict]:
        """``partials`` split by the key of each slice's group (one key when 1 group)."""
        groups = self._config.key_groups
        if groups == 1:
            return {_KEY: partials}
        out: dict[str, dict] = {}
        for name, acc in partials.items():
            key = self._keys.get(name)
            if key is None:
                key = self._keys[name] = slice_group_key(name, groups)
            out.setdefault(key, {})[name] = acc
        return out


def slice_group_key(slice_name: str, groups: int) -> str:
    """The metrics key of a slice: a stable hash (CRC-32, the same on every worker and
    run) of its name modulo ``groups``."""
    return f"{_KEY}-{zlib.crc32(slice_name.encode()) % groups}"


class _SliceMapCombineFn(beam.CombineFn):
    """Merges ``{slice: ErrorAccumulator}`` maps slice by slice (MetricsCombineFn each)."""

    def __init__(self):
        self._fn = MetricsCombineFn()

    def create_accumulator(self):
        return {}

    def add_input(self, mutable_accumulator, element):
        for name, partial in element.items():
            acc = mutable_accumulator.get(name) or self._fn.create_accumulator()
            mutable_accumulator[name] = self._fn.add_input(acc, partial)
        return mutable_accumulator

    def merge_accumulators(self, accumulators):
        merged: dict = {}
        for acc in accumulators:  # iterables are consumed once
            for name, parts in acc.items():
                merged[name] = self._fn.merge_accumulators([merged.get(name, []), parts])
        return merged

    def compact(self, accumulator):
        return {name: self._fn.compact(parts) for name, parts in accumulator.items()}

    def extract_output(self, accumulator):
        return {name: self._fn.extract_output(p) for name, p in accumulator.items()}


class _AccumulatePanes(beam.DoFn):
    """Unbounded input: turns DISCARDING panes into ACCUMULATING ones, per window.

    The window's trigger fires DISCARDING panes (only the partials that arrived since
    the last firing), and this step merges each into the window's running total in
    Beam state (one small ``{slice: ErrorAccumulator}`` per window, cleared when the
    window expires) and emits the total with the pane's own pane info. A runner that
    re-merges every accumulated input at each firing (the DirectRunner does) then
    merges each partial once instead of once per later pane. The total is a sum, so
    the last pane holds everything whatever order a runner delivers the panes in;
    each row keeps the pane info (index, timing) of the pane that produced it.
    """

    TOTAL = userstate.ReadModifyWriteStateSpec("total", PaneTotalsCoder())

    def process(self, element, total=beam.DoFn.StateParam(TOTAL)):
        key, delta = element
        merged = Totals(total.read() or {})
        for name, acc in delta.items():
            merged[name] = merge_accumulators([merged[name], acc]) if name in merged else acc
        total.write(merged)
        yield key, merged


class _FormatRow(beam.DoFn):
    """``{slice: ErrorAccumulator}`` of one pane -> one ``metrics`` row (dict) per slice."""

    def __init__(self, config: MetricsConfig):
        self._clock = config.clock
        self._bounds = (
            config.error_thresholds,
            config.freshness_within_s,
            config.valid_ranges,
            config.features,
        )

    def process(self, element, win=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        for slice_name, acc in sorted(element[1].items()):
            yield self._row(slice_name, acc, win, pane)

    def _row(self, slice_name, acc, win, pane) -> dict:
        row = {
            "window_start": win.start.to_utc_datetime(has_tz=True),
            "window_end": win.end.to_utc_datetime(has_tz=True),
            "slice": slice_name,
        }
        row.update(finalize(acc, *self._bounds))
        timing = _TIMING[pane.timing]
        resolved = row["labeled"] + row["expired"]
        row["pane_index"] = int(pane.index)
        row["pane_timing"] = timing
        row["complete"] = bool(
            timing != "EARLY" and row["predictions"] > 0 and resolved == row["predictions"]
        )
        row["emitted_at"] = self._clock()
        return row


class ComputeMetrics(beam.PTransform):
    """EXAMPLES batches (global window) -> ``metrics`` rows, one per window x slice x pane.

    See the module docstring for which timestamp is used and how panes fire.
    """

    def __init__(self, config: MetricsConfig, bounded: bool):
        super().__init__()
        self._config = config
        self._bounded = bounded

    def expand(self, examples):
        combined = (
            examples
            | "PreAggregate" >> beam.ParDo(_PreAggregate(self._config))
            | "Window" >> WindowMetrics(self._config.window, self._bounded)
            | "CombinePartials" >> beam.CombinePerKey(_SliceMapCombineFn())
        )
        if not self._bounded:
            # The key is a str (slice_group_key): a deterministic key coder for the state.
            combined.element_type = beam.typehints.Tuple[str, typing.Any]
            combined = combined | "AccumulatePanes" >> beam.ParDo(_AccumulatePanes())
        return combined | "FormatRow" >> beam.ParDo(_FormatRow(self._config))
