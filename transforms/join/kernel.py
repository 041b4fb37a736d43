"""Vectorized join kernel: the per-shard logic behind :class:`JoinPredictionsAndLabels`.

Pure functions over Arrow tables, no Beam. The stateful DoFn in ``transform.py`` holds
a :class:`ShardState` per shard and calls these functions once per incoming batch and
once per timer firing, so the cost is per batch, not per record (the row-level
matching is in ``matching.py``).

All times are UTC epoch milliseconds. ``label_ttl_ms`` and ``orphan_ttl_ms`` are
event-time durations.

A *prediction* is a ``(prediction_id, model_version)`` pair: predictions of one id from
several model versions (shadow traffic) are distinct predictions, and one label of the
id scores each of them. A *label* belongs to a ``prediction_id``.

Outcomes (the conservation law, docs/semantics.md; invalid records never reach the join)
are counted under the names of :data:`JOIN_COUNTERS`:

* predictions: ``joined`` | ``expired`` | ``duplicate``
* labels: ``joined`` | ``late_label`` | ``orphan_label`` | ``duplicate``

A label that scores several versions' predictions is ``joined`` once, so
``prediction joined >= label joined``.

Streaming rules (:func:`step` and :func:`expire`):

* The first prediction to arrive for an ``(id, version)`` wins; one whose pair is
  pending or was resolved less than ``2 * label_ttl`` ago (a tombstone) is a
  duplicate. The first label to arrive for an id wins; later labels of the id are
  duplicates while it waits, and for ``2 * label_ttl`` after its outcome (a joined
  label is remembered in its predictions' tombstones). A record arriving at or
  after a tombstone's ``forget_at_ms`` (event time for a prediction, label time for
  a label) is new.
* A label meeting a pending prediction of its id joins it if its lag
  (``label_time - event_time``) is at most ``label_ttl``; it joins every pending
  version of the id it can, at once. A label that joined keeps scoring: a
  prediction of another version arriving later joins it on the same conditions
  (its ``y_true`` and ``label_time`` are kept in the tombstone).
* A label that joins nothing waits until the watermark passes ``label_time +
  orphan_ttl`` (rounded up to the grid), because a version's prediction may still
  come; a prediction made more than ``orphan_ttl`` after a label that waited for it
  does not join it. At that deadline the label is a ``late_label`` if it met a
  prediction of its id it was too late for (pending, or already expired), otherwise
  an ``orphan_label``.
* A prediction expires when the watermark passes its expiry timer, at the end of its
  timer-grid cell plus ``label_ttl`` (``event_time + label_ttl + 1 ms`` with the exact
  1 ms grid).

These rules compare record times, so the outcomes do not depend on when a timer
fires: a coarse timer grid (one firing per window period instead of one per distinct
deadline) gives the same outcomes as the exact one, as long as the grid is shorter
than ``label_ttl`` (tested). The LABELED examples one label scores in one batch come
out in one output batch (``transforms/metrics/paired.py`` pairs versions there).

The bounded rules (all records known at once) are in ``bounded.py``
(:func:`~msewatch.transforms.join.bounded.resolve_bounded`); they share
:class:`JoinConfig`, :data:`JOIN_COUNTERS` and the helpers that count outcomes
(:func:`join_counts`) and build EXAMPLES rows (:func:`example_rows`) with these.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from msewatch.schemas.features import check_features, feature_column
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
from msewatch.transforms.join import conflicts, matching
from msewatch.transforms.join.tombstones import TOMBS_SCHEMA, TombSet, hash_versions

WAITING_LABELS = LABELS.append(pa.field("met_prediction", pa.bool_()))
"""The labels a shard holds while they wait: LABELS plus whether the label met a
prediction of its id that it came too late for (it ends ``late_label``, not
``orphan_label``, unless a prediction joins it first)."""

JOIN_COUNTERS: dict[str, tuple[str, str]] = {
    "prediction_joined": (PREDICTION.name, "joined"),
    "prediction_expired": (PREDICTION.name, "expired"),
    "prediction_duplicate": (PREDICTION.name, "duplicate"),
    "label_joined": (LABEL.name, "joined"),
    "label_late": (LABEL.name, "late_label"),
    "label_orphan": (LABEL.name, "orphan_label"),
    "label_duplicate": (LABEL.name, "duplicate"),
}
"""Counts the join returns (and ``conflicts.JOIN_DETAILS``): name -> ``(record_type, outcome)``
of :data:`~msewatch.schemas.records.RECORD_OUTCOMES`; also Beam counters (``msewatch``)."""


@dataclasses.dataclass(frozen=True)
class JoinConfig:
    """Join settings.

    Attributes:
        label_ttl_ms: how long (event time) a prediction waits for its label; at most
            3650 days (``schemas/time_range.py``).
        orphan_ttl_ms: how long (event time) a label waits for its prediction; at
            most 3650 days.
        segment_keys: segment attributes carried from predictions to examples.
        features: feature values carried from predictions to their ARRIVED examples
            (``feat.<name>`` columns; :func:`~msewatch.schemas.features.check_features`).
            The state holds none: a pending prediction's LABELED and EXPIRED examples
            carry NaN, so features cost nothing after a prediction's arrival.
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
    features: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "features", check_features(self.features, self.segment_keys))
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
        """The predictions the join takes: with segment and feature columns."""
        return with_segments(PREDICTIONS, self.segment_keys, self.features)

    @property
    def pending_schema(self) -> pa.Schema:
        """The pending predictions a shard holds: with segment columns, no features."""
        return with_segments(PREDICTIONS, self.segment_keys)

    @property
    def example_schema(self) -> pa.Schema:
        return with_segments(EXAMPLES, self.segment_keys, self.features)

    def without_features(self, preds: pa.Table) -> pa.Table:
        """``preds`` (prediction schema) as the state holds them (pending schema)."""
        if not self.features:
            return preds
        return preds.drop_columns([feature_column(f) for f in self.features])


