"""The record rules, shared by every format: normalized columns -> records + dead letters.

A format decoder (:mod:`.jsonl`, :mod:`.csv`, :mod:`.parquet`, :mod:`.pubsub_messages`)
hands over a :class:`~.normalized.Decoded` block; :func:`assemble` checks it, vectorized
with pyarrow.compute and numpy, and builds the valid records (``PREDICTIONS`` plus one
``seg.<key>`` column per segment key, or ``LABELS``) and the dead letters
(``DEAD_LETTER``), both in input order.

Rules. A rejected record gets the ``reason`` of the first check it fails:

1. ``unparseable``: not valid UTF-8, not one JSON object, wrong CSV field count, a
   Pub/Sub message that is empty or holds a newline (found by the decoders).
2. ``missing_field``: prediction_id, the time (event_time / label_time) or the y
   value (y_pred / y_true) is absent. A null y is NaN; other null fields are absent.
3. ``bad_type``: prediction_id is not a string.
4. ``empty_id``: prediction_id is empty or whitespace only; ``too_long``: it is longer
   than :data:`MAX_ID_BYTES` (1 KiB of UTF-8).
5. ``bad_timestamp``: the time is neither RFC 3339 with an offset nor epoch
   milliseconds (see :mod:`.timestamps`), or lies outside the accepted range
   1000-01-01T00:00:00Z <= t < 9000-01-01T00:00:00Z (``schemas/time_range.py``; also
   a Pub/Sub publish time standing in for label_time).
6. ``bad_number``: y is a string or boolean in JSON (or not a number in CSV), or
   weight is not a finite number. NaN, Infinity, -Infinity and null y are accepted:
   they are counted downstream as non-finite, never averaged.
7. ``negative_weight``: weight < 0.
8. ``bad_type``: model_version is not a string, or segments is not an object whose
   values are strings, numbers or booleans; ``too_long``: model_version or a segment
   value is longer than :data:`MAX_ID_BYTES`.
9. ``bad_type``: features (when the run reads features) is not an object (a map);
   ``bad_number``: the value of a configured feature is not a number (a string, a
   boolean, an object...). Names the run does not read are ignored, whatever their
   values; a null or absent value, and NaN or infinite ones, are kept as NaN (not
   sketched).

(A line longer than 1 MiB is ``unparseable`` before any of these:
``text_blocks.MAX_LINE_BYTES``.)

Times are UTC epoch milliseconds. model_version and segment values that are absent,
null or empty become ``"unknown"``; weight absent or null becomes 1.0.

Conservation: every record becomes exactly one valid row or one dead letter.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from msewatch.schemas.features import feature_column
from msewatch.schemas.records import (
    DEAD_LETTER,
    UNKNOWN,
    RecordType,
    make_position,
    segment_column,
)
from msewatch.schemas.time_range import RANGE_TEXT, in_range, iso_text
from msewatch.transforms.parse.normalized import Decoded, Spec
from msewatch.transforms.parse.timestamps import time_from_text

_STRING = pa.string()


class Reason:
    """Dead-letter reason codes (the ``reason`` column)."""

    UNPARSEABLE = "unparseable"
    MISSING_FIELD = "missing_field"
    BAD_TYPE = "bad_type"
    EMPTY_ID = "empty_id"
    BAD_TIMESTAMP = "bad_timestamp"
    BAD_NUMBER = "bad_number"
    NEGATIVE_WEIGHT = "negative_weight"
    TOO_LONG = "too_long"


MAX_ID_BYTES = 1024
"""prediction_id, model_version and each segment value: at most this many UTF-8 bytes."""


def _reject_too_long(checks: _Checks, arr: pa.Array, field: str) -> None:
    """Rejects the rows whose ``arr`` value has more than :data:`MAX_ID_BYTES` bytes; the
    detail gives the length, never the value."""
    size = pc.binary_length(arr)
    over = pc.greater(size, MAX_ID_BYTES).fill_null(False).to_numpy(zero_copy_only=False)
    if over.any():
        suffix = f" bytes, over {MAX_ID_BYTES}"
        shown = pc.binary_join_element_wise(size.cast(pa.string()), suffix, "")
        checks.reject(over, Reason.TOO_LONG, shown, f"{field} of ")


def assemble(
    decoded: Decoded,
    spec: Spec,
    source: str,
    file_index: int,
    default: pa.Array | None = None,
    message_ids: Sequence[str | None] | None = None,
    attrs: Sequence[dict | None] | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Validates a decoded block; builds the records and the dead letters (in input order).

    Args:
        decoded: the block, from a format decoder.
        spec: field names of its record type.
        source: file path or subscription, copied to dead letters.
        file_index: index of the file among the job's inputs, for ``position``.
        default: one time (UTC epoch ms) per record, used where the time is absent.
        message_ids: one Pub/Sub message id per record, for dead letters.
        attrs: one Pub/Sub attribute dict per record, for dead letters.

    Returns:
        (records, dead letters).
    """
    n = len(decoded.rows)
    default_rows = None if default is None else default.take(pa.array(decoded.rows, pa.int64()))
    checks = _Checks(decoded.norm, n)
    columns = _check_common(checks, spec, default_rows)
    if spec.is_prediction:
        columns.update(_check_prediction(checks, spec))
    ok = np.flatnonzero(~checks.taken)
    keep = pa.array(ok, pa.int64())
    columns = {name: arr.take(keep) for name, arr in columns.items()}
    position = make_position(file_index, decoded.offsets[decoded.rows[ok]])
    columns["position"] = pa.array(position, pa.int64())
    schema = RecordType.of(spec.record_type).batch_schema(spec.segment_keys, spec.features)
    records = pa.Table.from_pydict({f.name: columns[f.name] for f in schema}, schema=schema)
    return records, _dead_letters(decoded, checks.dead, spec, source, message_ids, attrs)


