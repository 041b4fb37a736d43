"""Vectorized join kernel: the per-shard logic behind :class:`JoinPredictionsAndLabels`.

Pure functions over Arrow tables, no Beam. The stateful DoFn in ``join.py`` holds a
:class:`ShardState` per shard and calls these functions once per incoming batch and
once per timer firing, so the cost is per batch, not per record.

All times are UTC epoch milliseconds. ``label_ttl_ms`` and ``orphan_ttl_ms`` are
event-time durations.

Outcomes (the conservation law, docs/semantics.md; invalid records never reach the join)
are counted under the names of :data:`JOIN_COUNTERS`:

* predictions: ``joined`` | ``expired`` | ``duplicate``
* labels: ``joined`` | ``late_label`` | ``orphan_label`` | ``duplicate``

Streaming rules (:func:`step` and :func:`expire`):

* The first prediction to arrive for an id wins; a prediction whose id is pending or
  was resolved less than ``2 * label_ttl`` ago (a tombstone) is a duplicate. A
  record arriving at or after a tombstone's ``forget_at_ms`` (event time for a
  prediction, label time for a label) is new.
* An orphaned label's id is also remembered for ``2 * label_ttl``, so that a repeat
  of that label is a duplicate, as in a bounded run.
* The first label to arrive for an id wins. Joined if its lag
  (``label_time - event_time``) is at most ``label_ttl``; otherwise it is a
  ``late_label`` and the prediction stays pending until it expires. A label arriving
  after its prediction expired is a ``late_label``; after one was joined or judged
  late, later labels are duplicates.
* A prediction expires when the watermark passes its expiry timer, at the end of its
  timer-grid cell plus ``label_ttl`` (``event_time + label_ttl + 1 ms`` with the exact
  1 ms grid).
* A label whose prediction has not arrived waits; a prediction made more than
  ``orphan_ttl`` after the label's ``label_time`` does not join it, and when the
  watermark passes ``label_time + orphan_ttl`` (rounded up to the grid) the label is an
  ``orphan_label``.

These rules compare record times, so the outcomes do not depend on when a timer
fires: a coarse timer grid (one firing per window period instead of one per distinct
deadline) gives the same outcomes as the exact one, as long as the grid is shorter
than ``label_ttl`` (tested).

Bounded rules (:func:`resolve_bounded`): all records are known at once. The first
prediction is the one with the earliest event_time, the first label the one with the
earliest label_time, ties broken by ingest position. A prediction whose first label
has lag > label_ttl is expired and that label is ``late_label``; a label whose
prediction is absent from the input is an ``orphan_label``. With timely watermarks
(records arriving in time order) the streaming rules give the same outcomes, except
for a label more than ``orphan_ttl`` older than its prediction (clock skew beyond the
orphan TTL), which streaming calls an orphan and bounded joins.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from msewatch.schemas.records import (
    EXAMPLES,
    LABEL,
    LABELS,
    PREDICTION,
    PREDICTIONS,
    ExampleKind,
    with_segments,
)
from msewatch.schemas.time_range import MAX_DURATION_DAYS, MAX_DURATION_MS
from msewatch.transforms.join.tombstones import TOMBS_SCHEMA, TombSet

JOIN_COUNTERS: dict[str, tuple[str, str]] = {
    "prediction_joined": (PREDICTION.name, "joined"),
    "prediction_expired": (PREDICTION.name, "expired"),
    "prediction_duplicate": (PREDICTION.name, "duplicate"),
    "label_joined": (LABEL.name, "joined"),
    "label_late": (LABEL.name, "late_label"),
    "label_orphan": (LABEL.name, "orphan_label"),
    "label_duplicate": (LABEL.name, "duplicate"),
}
"""The counts the join returns: counter name -> ``(record_type, outcome)`` it counts,
an outcome of :data:`~msewatch.schemas.records.RECORD_OUTCOMES`. The names are also the
join's Beam counters (namespace ``msewatch``)."""


