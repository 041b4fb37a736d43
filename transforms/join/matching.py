"""Who meets whom in a batch of the streaming join: masks and row numbers over tables.

The helpers of :func:`~msewatch.transforms.join.kernel.step`, Beam-free and vectorized
(Arrow compute and numpy over whole columns, no loop over records). They decide which
records are new and which labels and predictions meet; the kernel turns that into
outcomes, examples and the next state.

A prediction is identified by ``(prediction_id, model_version)`` (a shadow prediction
of another version is a different prediction), a label by ``prediction_id``.
Tombstones (``tombstones.py``) store the model version as a 64-bit hash, so pending
predictions are compared with them through the same hash.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from msewatch.transforms.join.tombstones import hash_versions

_INT64 = np.iinfo(np.int64)


def codes(values) -> np.ndarray:
    """Dense int64 codes of ``values`` (an Arrow array or a numpy array): equal values,
    equal codes."""
    if isinstance(values, np.ndarray):
        return np.unique(values, return_inverse=True)[1].astype(np.int64).reshape(-1)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = pc.dictionary_encode(values, null_encoding="encode").indices
    return encoded.to_numpy(zero_copy_only=False).astype(np.int64)


def pair_keys(ids: list, versions: list) -> list[np.ndarray]:
    """One int64 key per ``(id, version)`` row, equal across the given parts exactly
    when both are equal.

    Args:
        ids: one Arrow array of prediction ids per part.
        versions: one array of versions (strings or version hashes) per part.

    Returns:
        The keys of each part.
    """
    sizes = np.cumsum([len(i) for i in ids])[:-1]
    id_codes = codes(pa.concat_arrays([_chunk(i).cast(pa.string()) for i in ids]))
    if isinstance(versions[0], np.ndarray):
        version_codes = codes(np.concatenate(versions))
    else:
        version_codes = codes(pa.concat_arrays([_chunk(v) for v in versions]))
    n_versions = int(version_codes.max()) + 1 if len(version_codes) else 1
    return np.split(id_codes * n_versions + version_codes, sizes)


def _chunk(values):
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def first_mask(ids, versions=None) -> np.ndarray:
    """True at the first row of each id, or of each ``(id, version)`` pair when
    ``versions`` is given (rows must already be in priority order)."""
    n = len(ids)
    mask = np.zeros(n, dtype=bool)
    if n:
        keys = codes(ids)
        if versions is not None and keys.max() + 1 < n:  # an id repeats: tell versions apart
            keys = pair_keys([ids], [versions])[0]
        _, first = np.unique(keys, return_index=True)
        mask[first] = True
    return mask


def is_in(values, table: pa.Table) -> np.ndarray:
    """Whether each id of ``values`` is one of ``table``'s ``prediction_id`` values."""
    if table.num_rows == 0 or len(values) == 0:
        return np.zeros(len(values), dtype=bool)
    return pc.is_in(values, value_set=table.column("prediction_id")).to_numpy(zero_copy_only=False)


def lookup(values, value_set) -> tuple[np.ndarray, np.ndarray]:
    """``(found, row)``: per value, whether it is in ``value_set`` and the row of its
    first occurrence there (0 where not found)."""
    if len(values) == 0 or len(value_set) == 0:
        return np.zeros(len(values), dtype=bool), np.zeros(len(values), dtype=np.int64)
    row = pc.index_in(values, value_set=value_set)
    found = pc.is_valid(row).to_numpy(zero_copy_only=False)
    return found, row.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)


def known_predictions(preds: pa.Table, pending: pa.Table, tombs: pa.Table) -> np.ndarray:
    """Per row of ``preds``: whether its ``(id, model_version)`` is pending or has a
    prediction tombstone (then it is a duplicate)."""
    tombs = tombs.filter(tombs.column("is_prediction"))
    known = is_in(preds.column("prediction_id"), pending) | is_in(
        preds.column("prediction_id"), tombs
    )
    if not known.any():  # the usual batch: new ids only, nothing to hash
        return known
    candidates = preds.filter(known)
    batch, waiting, resolved = pair_keys(
        [t.column("prediction_id") for t in (candidates, pending, tombs)],
        [
            hash_versions(candidates.column("model_version")),
            hash_versions(pending.column("model_version")),
            tombs.column("version_hash").to_numpy(),
        ],
    )
    known[known] = np.isin(batch, np.concatenate([waiting, resolved]))
    return known


