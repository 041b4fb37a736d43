"""Conflicting duplicate labels: repeats of an id whose ``y_true`` differs from the winner's.

The first label of a ``prediction_id`` wins; a later one is a ``duplicate`` outcome
(``kernel.py``, ``bounded.py``). A duplicate is *conflicting* when its ``y_true`` differs
from the winning label's (two NaN are equal, as are two infinities of one sign): a
labeling pipeline that sends two truths for one id. Conflicting duplicates stay
``duplicate`` outcomes (conservation is untouched); they are a *detail* of that outcome,
counted under :data:`JOIN_DETAILS` (the join's counter ``label_duplicate_conflicting``),
which ``transforms/outcomes.py`` writes as the ``outcomes`` row ``(label, duplicate,
detail=conflicting)`` beside ``(label, duplicate, detail=NULL)`` for the rest.

Where the winner's ``y_true`` is (one encoding of the ids and numpy per batch, no loop):

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
    # one encoding of every id; rows in priority order (waiting, kept, the batch's), so
    # that the first row of each id holds its winner (a waiting label is never kept too)
    parts = (waiting, tombs.filter(tombs.column("label_seen")), labels)
    ids = [t.column("prediction_id") for t in parts]
    code = matching.codes(pa.concat_arrays([_array(i).cast(pa.string()) for i in ids]))
    y = np.concatenate([_values(t) for t in parts])
    _, first = np.unique(code, return_index=True)
    winner = np.empty(len(first))
    winner[code[first]] = y[first]  # codes are dense: 0 .. distinct ids - 1
    batch = slice(len(code) - labels.num_rows, None)
    return int(np.count_nonzero(duplicate & differs(y[batch], winner[code[batch]])))


def _array(values):
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def bounded(labels: pa.Table) -> tuple[np.ndarray, int]:
    """``(first, conflicting)`` of a bounded shard's labels, in priority order: the mask
    of each id's first label (the winner, as ``matching.first_mask``) and the number of
    the others whose ``y_true`` differs from it, from one encoding of the ids."""
    code = matching.codes(labels.column("prediction_id"))
    _, first_row, inverse = np.unique(code, return_index=True, return_inverse=True)
    first = np.zeros(len(code), dtype=bool)
    first[first_row] = True
    y = _values(labels)
    return first, int(np.count_nonzero(differs(y, y[first_row][inverse.reshape(-1)])))