@dataclasses.dataclass(frozen=True)
class JoinConfig:
    """Join settings.

    Attributes:
        label_ttl_ms: how long (event time) a prediction waits for its label; at most
            3650 days (``schemas/time_range.py``).
        orphan_ttl_ms: how long (event time) a label waits for its prediction; at
            most 3650 days.
        segment_keys: segment attributes carried from predictions to examples.
        shards: number of join shards (keys of the stateful DoFn).
        timer_grid_ms: expiry timers fire on this grid (``msewatch run`` uses
            :func:`window_timer_grid_ms`): a prediction made in ``[k*g, (k+1)*g)`` expires
            at ``(k+1)*g + label_ttl``, the end of its window plus the TTL, before
            that window closes; labels and tombstones round up to the grid. Outcomes
            do not depend on it (see :func:`step`); 1 ms is exact.
    """

    label_ttl_ms: int = 7 * 24 * 3600 * 1000
    orphan_ttl_ms: int = 3600 * 1000
    segment_keys: tuple[str, ...] = ()
    shards: int = 16
    timer_grid_ms: int = 1

    def __post_init__(self):
        # The caps keep every deadline inside Python's datetime (schemas/time_range.py).
        if not 0 < self.label_ttl_ms <= MAX_DURATION_MS:
            raise ValueError(
                f"label_ttl must be positive and at most {MAX_DURATION_DAYS} days "
                f"({MAX_DURATION_MS} ms), got {self.label_ttl_ms} ms"
            )
        if not 0 <= self.orphan_ttl_ms <= MAX_DURATION_MS:
            raise ValueError(
                f"orphan_ttl must be >= 0 and at most {MAX_DURATION_DAYS} days "
                f"({MAX_DURATION_MS} ms), got {self.orphan_ttl_ms} ms"
            )
        if not 1 <= self.shards <= 4096:
            raise ValueError(f"shards must be in 1..4096, got {self.shards}")
        if self.timer_grid_ms < 1:
            raise ValueError(f"timer_grid_ms must be >= 1, got {self.timer_grid_ms}")
        if self.timer_grid_ms > 1 and self.timer_grid_ms >= self.label_ttl_ms:
            # a pending prediction must expire before 2 x label_ttl (window_timer_grid_ms)
            raise ValueError(
                f"the expiry grid ({self.timer_grid_ms} ms) must be shorter than "
                f"--label-ttl ({self.label_ttl_ms} ms)"
            )

    @property
    def prediction_schema(self) -> pa.Schema:
        return with_segments(PREDICTIONS, self.segment_keys)

    @property
    def example_schema(self) -> pa.Schema:
        return with_segments(EXAMPLES, self.segment_keys)


@dataclasses.dataclass(frozen=True)
class ShardState:
    """What one shard remembers between batches (streaming only). Immutable: the
    tables and tombstones are never modified in place, every step builds a new state
    (so a runner keeping state in memory may hold it without copying it).

    Attributes:
        preds: pending predictions (prediction schema + ``label_seen``), unresolved.
        labels: labels waiting for their prediction (LABELS schema).
        tombs: ids of resolved predictions and of orphaned labels, kept for
            duplicate detection until ``forget_at_ms`` (see ``tombstones.py``).
    """

    preds: pa.Table
    labels: pa.Table
    tombs: TombSet

    @classmethod
    def empty(cls, config: JoinConfig) -> ShardState:
        pred_schema = config.prediction_schema.append(pa.field("label_seen", pa.bool_()))
        return cls(pred_schema.empty_table(), LABELS.empty_table(), TombSet.empty())

    @property
    def size(self) -> int:
        return self.preds.num_rows + self.labels.num_rows + self.tombs.num_rows

    def __deepcopy__(self, memo) -> ShardState:
        return self  # immutable (see above)


def _counts(**kw) -> dict[str, int]:
    out = dict.fromkeys(JOIN_COUNTERS, 0)
    for k, v in kw.items():
        out[k] += int(v)
    return out


def _add_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a[k] + b[k] for k in JOIN_COUNTERS}