def _dead_letters(decoded: Decoded, dead, spec: Spec, source: str, message_ids, attrs):
    """The ``DEAD_LETTER`` table of the unparseable and the rejected records, in input order."""
    idx = np.concatenate([decoded.bad_rows] + [decoded.rows[i] for i, _, _ in dead])
    reasons = [Reason.UNPARSEABLE] * len(decoded.bad_rows)
    details = [pa.array(decoded.bad_details, pa.string())]
    for rows, reason, detail in dead:
        reasons += [reason] * len(rows)
        details.append(detail)
    order = np.argsort(idx, kind="stable")
    idx = idx[order]
    take = pa.array(order, pa.int64())
    m = len(idx)
    ids = [None] * m if message_ids is None else [message_ids[i] for i in idx.tolist()]
    attributes = [None] * m
    if attrs is not None:
        attributes = [
            None if attrs[i] is None else json.dumps(attrs[i], sort_keys=True) for i in idx.tolist()
        ]
    return pa.Table.from_pydict(
        {
            "source": pa.array([source] * m, pa.string()),
            "record_type": pa.array([spec.record_type] * m, pa.string()),
            "reason": pa.array(reasons, pa.string()).take(take),
            "detail": pa.concat_arrays(details).take(take),
            "raw_payload": pa.array(decoded.raw(idx), pa.string()),
            "ingest_position": pa.array(decoded.offsets[idx], pa.int64()),
            "message_id": pa.array(ids, pa.string()),
            "attributes": pa.array(attributes, pa.string()),
        },
        schema=DEAD_LETTER,
    )


class _Checks:
    """The normalized columns of a block and the rows rejected so far.

    Checks run in the order of the module docstring; a row keeps the reason of the
    first check it fails. ``dead`` holds groups (row indices, reason, detail array).
    """

    def __init__(self, norm: dict[str, pa.Array], n: int):
        self.norm = norm
        self.n = n
        self.taken = np.zeros(n, bool)
        self.dead: list[tuple[np.ndarray, str, pa.Array]] = []

    def col(self, name: str, kind: pa.DataType = _STRING) -> pa.Array:
        """Normalized column ``name``, all null when the decoder produced none."""
        return self.norm[name] if name in self.norm else pa.nulls(self.n, kind)

    def reject(self, mask, reason: str, shown: pa.Array, prefix: str, quote: bool = False):
        """Rejects the rows of ``mask`` not rejected yet; detail: prefix + shown value."""
        rows = np.flatnonzero(mask & ~self.taken)
        if rows.size:
            self.taken[rows] = True
            value = shown.take(pa.array(rows, pa.int64())).cast(pa.string())
            q = '"' if quote else ""
            detail = pc.binary_join_element_wise(prefix + q, value, q, "").fill_null(prefix)
            self.dead.append((rows, reason, detail))


def _has(arr: pa.Array) -> np.ndarray:
    return arr.is_valid().to_numpy(zero_copy_only=False)