@dataclasses.dataclass(frozen=True)
class ShardState:
    """What one shard remembers between batches (streaming only). Immutable: the
    tables and tombstones are never modified in place, every step builds a new state
    (so a runner keeping state in memory may hold it without copying it).

    Attributes:
        preds: pending predictions (prediction schema), unresolved.
        labels: labels waiting for a prediction to join (:data:`WAITING_LABELS`).
        tombs: resolved predictions (a joined one with its label) and labels that
            ended late or orphaned, kept until ``forget_at_ms`` (see ``tombstones.py``).
    """

    preds: pa.Table
    labels: pa.Table
    tombs: TombSet

    @classmethod
    def empty(cls, config: JoinConfig) -> ShardState:
        return cls(
            config.pending_schema.empty_table(), WAITING_LABELS.empty_table(), TombSet.empty()
        )

    @property
    def size(self) -> int:
        return self.preds.num_rows + self.labels.num_rows + self.tombs.num_rows

    def __deepcopy__(self, memo) -> ShardState:
        return self  # immutable (see above)


def join_counts(**kw) -> dict[str, int]:
    """The :data:`JOIN_COUNTERS` counts: every name 0, except those given as keywords."""
    out = dict.fromkeys((*JOIN_COUNTERS, *conflicts.JOIN_DETAILS), 0)
    for k, v in kw.items():
        out[k] += int(v)
    return out


def _add_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a[k] + b[k] for k in a}


def example_rows(
    config: JoinConfig, kind: int, preds: pa.Table, y_true=None, lag_s=None
) -> pa.Table:
    """EXAMPLES rows (``config.example_schema``) of one ``kind``, one per prediction.

    Args:
        config: the join settings (the segment columns).
        kind: an :class:`~msewatch.schemas.records.ExampleKind`.
        preds: the predictions (prediction or pending schema: features absent from
            ``preds`` are NaN).
        y_true: the labels' values, one per prediction; NaN when None.
        lag_s: the label lags in seconds, one per prediction; NaN when None.

    Returns:
        The examples, in the order of ``preds``.
    """
    n = preds.num_rows
    nan = np.full(n, np.nan)
    cols = {
        "kind": np.full(n, kind, dtype=np.int8),
        "y_true": nan if y_true is None else y_true,
        "label_lag_s": nan if lag_s is None else lag_s,
    }
    names = set(preds.schema.names)
    for f in config.example_schema:
        if f.name not in cols:
            cols[f.name] = preds.column(f.name) if f.name in names else nan
    return pa.table(cols, schema=config.example_schema)