def _first_mask(ids: pa.Array) -> np.ndarray:
    """True at the first occurrence of each id (rows must already be in priority order)."""
    n = len(ids)
    mask = np.zeros(n, dtype=bool)
    if n:
        if isinstance(ids, pa.ChunkedArray):
            ids = ids.combine_chunks()
        codes = pc.dictionary_encode(ids).indices.to_numpy(zero_copy_only=False)
        _, first = np.unique(codes, return_index=True)
        mask[first] = True
    return mask


def _examples(config: JoinConfig, kind: int, preds: pa.Table, y_true=None, lag_s=None) -> pa.Table:
    n = preds.num_rows
    nan = np.full(n, np.nan)
    cols = {
        "kind": np.full(n, kind, dtype=np.int8),
        "event_time_ms": preds.column("event_time_ms"),
        "y_pred": preds.column("y_pred"),
        "y_true": nan if y_true is None else y_true,
        "weight": preds.column("weight"),
        "label_lag_s": nan if lag_s is None else lag_s,
        "model_version": preds.column("model_version"),
    }
    for f in config.example_schema:
        if f.name not in cols:
            cols[f.name] = preds.column(f.name)
    return pa.table(cols, schema=config.example_schema)


def _concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables).combine_chunks()


def _sort(table: pa.Table, time_col: str) -> pa.Table:
    return table.take(pc.sort_indices(table, [(time_col, "ascending"), ("position", "ascending")]))


def resolve_bounded(preds: pa.Table, labels: pa.Table, config: JoinConfig):
    """Joins every prediction and label of a bounded input at once.

    Args:
        preds: all valid predictions of one shard (prediction schema).
        labels: all valid labels of one shard (LABELS schema).
        config: the join settings.

    Returns:
        ``(examples, counts)``: EXAMPLES rows (one ARRIVED per distinct prediction,
        then one LABELED or EXPIRED each) and the outcome counts.
    """
    preds = _sort(preds, "event_time_ms")
    labels = _sort(labels, "label_time_ms")
    first_preds = preds.filter(_first_mask(preds.column("prediction_id")))
    first_labels = labels.filter(_first_mask(labels.column("prediction_id")))

    pred_row = pc.index_in(
        first_labels.column("prediction_id"), value_set=first_preds.column("prediction_id")
    )
    found = pc.is_valid(pred_row).to_numpy(zero_copy_only=False)
    pred_row = pred_row.fill_null(0).to_numpy(zero_copy_only=False)
    lag_ms = (
        first_labels.column("label_time_ms").to_numpy()
        - first_preds.column("event_time_ms").to_numpy()[pred_row]
        if first_preds.num_rows
        else np.zeros(first_labels.num_rows, dtype=np.int64)
    )
    joined = found & (lag_ms <= config.label_ttl_ms)
    late = found & ~joined

    joined_rows = pred_row[joined]
    is_joined = np.zeros(first_preds.num_rows, dtype=bool)
    is_joined[joined_rows] = True
    examples = _concat(
        [
            _examples(config, ExampleKind.ARRIVED, first_preds),
            _examples(
                config,
                ExampleKind.LABELED,
                first_preds.take(pa.array(joined_rows, type=pa.int64())),
                y_true=first_labels.column("y_true").to_numpy()[joined],
                lag_s=lag_ms[joined] / 1000.0,
            ),
            _examples(config, ExampleKind.EXPIRED, first_preds.filter(~is_joined)),
        ],
        config.example_schema,
    )
    counts = _counts(
        prediction_joined=joined.sum(),
        prediction_expired=first_preds.num_rows - joined.sum(),
        prediction_duplicate=preds.num_rows - first_preds.num_rows,
        label_joined=joined.sum(),
        label_late=late.sum(),
        label_orphan=(~found).sum(),
        label_duplicate=labels.num_rows - first_labels.num_rows,
    )
    return examples, counts