def _check_common(checks: _Checks, spec: Spec, default_ms: pa.Array | None) -> dict:
    """Rules 2-6 for the fields of both record types; returns their output columns."""
    col = checks.col
    ident, ident_err = col("id"), col("id!")
    text, text_err = col("time"), col("time!")
    y, y_err = col("y", pa.float64()), col("y!")
    text_ms, text_ok = time_from_text(text)
    pre_ms = col("time_ms", pa.int64())
    has_pre = _has(pre_ms)
    time_ms = np.where(has_pre, pre_ms.fill_null(0).to_numpy(), text_ms)
    has_time = _has(text) | has_pre | _has(text_err)
    if default_ms is not None:
        use_default = ~has_time & _has(default_ms)
        time_ms = np.where(use_default, default_ms.fill_null(0).to_numpy(), time_ms)
        has_time |= use_default
    missing = {
        "prediction_id": ~(_has(ident) | _has(ident_err)),
        spec.time: ~has_time,
        spec.y: ~(_has(y) | _has(y_err)),
    }
    code = sum(m.astype(np.int64) << bit for bit, m in enumerate(missing.values()))
    texts = [", ".join(f for bit, f in enumerate(missing) if c >> bit & 1) for c in range(8)]
    joined = pa.array(np.array(texts, dtype=object)[code], pa.string())
    checks.reject(code > 0, Reason.MISSING_FIELD, joined, "missing: ")
    not_string = "prediction_id must be a string, got "
    checks.reject(_has(ident_err), Reason.BAD_TYPE, ident_err, not_string)
    blank_id = pc.equal(pc.utf8_trim_whitespace(ident), "").fill_null(False)
    blank_id = blank_id.to_numpy(zero_copy_only=False)
    checks.reject(blank_id, Reason.EMPTY_ID, ident, "empty prediction_id: ", True)
    _reject_too_long(checks, ident, "prediction_id")
    bad_time = f"{spec.time} must be RFC 3339 with an offset or epoch milliseconds, got "
    checks.reject(_has(text_err), Reason.BAD_TIMESTAMP, text_err, bad_time)
    checks.reject(_has(text) & ~has_pre & ~text_ok, Reason.BAD_TIMESTAMP, text, bad_time, True)
    outside = has_time & ~in_range(time_ms)
    if outside.any():
        shown = pc.coalesce(text, col("time_shown"), pa.array(iso_text(time_ms), pa.string()))
        in_text = f"{spec.time} must lie in the accepted range {RANGE_TEXT}, got "
        checks.reject(outside, Reason.BAD_TIMESTAMP, shown, in_text)
    checks.reject(_has(y_err), Reason.BAD_NUMBER, y_err, f"{spec.y} must be a number, got ")
    return {"prediction_id": ident, spec.time + "_ms": pa.array(time_ms, pa.int64()), spec.y: y}


def _check_prediction(checks: _Checks, spec: Spec) -> dict:
    """Rules 6-9 for the fields of predictions only; returns their output columns."""
    col = checks.col
    w, w_err = col("w", pa.float64()), col("w!")
    checks.reject(_has(w_err), Reason.BAD_NUMBER, w_err, "weight must be a number, got ")
    w_np = w.fill_null(1.0).to_numpy()
    checks.reject(~np.isfinite(w_np), Reason.BAD_NUMBER, w, "weight must be finite, got ")
    checks.reject(w_np < 0, Reason.NEGATIVE_WEIGHT, w, "weight must be >= 0, got ")
    mv_err = col("mv!")
    checks.reject(_has(mv_err), Reason.BAD_TYPE, mv_err, "model_version must be a string, got ")
    bad_seg = "segments must be an object of strings, numbers or booleans, got "
    checks.reject(_has(col("seg!")), Reason.BAD_TYPE, col("seg!"), bad_seg)
    _reject_too_long(checks, col("mv"), "model_version")
    for k in spec.segment_keys:
        _reject_too_long(checks, col("seg." + k), f"segments.{k}")
    out = {"weight": w.fill_null(1.0), "model_version": _or_unknown(col("mv"))}
    for k in spec.segment_keys:
        out[segment_column(k)] = _or_unknown(col("seg." + k))
    out.update(_check_features(checks, spec))
    return out


def _check_features(checks: _Checks, spec: Spec) -> dict:
    """Rule 9; returns the ``feat.<name>`` columns (null -> NaN)."""
    if not spec.features:
        return {}
    col = checks.col
    bad_map = "features must be an object of numbers, got "
    checks.reject(_has(col("feat!")), Reason.BAD_TYPE, col("feat!"), bad_map)
    out = {}
    for name in spec.features:
        shown = col("feat." + name + "!")
        checks.reject(
            _has(shown), Reason.BAD_NUMBER, shown, f"features.{name} must be a number, got "
        )
        out[feature_column(name)] = col("feat." + name, pa.float64()).fill_null(np.nan)
    return out


def _or_unknown(arr: pa.Array) -> pa.Array:
    """Null or empty strings -> ``"unknown"``."""
    return pc.if_else(pc.equal(arr, "").fill_null(True), UNKNOWN, arr)