def concat_tables(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    """The non-empty ``tables`` in one chunk, or an empty ``schema`` table if none."""
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables).combine_chunks()


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
    near_tombs, tomb_rows = state.tombs.find(ids)
    outliving = matching.outliving(near_tombs, preds, labels)
    near = ShardState(near_preds, near_labels, near_tombs)
    near, examples, counts = _step(near, preds, labels, config, outliving)
    if outliving[2].any():  # some of the id's tombstones are forgotten: rewrite them all
        tombs = state.tombs.drop(tomb_rows).merge(near.tombs)
    else:  # the batch kept them (the first rows of near.tombs) and added the rest
        tombs = state.tombs.merge(near.tombs.slice(near_tombs.num_rows))
    state = ShardState(
        preds=_rejoin(state.preds, near_preds, other_preds, near.preds),
        labels=_rejoin(state.labels, near_labels, other_labels, near.labels),
        tombs=tombs,
    )
    return state, examples, counts


def _rejoin(old: pa.Table, near_old: pa.Table, other: pa.Table, near_new: pa.Table) -> pa.Table:
    """The state rows ``other`` plus the batch's ``near_new``; ``old`` itself (the same
    object: the stream's DoFn then does not rewrite its state cell) when the batch
    neither touched nor added any."""
    if near_old.num_rows == 0 and near_new.num_rows == 0:
        return old
    return concat_tables([other, near_new], old.schema)


def _step(state: ShardState, preds: pa.Table, labels: pa.Table, config: JoinConfig, outliving):
    """:func:`_step_records`, in two passes when some records outlive a tombstone.

    A batch may hold an id's records from before and from after a tombstone's
    ``forget_at_ms``: the earlier ones meet the tombstone (duplicate, late_label), the
    later ones come once it is forgotten, as they would in two batches.

    ``outliving`` is ``matching.outliving(state.tombs, preds, labels)``. The state's
    tombstones come back first in the new state's, in their order, unless one of them
    is outlived (``_step_records`` keeps them and appends the new ones).
    """
    outliving_preds, outliving_labels, _ = outliving
    if not (outliving_preds.any() or outliving_labels.any()):
        return _step_records(state, preds, labels, config)
    early = pa.array(~outliving_preds), pa.array(~outliving_labels)
    state, first, counts = _step_records(
        state, preds.filter(early[0]), labels.filter(early[1]), config
    )
    later_preds = preds.filter(pa.array(outliving_preds))
    later_labels = labels.filter(pa.array(outliving_labels))
    state, second, more = _step_records(state, later_preds, later_labels, config)
    return state, concat_tables([first, second], config.example_schema), _add_counts(counts, more)


def _step_records(state: ShardState, preds: pa.Table, labels: pa.Table, config: JoinConfig):
    """:func:`step` on the state rows sharing ids with the batch (``tombs`` a table)."""
    # Tombstones a record of this batch outlives are forgotten first: the outcome
    # depends on record times, not on when the coarse timer last fired.
    tombs = state.tombs
    tombs = tombs.filter(~matching.outliving(tombs, preds, labels)[2])
    known = matching.known_predictions(preds, state.preds, tombs)
    first = matching.first_mask(preds.column("prediction_id"), preds.column("model_version"))
    new_preds = preds.filter(first & ~known)
    pending = concat_tables([state.preds, config.without_features(new_preds)], state.preds.schema)

    ids = labels.column("prediction_id")
    seen, met = matching.label_tombstones(labels, tombs)
    duplicate = ~matching.first_mask(ids) | matching.is_in(ids, state.labels) | seen
    new_labels = labels.filter(~duplicate).append_column(
        "met_prediction", pa.array(met[~duplicate])
    )
    waiting = concat_tables([state.labels, new_labels], WAITING_LABELS)

    match = matching.match_labels(
        pending,
        new_preds.num_rows,
        waiting,
        state.labels.num_rows,
        tombs,
        config.label_ttl_ms,
        config.orphan_ttl_ms,
    )
    joined = pending.filter(match.joined)
    label_time = match.label_time_ms[match.joined]
    pred_time = joined.column("event_time_ms").to_numpy()
    examples = concat_tables(
        [
            example_rows(config, ExampleKind.ARRIVED, new_preds),
            example_rows(
                config,
                ExampleKind.LABELED,
                joined,
                y_true=match.y_true[match.joined],
                lag_s=(label_time - pred_time) / 1000.0,
            ),
        ],
        config.example_schema,
    )
    waiting = waiting.set_column(
        waiting.schema.get_field_index("met_prediction"),
        "met_prediction",
        pa.array(match.label_met),
    )
    joined_tombs = _tombstones(
        joined,
        label_seen=True,
        y_true=match.y_true[match.joined],
        label_time_ms=label_time,
        forget_at_ms=pred_time + 2 * config.label_ttl_ms,
    )
    counts = join_counts(
        prediction_duplicate=preds.num_rows - new_preds.num_rows,
        prediction_joined=match.joined.sum(),
        label_duplicate=duplicate.sum(),
        label_joined=match.label_joined.sum(),
        label_duplicate_conflicting=conflicts.streaming(labels, duplicate, state.labels, tombs),
    )
    state = ShardState(
        preds=pending.filter(~match.joined),
        labels=waiting.filter(~match.label_joined),
        tombs=concat_tables([tombs, joined_tombs], TOMBS_SCHEMA),
    )
    return state, examples, counts