def _outliving(tombs: pa.Table, table: pa.Table, time_col: str) -> tuple[np.ndarray, np.ndarray]:
    """Per record of ``table``: whether it comes at or after its id's ``forget_at_ms``,
    and the row of that tombstone."""
    if tombs.num_rows == 0 or table.num_rows == 0:
        return np.zeros(table.num_rows, dtype=bool), np.zeros(table.num_rows, dtype=np.int64)
    forget = tombs.column("forget_at_ms").to_numpy()
    idx = pc.index_in(table.column("prediction_id"), value_set=tombs.column("prediction_id"))
    hit = pc.is_valid(idx).to_numpy(zero_copy_only=False)
    pos = idx.fill_null(0).to_numpy(zero_copy_only=False)
    return hit & (table.column(time_col).to_numpy() >= forget[pos]), pos


def _forget_outlived(tombs: pa.Table, preds: pa.Table, labels: pa.Table) -> pa.Table:
    """Drops the tombstones whose id comes back at or after their ``forget_at_ms``."""
    drop = np.zeros(tombs.num_rows, dtype=bool)
    for table, time_col in ((preds, "event_time_ms"), (labels, "label_time_ms")):
        outlived, pos = _outliving(tombs, table, time_col)
        drop[pos[outlived]] = True
    return tombs.filter(~drop) if drop.any() else tombs


def _is_in(values: pa.Array, table: pa.Table) -> np.ndarray:
    if table.num_rows == 0 or len(values) == 0:
        return np.zeros(len(values), dtype=bool)
    return pc.is_in(values, value_set=table.column("prediction_id")).to_numpy(zero_copy_only=False)


def _split_pending(table: pa.Table, value_set: pa.Array) -> tuple[pa.Table, pa.Table]:
    """(rows whose prediction_id is in ``value_set``, the other rows)."""
    if table.num_rows == 0 or len(value_set) == 0:
        return table.schema.empty_table(), table
    hit = pc.is_in(table.column("prediction_id"), value_set=value_set)
    return table.filter(hit), table.filter(pc.invert(hit))


def step(state: ShardState, preds: pa.Table, labels: pa.Table, config: JoinConfig):
    """Applies one batch of newly arrived records (streaming).

    Only state rows sharing an id with the batch can change, so the batch is applied
    to those rows and the others are kept as they are: the pending records are
    probed once against the batch's ids (a small hash set), the tombstones are
    looked up by sorted hash, and nothing is hashed per lookup over the whole state.

    Args:
        state: the shard's state before the batch.
        preds: new predictions in arrival order.
        labels: new labels in arrival order.
        config: the join settings.

    Returns:
        ``(state, examples, counts)``.
    """
    # (pc.unique of a ChunkedArray is ~20x slower than of the concatenated array)
    ids = pc.unique(
        pa.concat_arrays(
            [t.column("prediction_id").combine_chunks().cast(pa.string()) for t in (preds, labels)]
        )
    )
    near_preds, other_preds = _split_pending(state.preds, ids)
    near_labels, other_labels = _split_pending(state.labels, ids)
    near_tombs, other_tombs = state.tombs.split(ids)
    near = ShardState(near_preds, near_labels, near_tombs)
    near, examples, counts = _step(near, preds, labels, config)
    state = ShardState(
        preds=_concat([other_preds, near.preds], other_preds.schema),
        labels=_concat([other_labels, near.labels], LABELS),
        tombs=other_tombs.merge(near.tombs),
    )
    return state, examples, counts


def _step(state: ShardState, preds: pa.Table, labels: pa.Table, config: JoinConfig):
    """:func:`_step_records`, in two passes when some records outlive their tombstone.

    A batch may hold an id's records from before and from after its tombstone's
    ``forget_at_ms``: the earlier ones meet the tombstone (duplicate, late_label), the
    later ones come as new records once it is forgotten, as they would in two batches.
    """
    outliving_preds, _ = _outliving(state.tombs, preds, "event_time_ms")
    outliving_labels, _ = _outliving(state.tombs, labels, "label_time_ms")
    if not (outliving_preds.any() or outliving_labels.any()):
        return _step_records(state, preds, labels, config)
    early = pa.array(~outliving_preds), pa.array(~outliving_labels)
    state, first, counts = _step_records(
        state, preds.filter(early[0]), labels.filter(early[1]), config
    )
    later_preds = preds.filter(pa.array(outliving_preds))
    later_labels = labels.filter(pa.array(outliving_labels))
    state, second, more = _step_records(state, later_preds, later_labels, config)
    return state, _concat([first, second], config.example_schema), _add_counts(counts, more)