def label_tombstones(labels: pa.Table, tombs: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``labels``: ``(seen, met)``: a tombstone of its id says a label was
    seen (the label is a duplicate), or one of its predictions expired unlabeled (the
    label met a prediction it came too late for).

    Only the first row of each id gets its marks (the others are duplicates anyway).
    """
    n = labels.num_rows
    seen, met = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    found, row = lookup(tombs.column("prediction_id"), labels.column("prediction_id"))
    if found.any():
        row = row[found]
        seen[row[tombs.column("label_seen").to_numpy(zero_copy_only=False)[found]]] = True
        met[row[tombs.column("is_prediction").to_numpy(zero_copy_only=False)[found]]] = True
    return seen, met


def outliving(tombs: pa.Table, preds: pa.Table, labels: pa.Table):
    """Which records come at or after a tombstone of their id is forgotten.

    Returns:
        ``(preds_outliving, labels_outliving, tombs_outlived)``: per prediction (by
        event time) and label (by label time), whether its time is at or past the
        ``forget_at_ms`` of a tombstone of its id; per tombstone, whether a record of
        the batch comes at or after its ``forget_at_ms``.
    """
    n_p, n_l, n_t = preds.num_rows, labels.num_rows, tombs.num_rows
    if n_t == 0 or n_p + n_l == 0:
        return np.zeros(n_p, dtype=bool), np.zeros(n_l, dtype=bool), np.zeros(n_t, dtype=bool)
    ids = pa.concat_arrays(
        [_chunk(t.column("prediction_id")).cast(pa.string()) for t in (tombs, preds, labels)]
    )
    code = codes(ids)
    tomb_code, record_code = code[:n_t], code[n_t:]
    times = np.concatenate(
        [preds.column("event_time_ms").to_numpy(), labels.column("label_time_ms").to_numpy()]
    )
    forget = tombs.column("forget_at_ms").to_numpy()
    first_forget = np.full(code.max() + 1, _INT64.max)
    np.minimum.at(first_forget, tomb_code, forget)
    last_time = np.full(code.max() + 1, _INT64.min)
    np.maximum.at(last_time, record_code, times)
    outlives = times >= first_forget[record_code]
    return outlives[:n_p], outlives[n_p:], last_time[tomb_code] >= forget


class LabelMatch(NamedTuple):
    """Where the pending predictions meet the waiting labels (and the labels kept in
    the tombstones of joined predictions).

    Arrays over the pending predictions:

    Attributes:
        joined: joined with a label: a waiting one (lag at most ``label_ttl`` and,
            for a label that waited, made at most ``orphan_ttl`` after it) or, for a
            prediction of this batch, one that joined another version's prediction
            earlier (same two conditions; that label always waited).
        y_true: the label's ``y_true`` where joined.
        label_time_ms: the label's ``label_time`` where joined.
        label_joined: over the waiting labels: joined with at least one prediction.
        label_met: over the waiting labels: met a prediction of its id it came too
            late for (so far, this batch included).
    """

    joined: np.ndarray
    y_true: np.ndarray
    label_time_ms: np.ndarray
    label_joined: np.ndarray
    label_met: np.ndarray


def match_labels(
    pending: pa.Table,
    new_preds: int,
    waiting: pa.Table,
    earlier_labels: int,
    tombs: pa.Table,
    label_ttl_ms: int,
    orphan_ttl_ms: int,
) -> LabelMatch:
    """Matches every pending prediction with the label of its id, if there is one.

    Args:
        pending: pending predictions; the last ``new_preds`` rows arrived in this batch.
        waiting: waiting labels (LABELS + ``met_prediction``), at most one per id; the
            first ``earlier_labels`` rows arrived in earlier batches.
        tombs: the tombstones of the batch's ids.
        label_ttl_ms: the largest lag that joins.
        orphan_ttl_ms: how far (event time) after a label that waited a prediction
            may be made and still join it.
    """
    n = pending.num_rows
    pred_time = pending.column("event_time_ms").to_numpy()
    found, w_row = lookup(pending.column("prediction_id"), waiting.column("prediction_id"))
    label_time = waiting.column("label_time_ms").to_numpy()[w_row] if found.any() else pred_time
    lag = label_time - pred_time
    found &= ~((w_row < earlier_labels) & (-lag > orphan_ttl_ms))
    joined = found & (lag <= label_ttl_ms)
    y_true = np.full(n, np.nan)
    if joined.any():
        y_true[joined] = waiting.column("y_true").to_numpy()[w_row[joined]]
    n_waiting = waiting.num_rows
    label_joined = np.bincount(w_row[joined], minlength=n_waiting) > 0
    label_met = waiting.column("met_prediction").to_numpy(zero_copy_only=False) | (
        np.bincount(w_row[found & ~joined], minlength=n_waiting) > 0
    )

    # This batch's predictions whose id's label joined another version earlier.
    scoring = tombs.filter(pc.and_(tombs.column("is_prediction"), tombs.column("label_seen")))
    new = np.arange(n) >= n - new_preds
    in_tomb, t_row = lookup(pending.column("prediction_id"), scoring.column("prediction_id"))
    in_tomb &= new & ~joined
    if in_tomb.any():
        tomb_time = scoring.column("label_time_ms").to_numpy()[t_row]
        tomb_lag = tomb_time - pred_time
        late_joined = in_tomb & (tomb_lag <= label_ttl_ms) & (-tomb_lag <= orphan_ttl_ms)
        y_true[late_joined] = scoring.column("y_true").to_numpy()[t_row[late_joined]]
        label_time = np.where(late_joined, tomb_time, label_time)
        joined |= late_joined
    return LabelMatch(joined, y_true, label_time, label_joined, label_met)


def shard_of(ids: pa.Array, shards: int) -> np.ndarray:
    """Stable shard number of each prediction_id (same on every worker and run): the
    streaming join's shard keys and the bounded join's spill buckets."""
    values = ids.to_numpy(zero_copy_only=False)
    return (pd.util.hash_array(values, categorize=False) % np.uint64(shards)).astype(np.int64)


def split_by_shard(table: pa.Table, shards: int) -> Iterator[tuple[int, pa.Table]]:
    """``(shard, rows)`` for each shard that has rows of ``table``, by shard number;
    each part keeps the table's row order (arrival or ingest order)."""
    if table.num_rows == 0:
        return
    shard = shard_of(table.column("prediction_id"), shards)
    order = np.argsort(shard, kind="stable")
    table = table.take(pa.array(order))
    sorted_shard = shard[order]
    starts = np.flatnonzero(np.diff(sorted_shard, prepend=-1))
    ends = np.append(starts[1:], len(order))
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        yield int(sorted_shard[start]), table.slice(start, end - start)
