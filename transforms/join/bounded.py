"""Bounded join: :func:`resolve_bounded`, the rules when all records are known at once.

Pure functions over Arrow tables, no Beam. The bounded DoFn in ``transform.py`` buffers
a shard's batches and calls :func:`resolve_bounded` once, at the end of input. The
outcomes and their counts (:data:`~msewatch.transforms.join.kernel.JOIN_COUNTERS`), the
prediction as an ``(id, version)`` pair and the streaming rules are described in
``kernel.py``; all times are UTC epoch milliseconds.

Bounded rules: the first prediction of an ``(id, version)`` is the one with the
earliest event_time, the first label of an id the one with the earliest label_time,
ties broken by ingest position. The first label joins each first prediction of its id
whose lag is at most ``label_ttl``; the others expire. The label is ``joined`` if it
joined one, ``late_label`` if its id has predictions but it joined none,
``orphan_label`` if its id has no prediction in the input. With timely watermarks
(records arriving in time order) the streaming rules give the same outcomes, except
for a label more than ``orphan_ttl`` older than a prediction of its id (clock skew
beyond the orphan TTL), which streaming does not join to it and bounded does, and for
records of one id spanning ``2 * label_ttl`` or more (streaming forgets the
tombstones).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from msewatch.schemas.records import ExampleKind
from msewatch.transforms.join import conflicts, matching
from msewatch.transforms.join.kernel import (
    JoinConfig,
    concat_tables,
    example_rows,
    join_counts,
)


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
    first_preds = preds.filter(
        matching.first_mask(preds.column("prediction_id"), preds.column("model_version"))
    )
    first, conflicting = conflicts.bounded(labels)
    first_labels = labels.filter(first)

    found, label_row = matching.lookup(
        first_preds.column("prediction_id"), first_labels.column("prediction_id")
    )
    lag_ms = np.zeros(first_preds.num_rows, dtype=np.int64)
    if found.any():
        label_time = first_labels.column("label_time_ms").to_numpy()[label_row]
        lag_ms = label_time - first_preds.column("event_time_ms").to_numpy()
    joined = found & (lag_ms <= config.label_ttl_ms)
    label_joined = np.bincount(label_row[joined], minlength=first_labels.num_rows) > 0
    label_met = matching.is_in(first_labels.column("prediction_id"), first_preds)

    arrived = example_rows(config, ExampleKind.ARRIVED, first_preds)
    first_preds = config.without_features(first_preds)  # only ARRIVED examples carry them
    examples = concat_tables(
        [
            arrived,
            example_rows(
                config,
                ExampleKind.LABELED,
                first_preds.filter(joined),
                y_true=first_labels.column("y_true").to_numpy()[label_row[joined]],
                lag_s=lag_ms[joined] / 1000.0,
            ),
            example_rows(config, ExampleKind.EXPIRED, first_preds.filter(~joined)),
        ],
        config.example_schema,
    )
    counts = join_counts(
        prediction_joined=joined.sum(),
        prediction_expired=first_preds.num_rows - joined.sum(),
        prediction_duplicate=preds.num_rows - first_preds.num_rows,
        label_joined=label_joined.sum(),
        label_late=(label_met & ~label_joined).sum(),
        label_orphan=(~label_met).sum(),
        label_duplicate=labels.num_rows - first_labels.num_rows,
        label_duplicate_conflicting=conflicting,
    )
    return examples, counts