def _step_records(state: ShardState, preds: pa.Table, labels: pa.Table, config: JoinConfig):
    """:func:`step` on the state rows sharing ids with the batch (``tombs`` a table)."""
    # Tombstones a record of this batch outlives are forgotten first: the outcome
    # depends on record times, not on when the coarse timer last fired.
    state = dataclasses.replace(state, tombs=_forget_outlived(state.tombs, preds, labels))
    new_preds = _admit_predictions(state, preds)
    counts = _counts(prediction_duplicate=preds.num_rows - new_preds.num_rows)
    arrived = _examples(config, ExampleKind.ARRIVED, new_preds)
    pending = _concat([state.preds, _with_no_label_seen(new_preds)], state.preds.schema)

    new_labels, tombs, label_counts = _admit_labels(state, labels)
    waiting = _concat([state.labels, new_labels], LABELS)
    match = _match_waiting_labels(pending, waiting, state.labels.num_rows, config)
    counts = _add_counts(_add_counts(counts, label_counts), match.counts())

    joined_rows = match.pred_row[match.joined]
    joined_preds = pending.take(pa.array(joined_rows, type=pa.int64()))
    labeled = _examples(
        config,
        ExampleKind.LABELED,
        joined_preds,
        y_true=waiting.column("y_true").to_numpy()[match.joined],
        lag_s=match.lag_ms[match.joined] / 1000.0,
    )
    if pending.num_rows:
        pending = pending.set_column(
            pending.schema.get_field_index("label_seen"), "label_seen", pa.array(match.label_seen)
        )
    resolved = np.zeros(pending.num_rows, dtype=bool)
    resolved[joined_rows] = True
    joined_tombs = _tombstones(
        joined_preds.column("prediction_id"),
        label_seen=np.ones(joined_preds.num_rows, dtype=bool),
        forget_at_ms=joined_preds.column("event_time_ms").to_numpy() + 2 * config.label_ttl_ms,
        is_prediction=True,
    )
    state = ShardState(
        preds=pending.filter(~resolved),
        labels=waiting.filter(~match.found),
        tombs=_concat([tombs, joined_tombs], TOMBS_SCHEMA),
    )
    return state, _concat([arrived, labeled], config.example_schema), counts


def _admit_predictions(state: ShardState, preds: pa.Table) -> pa.Table:
    """The batch's new predictions: the first arrival of each id, unless that id is
    already pending or has a prediction tombstone (then every arrival is a duplicate)."""
    ids = preds.column("prediction_id")
    first_of_id = _first_mask(ids)
    prediction_tombs = state.tombs.filter(state.tombs.column("is_prediction"))
    known = _is_in(ids, state.preds) | _is_in(ids, prediction_tombs)
    return preds.filter(first_of_id & ~known)


def _with_no_label_seen(preds: pa.Table) -> pa.Table:
    """New predictions as pending rows: ``label_seen`` false."""
    return preds.append_column("label_seen", pa.array(np.zeros(preds.num_rows, dtype=bool)))