def _tombstones(records: pa.Table, *, label_seen, y_true, label_time_ms, forget_at_ms):
    """Tombstone rows (:data:`TOMBS_SCHEMA`) of resolved predictions or, for LABELS
    rows, of labels that ended late or orphaned."""
    n = records.num_rows
    is_prediction = "model_version" in records.schema.names
    version_hash = (
        hash_versions(records.column("model_version"))
        if is_prediction
        else np.zeros(n, dtype=np.uint64)
    )
    return pa.table(
        {
            "prediction_id": records.column("prediction_id"),
            "version_hash": version_hash,
            "label_seen": np.full(n, label_seen, dtype=bool),
            "y_true": y_true,
            "label_time_ms": label_time_ms,
            "forget_at_ms": forget_at_ms,
            "is_prediction": np.full(n, is_prediction, dtype=bool),
        },
        schema=TOMBS_SCHEMA,
    )


def expire(state: ShardState, now_ms: int, config: JoinConfig):
    """Resolves what the watermark ``now_ms`` has passed (streaming timer firing).

    Predictions with ``event_time + label_ttl < now_ms`` expire; labels with
    ``label_time + orphan_ttl < now_ms`` end as ``late_label`` if they met a
    prediction they were too late for, else as ``orphan_label``; tombstones past
    ``forget_at_ms`` are dropped.

    Returns:
        ``(state, examples, counts)``.
    """
    p_due = state.preds.column("event_time_ms").to_numpy() + config.label_ttl_ms + 1 <= now_ms
    l_due = state.labels.column("label_time_ms").to_numpy() + config.orphan_ttl_ms + 1 <= now_ms
    gone = state.preds.filter(p_due)
    expired_ex = example_rows(config, ExampleKind.EXPIRED, gone)
    ended = state.labels.filter(l_due)
    late = ended.column("met_prediction").to_numpy(zero_copy_only=False)
    gone_time = gone.column("event_time_ms").to_numpy()
    ended_time = ended.column("label_time_ms").to_numpy()
    new_tombs = concat_tables(
        [
            _tombstones(
                gone,
                label_seen=False,
                y_true=np.full(gone.num_rows, np.nan),
                label_time_ms=np.zeros(gone.num_rows, dtype=np.int64),
                forget_at_ms=gone_time + 2 * config.label_ttl_ms,
            ),
            _tombstones(
                ended,
                label_seen=True,
                y_true=ended.column("y_true"),
                label_time_ms=ended_time,
                forget_at_ms=ended_time + 2 * config.label_ttl_ms,
            ),
        ],
        TOMBS_SCHEMA,
    )
    new_tombs = new_tombs.filter(new_tombs.column("forget_at_ms").to_numpy() > now_ms)
    counts = join_counts(
        prediction_expired=p_due.sum(), label_late=late.sum(), label_orphan=(~late).sum()
    )
    state = ShardState(  # an unchanged table stays the same object (see _rejoin)
        preds=state.preds.filter(~p_due) if p_due.any() else state.preds,
        labels=state.labels.filter(~l_due) if l_due.any() else state.labels,
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
