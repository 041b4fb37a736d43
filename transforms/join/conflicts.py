"""Conflicting duplicate labels: repeats of an id whose ``y_true`` differs from the winner's.

The first label of a ``prediction_id`` wins; a later one is a ``duplicate`` outcome
(``kernel.py``, ``bounded.py``). A duplicate is *conflicting* when its ``y_true`` differs
from the winning label's (two NaN are equal, as are two infinities of one sign): a
labeling pipeline that sends two truths for one id. Conflicting duplicates stay
``duplicate`` outcomes (conservation is untouched); they are a *detail* of that outcome,
counted under :data:`JOIN_DETAILS` (the join's counter ``label_duplicate_conflicting``),
which ``transforms/outcomes.py`` writes as the ``outcomes`` row ``(label, duplicate,
detail=conflicting)`` beside ``(label, duplicate, detail=NULL)`` for the rest.

Where the winner's ``y_true`` is, vectorized over a batch (Arrow lookups, no loop):

* streaming (:func:`streaming`): the label of the id waiting for its prediction;
  else the label a tombstone of the id keeps (a joined prediction's tombstone keeps its
  label's value, a label that ended late or orphaned keeps its own, ``tombstones.py``);
  else the first label of the id in this batch;
* bounded (:func:`bounded`): the first label of the id (earliest label_time,
  then ingest position).

With labels arriving in label-time order the two agree (tested), with the join's own
exceptions (records of one id spanning ``2 * label_ttl``: streaming forgets the winner).

They are not attributed to a window or slice: a repeat of a joined label meets only the
tombstones of its predictions, which keep neither the event time nor the segments (adding
them would multiply the state the join keeps per resolved prediction). So the
``label_anomaly`` SLI's window share counts out-of-range and non-finite labels, and
conflicting duplicates are reported by the run summary and ``msewatch query OUT
label_anomalies`` (one row for the run).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from msewatch.schemas.records import LABEL
from msewatch.transforms.join import matching

CONFLICTING = "label_duplicate_conflicting"
JOIN_DETAILS: dict[str, tuple[str, str, str]] = {
    CONFLICTING: (LABEL.name, "duplicate", "conflicting")
}
"""Counts the join returns beside :data:`~msewatch.transforms.join.kernel.JOIN_COUNTERS`:
counter name -> ``(record_type, outcome, detail)``; the records a detail counts are part
of its outcome's count (a subset, never a second outcome)."""


def _values(table: pa.Table) -> np.ndarray:
    return table.column("y_true").to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def differs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per element: ``a`` and ``b`` are different values (NaN equals NaN)."""
    return ~((a == b) | (np.isnan(a) & np.isnan(b)))


def streaming(labels: pa.Table, duplicate: np.ndarray, waiting: pa.Table, tombs: pa.Table) -> int:
    """The conflicting duplicates of a streaming batch.

    Args:
        labels: the batch's labels, in arrival order.
        duplicate: per label, whether it is a duplicate outcome.
        waiting: the labels that waited before the batch (at most one per id).
        tombs: the tombstones of the batch's ids (``TOMBS_SCHEMA``), without those a
            record of the batch outlives.
    """
    if not duplicate.any():
        return 0
    ids = labels.column("prediction_id")
    y = _values(labels)
    first = matching.first_mask(ids)
    _, row = matching.lookup(ids, labels.filter(first).column("prediction_id"))
    winner = y[first][row]
    kept = tombs.filter(tombs.column("label_seen"))
    for held in (kept, waiting):  # a waiting label is never also in a tombstone
        found, row = matching.lookup(ids, held.column("prediction_id"))
        if found.any():
            winner = np.where(found, _values(held)[row], winner)
    return int(np.count_nonzero(duplicate & differs(y, winner)))


def bounded(labels: pa.Table, first_labels: pa.Table) -> int:
    """The conflicting duplicates of a bounded shard: ``labels`` (all of them) against
    ``first_labels`` (the winner of each id); a winner does not differ from itself."""
    _, row = matching.lookup(labels.column("prediction_id"), first_labels.column("prediction_id"))
    return int(np.count_nonzero(differs(_values(labels), _values(first_labels)[row])))