def _admit_labels(state: ShardState, labels: pa.Table):
    """Sorts the batch's labels against waiting labels and tombstones.

    A label is a duplicate when an earlier label of its id arrived (in this batch or
    waiting from an earlier one), or when its tombstone says a label was seen. The
    first label of an id whose prediction expired unlabeled is ``late_label``, and its
    tombstone remembers it. The other labels are new: they go on to wait and match.

    Returns:
        ``(new labels, tombstones with label_seen updated, counts)``.
    """
    ids = labels.column("prediction_id")
    duplicate = ~_first_mask(ids) | _is_in(ids, state.labels)
    tombs = state.tombs
    tomb_row = (
        pc.index_in(ids, value_set=tombs.column("prediction_id"))
        if tombs.num_rows and labels.num_rows
        else pa.nulls(labels.num_rows, pa.int32())
    )
    has_tomb = pc.is_valid(tomb_row).to_numpy(zero_copy_only=False) & ~duplicate
    tomb_row = tomb_row.fill_null(0).to_numpy(zero_copy_only=False)
    label_seen = tombs.column("label_seen").to_numpy(zero_copy_only=False).copy()
    tomb_had_label = has_tomb & label_seen[tomb_row] if tombs.num_rows else has_tomb
    late_for_tomb = has_tomb & ~tomb_had_label
    if late_for_tomb.any():
        label_seen[tomb_row[late_for_tomb]] = True
        tombs = tombs.set_column(1, "label_seen", pa.array(label_seen))
    counts = _counts(
        label_duplicate=duplicate.sum() + tomb_had_label.sum(), label_late=late_for_tomb.sum()
    )
    return labels.filter(~duplicate & ~has_tomb), tombs, counts


class _LabelMatch(NamedTuple):
    """Where each waiting label meets the pending predictions (arrays over its rows).

    Attributes:
        found: its prediction is pending (and was not made more than ``orphan_ttl``
            after a label that waited for it); the label leaves the waiting rows.
        duplicate: found, but that prediction already saw a label.
        joined: found, first label, lag at most ``label_ttl``.
        late: found, first label, lag beyond ``label_ttl`` (the prediction stays
            pending until it expires).
        pred_row: row of its prediction in the pending table (meaningful where found).
        lag_ms: ``label_time - event_time`` (meaningful where found).
        label_seen: the pending table's ``label_seen`` column after these labels.
    """

    found: np.ndarray
    duplicate: np.ndarray
    joined: np.ndarray
    late: np.ndarray
    pred_row: np.ndarray
    lag_ms: np.ndarray
    label_seen: np.ndarray

    def counts(self) -> dict[str, int]:
        return _counts(
            label_duplicate=self.duplicate.sum(),
            label_late=self.late.sum(),
            label_joined=self.joined.sum(),
            prediction_joined=self.joined.sum(),
        )


def _match_waiting_labels(
    pending: pa.Table, waiting: pa.Table, earlier_labels: int, config: JoinConfig
) -> _LabelMatch:
    """Matches every waiting label with a pending prediction.

    Args:
        pending: pending predictions (with ``label_seen``), this batch's included.
        waiting: waiting labels; the first ``earlier_labels`` rows arrived in earlier
            batches, the others in this one.
        config: the join settings.
    """
    pred_row = (
        pc.index_in(waiting.column("prediction_id"), value_set=pending.column("prediction_id"))
        if waiting.num_rows and pending.num_rows
        else pa.nulls(waiting.num_rows, pa.int32())
    )
    found = pc.is_valid(pred_row).to_numpy(zero_copy_only=False)
    pred_row = pred_row.fill_null(0).to_numpy(zero_copy_only=False)
    any_pending = pending.num_rows > 0
    label_seen = pending.column("label_seen").to_numpy(zero_copy_only=False).copy()
    lag_ms = (
        waiting.column("label_time_ms").to_numpy()
        - pending.column("event_time_ms").to_numpy()[pred_row]
        if any_pending
        else np.zeros(waiting.num_rows, dtype=np.int64)
    )
    # A label that waited is an orphan for a prediction made more than orphan_ttl after
    # it (it stays waiting until its timer orphans it).
    waited = np.arange(waiting.num_rows) < earlier_labels
    found &= ~(waited & (-lag_ms > config.orphan_ttl_ms))
    duplicate = found & label_seen[pred_row] if any_pending else found
    first_label = found & ~duplicate
    joined = first_label & (lag_ms <= config.label_ttl_ms)
    late = first_label & ~joined
    label_seen[pred_row[late]] = True
    return _LabelMatch(found, duplicate, joined, late, pred_row, lag_ms, label_seen)


def _tombstones(ids, *, label_seen, forget_at_ms, is_prediction: bool) -> pa.Table:
    """Tombstone rows (:data:`TOMBS_SCHEMA`) of resolved predictions or orphaned labels."""
    return pa.table(
        {
            "prediction_id": ids,
            "label_seen": label_seen,
            "forget_at_ms": forget_at_ms,
            "is_prediction": np.full(len(ids), is_prediction, dtype=bool),
        },
        schema=TOMBS_SCHEMA,
    )


def expire(state: ShardState, now_ms: int, config: JoinConfig):
    """Resolves what the watermark ``now_ms`` has passed (streaming timer firing).

    Predictions with ``event_time + label_ttl < now_ms`` expire, labels with
    ``label_time + orphan_ttl < now_ms`` become orphans, tombstones past
    ``forget_at_ms`` are dropped.

    Returns:
        ``(state, examples, counts)``.
    """
    p_due = state.preds.column("event_time_ms").to_numpy() + config.label_ttl_ms + 1 <= now_ms
    l_due = state.labels.column("label_time_ms").to_numpy() + config.orphan_ttl_ms + 1 <= now_ms
    gone = state.preds.filter(p_due)
    expired_ex = _examples(config, ExampleKind.EXPIRED, gone.drop_columns(["label_seen"]))
    orphans = state.labels.filter(l_due)
    new_tombs = _concat(
        [
            _tombstones(
                gone.column("prediction_id"),
                label_seen=gone.column("label_seen"),
                forget_at_ms=gone.column("event_time_ms").to_numpy() + 2 * config.label_ttl_ms,
                is_prediction=True,
            ),
            _tombstones(
                orphans.column("prediction_id"),
                label_seen=np.ones(orphans.num_rows, dtype=bool),
                forget_at_ms=orphans.column("label_time_ms").to_numpy() + 2 * config.label_ttl_ms,
                is_prediction=False,
            ),
        ],
        TOMBS_SCHEMA,
    )
    new_tombs = new_tombs.filter(new_tombs.column("forget_at_ms").to_numpy() > now_ms)
    counts = _counts(prediction_expired=p_due.sum(), label_orphan=l_due.sum())
    state = ShardState(
        preds=state.preds.filter(~p_due),
        labels=state.labels.filter(~l_due),
        tombs=state.tombs.forget_until(now_ms).merge(new_tombs),
    )
    return state, expired_ex, counts


def window_timer_grid_ms(period_ms: int, label_ttl_ms: int) -> int:
    """The coarsest timer grid that keeps the join's outcomes and windows intact.

    The largest divisor of the window period shorter than ``label_ttl``: dividing the
    period puts a prediction's expiry (end of its grid cell + TTL) at or before the end
    of its first window + TTL, before that window closes; being shorter than the TTL
    expires a pending prediction before ``2 * label_ttl``, when a repeat of its id
    would count as a new record.
    """
    best = 1
    d = 1
    while d * d <= period_ms:
        if period_ms % d == 0:
            for cand in (d, period_ms // d):
                if best < cand < label_ttl_ms:
                    best = cand
        d += 1
    return best


def _grid_ceil(t_ms: int, grid_ms: int) -> int:
    """The first grid point at or after ``t_ms``."""
    return -(-t_ms // grid_ms) * grid_ms


def next_deadline_ms(state: ShardState, config: JoinConfig) -> int | None:
    """When the shard's timer should fire next, or None when the state can be cleared.

    The earliest expiry of a pending prediction (the end of its timer-grid cell plus
    ``label_ttl``; exact with a 1 ms grid) or orphaning of a waiting label, rounded
    up to the grid. A shard holding only tombstones fires once, when the last one can
    be forgotten: tombstones need no timer to be correct (:func:`step` ignores the
    ones a record outlives), only to free memory.
    """
    grid = config.timer_grid_ms
    candidates = []
    if state.preds.num_rows:
        first = pc.min(state.preds.column("event_time_ms")).as_py()
        candidates.append((first // grid + 1) * grid + config.label_ttl_ms)
    if state.labels.num_rows:
        first = pc.min(state.labels.column("label_time_ms")).as_py()
        candidates.append(_grid_ceil(first + config.orphan_ttl_ms + 1, grid))
    if candidates:
        return min(candidates)
    return state.tombs.max_forget_at_ms()
