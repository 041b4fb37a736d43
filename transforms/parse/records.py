"""Vectorized parsing and validation of prediction and label records.

A block of JSON Lines or CSV text, or a Parquet row group, becomes two Arrow tables:
the valid records (``PREDICTIONS`` plus one ``seg.<key>`` column per segment key, or
``LABELS``) and the rejected ones (``DEAD_LETTER``). Blocks are parsed whole by pyarrow
and checked with pyarrow.compute and numpy; Python reads single lines only inside the
pieces of a block that pyarrow rejects (see ``_textblocks``).

Rules (README, "Input records"). A rejected record gets the ``reason`` of the first check it fails:

1. ``unparseable``: not valid UTF-8, not one JSON object, wrong CSV field count, a
   Pub/Sub message that is empty or holds a newline.
2. ``missing_field``: prediction_id, the time (event_time / label_time) or the y
   value (y_pred / y_true) is absent. A null y is NaN; other null fields are absent.
3. ``bad_type``: prediction_id is not a string.
4. ``empty_id``: prediction_id is empty or whitespace only.
5. ``bad_timestamp``: the time is neither RFC 3339 with an offset (``Z`` or ``±hh:mm``,
   ``T``/``t``/space separator, any number of fractional digits, truncated to the
   millisecond) nor epoch milliseconds (a number or numeric string; a fraction is
   floored), or lies outside the years 0001-9999. A leap second (``:60``) is rejected.
6. ``bad_number``: y is a string or boolean in JSON (or not a number in CSV), or
   weight is not a finite number. NaN, Infinity, -Infinity and null y are accepted:
   they are counted downstream as non-finite, never averaged.
7. ``negative_weight``: weight < 0.
8. ``bad_type``: model_version is not a string, or segments is not an object whose
   values are strings, numbers or booleans.

Times are UTC epoch milliseconds. model_version and segment values that are absent,
null or empty become ``"unknown"``; weight absent or null becomes 1.0. In JSON the
segment attributes come from the ``segments`` object (numbers and booleans become
their JSON text); in CSV from any other column; in Parquet from a struct or map
``segments`` column, else from top-level columns named like the keys.

Conservation: every record becomes exactly one valid row or one dead letter. A blank
(whitespace-only) line of a file is not a record; every Pub/Sub message is one.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from msewatch.schemas.records import (
    DEAD_LETTER,
    LABELS,
    PREDICTIONS,
    UNKNOWN,
    make_position,
    segment_column,
    with_segments,
)
from msewatch.transforms.parse.columns import Decoded, Spec, decode_parquet, time_from_text
from msewatch.transforms.parse.jsonl import decode_jsonl
from msewatch.transforms.parse.text import decode_csv

FORMATS = ("jsonl", "csv", "parquet")
RECORD_TYPES = ("prediction", "label")
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


def parse_predictions(
    block: bytes | pa.Table,
    fmt: str,
    source: str,
    file_index: int,
    base_offset: int,
    segment_keys: tuple[str, ...] = (),
    *,
    csv_header: bytes | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Parses and validates one block of prediction records.

    Args:
        block: whole lines of a JSON Lines or CSV file (bytes), or a Parquet row group.
        fmt: ``"jsonl"``, ``"csv"`` or ``"parquet"``.
        source: file path, copied to dead letters.
        file_index: index of the file among the job's inputs, for ``position``.
        base_offset: byte offset of ``block`` in its file, or the row number of the
            row group's first row for Parquet.
        segment_keys: segment attributes to keep, as ``seg.<key>`` columns.
        csv_header: the CSV file's header line (required for ``"csv"``).

    Returns:
        (predictions with schema ``with_segments(PREDICTIONS, segment_keys)``,
        dead letters with schema ``DEAD_LETTER``).

    Raises:
        ValueError: unknown ``fmt``, or a CSV block without ``csv_header``.
    """
    spec = Spec("prediction", "event_time", "y_pred", tuple(segment_keys))
    decoded = _decode(block, fmt, spec, base_offset, csv_header)
    return _assemble(decoded, spec, source, file_index, None, None, None)


def parse_labels(
    block: bytes | pa.Table,
    fmt: str,
    source: str,
    file_index: int,
    base_offset: int,
    default_label_time_ms: Sequence[int | None] | np.ndarray | pa.Array | None = None,
    *,
    csv_header: bytes | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Parses and validates one block of label records.

    Args:
        block, fmt, source, file_index, base_offset, csv_header: as for
            :func:`parse_predictions`.
        default_label_time_ms: one UTC epoch-ms value per record (blank lines are not
            records), used where label_time is absent (Pub/Sub publish time); None
            makes label_time required.

    Returns:
        (labels with schema ``LABELS``, dead letters with schema ``DEAD_LETTER``).

    Raises:
        ValueError: unknown ``fmt``, a CSV block without ``csv_header``, or
            ``default_label_time_ms`` not one value per record.
    """
    spec = Spec("label", "label_time", "y_true", ())
    decoded = _decode(block, fmt, spec, base_offset, csv_header)
    default = None
    if default_label_time_ms is not None:
        default = pa.array(default_label_time_ms, pa.int64())
        if len(default) != len(decoded.offsets):
            raise ValueError(
                f"default_label_time_ms has {len(default)} values for "
                f"{len(decoded.offsets)} records"
            )
    return _assemble(decoded, spec, source, file_index, default, None, None)


def parse_json_messages(
    payloads: Sequence[bytes],
    record_type: str,
    source: str,
    base_sequence: int,
    segment_keys: tuple[str, ...] = (),
    message_ids: Sequence[str | None] | None = None,
    attributes: Sequence[dict | None] | None = None,
    publish_time_ms: Sequence[int | None] | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Parses Pub/Sub messages, one JSON record each.

    Message ``i`` has position and ingest_position ``base_sequence + i`` (its arrival
    sequence); an empty message or one holding a newline is ``unparseable``. Dead
    letters carry the message id and the attributes as a JSON object.

    Args:
        payloads: message bodies.
        record_type: ``"prediction"`` or ``"label"``.
        source: subscription name, copied to dead letters.
        base_sequence: arrival sequence of ``payloads[0]``.
        segment_keys: segment attributes to keep (predictions).
        message_ids: one id per message, or None.
        attributes: one attribute dict per message, or None.
        publish_time_ms: publish times (UTC epoch ms), the default label_time.

    Returns:
        (records, dead letters), as :func:`parse_predictions` or :func:`parse_labels`.
    """
    _check_choice("record_type", record_type, RECORD_TYPES)
    n = len(payloads)
    per_message = (
        ("message_ids", message_ids),
        ("attributes", attributes),
        ("publish_time_ms", publish_time_ms),
    )
    for name, values in per_message:
        if values is not None and len(values) != n:
            raise ValueError(f"{name} has {len(values)} values for {n} payloads")
    joined = b"\n".join(payloads)
    sizes = np.fromiter(map(len, payloads), np.int64, n)
    starts = np.cumsum(sizes + 1) - (sizes + 1)  # each payload plus its separator
    arr = np.frombuffer(joined, np.uint8)
    newlines = np.concatenate(([0], np.cumsum(arr == 10)))
    solid = np.concatenate(([0], np.cumsum(~np.isin(arr, np.array([9, 10, 13, 32], np.uint8)))))
    split = newlines[starts + sizes] - newlines[starts] > 0
    blank = solid[starts + sizes] - solid[starts] == 0
    good = np.flatnonzero(~split & ~blank)
    block = joined if good.size == n else b"\n".join(itertools.compress(payloads, ~split & ~blank))
    if record_type == "prediction":
        spec = Spec("prediction", "event_time", "y_pred", tuple(segment_keys))
    else:
        spec = Spec("label", "label_time", "y_true", ())
    part = decode_jsonl(block, 0, spec)
    bad = np.flatnonzero(split | blank)
    decoded = Decoded(
        offsets=np.arange(n, dtype=np.int64) + base_sequence,
        rows=good[part.rows],
        norm=part.norm,
        bad_rows=np.concatenate((bad, good[part.bad_rows])),
        bad_details=["message contains a newline" if split[i] else "empty message" for i in bad]
        + part.bad_details,
        raw=lambda idx: [payloads[i].decode("utf-8", errors="replace") for i in idx.tolist()],
    )
    default = None
    if record_type == "label" and publish_time_ms is not None:
        default = pa.array(publish_time_ms, pa.int64())
    return _assemble(decoded, spec, source, 0, default, message_ids, attributes)


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _decode(block, fmt: str, spec: Spec, base_offset: int, csv_header) -> Decoded:
    _check_choice("fmt", fmt, FORMATS)
    if fmt == "parquet":
        if not isinstance(block, pa.Table):
            raise ValueError("a parquet block must be a pyarrow.Table (one row group)")
        return decode_parquet(block, base_offset, spec)
    block = bytes(block)
    if fmt == "jsonl":
        return decode_jsonl(block, base_offset, spec)
    if csv_header is None:
        raise ValueError("a csv block needs csv_header, the file's header line")
    return decode_csv(block, base_offset, spec, parse_csv_header(csv_header))


def parse_csv_header(line: bytes) -> tuple[str, ...]:
    """Column names of a CSV header line (a UTF-8 byte order mark is dropped)."""
    text = line.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")
    return tuple(next(csv.reader(io.StringIO(text)), []))


def _assemble(
    decoded: Decoded,
    spec: Spec,
    source: str,
    file_index: int,
    default: pa.Array | None,
    message_ids: Sequence[str | None] | None,
    attrs: Sequence[dict | None] | None,
) -> tuple[pa.Table, pa.Table]:
    """Validates a decoded block; builds the records and the dead letters (in input order)."""
    n = len(decoded.rows)
    default_rows = None if default is None else default.take(pa.array(decoded.rows, pa.int64()))
    ok, columns, dead = _validate(decoded.norm, n, spec, default_rows)
    position = make_position(file_index, decoded.offsets[decoded.rows[ok]])
    columns["position"] = pa.array(position, pa.int64())
    schema = with_segments(PREDICTIONS, spec.segment_keys) if spec.is_prediction else LABELS
    records = pa.Table.from_pydict({f.name: columns[f.name] for f in schema}, schema=schema)

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
    dead_table = pa.Table.from_pydict(
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
    return records, dead_table


def _validate(norm: dict, n: int, spec: Spec, default_ms: pa.Array | None):
    """Checks normalized columns in the order of the module docstring.

    Returns:
        (indices of the valid rows, output columns of the valid rows, dead groups), a
        dead group being (row indices, reason, detail array).
    """

    def col(name: str, kind: pa.DataType = _STRING) -> pa.Array:
        return norm[name] if name in norm else pa.nulls(n, kind)

    def has(arr: pa.Array) -> np.ndarray:
        return arr.is_valid().to_numpy(zero_copy_only=False)

    taken = np.zeros(n, bool)
    dead: list[tuple[np.ndarray, str, pa.Array]] = []

    def check(mask: np.ndarray, reason: str, shown: pa.Array, prefix: str, quote: bool = False):
        """Rejects the rows of ``mask`` not rejected yet; detail: prefix + shown value."""
        rows = np.flatnonzero(mask & ~taken)
        if rows.size:
            taken[rows] = True
            value = shown.take(pa.array(rows, pa.int64())).cast(pa.string())
            q = '"' if quote else ""
            detail = pc.binary_join_element_wise(prefix + q, value, q, "").fill_null(prefix)
            dead.append((rows, reason, detail))

    ident, ident_err = col("id"), col("id!")
    text, text_err = col("time"), col("time!")
    y, y_err = col("y", pa.float64()), col("y!")
    text_ms, text_ok = time_from_text(text)
    pre_ms = col("time_ms", pa.int64())
    has_pre = has(pre_ms)
    time_ms = np.where(has_pre, pre_ms.fill_null(0).to_numpy(), text_ms)
    has_time = has(text) | has_pre | has(text_err)
    if default_ms is not None:
        use_default = ~has_time & has(default_ms)
        time_ms = np.where(use_default, default_ms.fill_null(0).to_numpy(), time_ms)
        has_time |= use_default
    missing = {
        "prediction_id": ~(has(ident) | has(ident_err)),
        spec.time: ~has_time,
        spec.y: ~(has(y) | has(y_err)),
    }
    code = sum(m.astype(np.int64) << bit for bit, m in enumerate(missing.values()))
    texts = [", ".join(f for bit, f in enumerate(missing) if c >> bit & 1) for c in range(8)]
    joined = pa.array(np.array(texts, dtype=object)[code], pa.string())
    check(code > 0, Reason.MISSING_FIELD, joined, "missing: ")
    check(has(ident_err), Reason.BAD_TYPE, ident_err, "prediction_id must be a string, got ")
    blank_id = pc.equal(pc.utf8_trim_whitespace(ident), "").fill_null(False)
    check(
        blank_id.to_numpy(zero_copy_only=False),
        Reason.EMPTY_ID,
        ident,
        "empty prediction_id: ",
        True,
    )
    bad_time = f"{spec.time} must be RFC 3339 with an offset or epoch milliseconds, got "
    check(has(text_err), Reason.BAD_TIMESTAMP, text_err, bad_time)
    check(has(text) & ~has_pre & ~text_ok, Reason.BAD_TIMESTAMP, text, bad_time, True)
    check(has(y_err), Reason.BAD_NUMBER, y_err, f"{spec.y} must be a number, got ")
    out = {"prediction_id": ident, spec.time + "_ms": pa.array(time_ms, pa.int64()), spec.y: y}
    if spec.is_prediction:
        w, w_err = col("w", pa.float64()), col("w!")
        check(has(w_err), Reason.BAD_NUMBER, w_err, "weight must be a number, got ")
        w_np = w.fill_null(1.0).to_numpy()
        check(~np.isfinite(w_np), Reason.BAD_NUMBER, w, "weight must be finite, got ")
        check(w_np < 0, Reason.NEGATIVE_WEIGHT, w, "weight must be >= 0, got ")
        check(has(col("mv!")), Reason.BAD_TYPE, col("mv!"), "model_version must be a string, got ")
        bad_seg = "segments must be an object of strings, numbers or booleans, got "
        check(has(col("seg!")), Reason.BAD_TYPE, col("seg!"), bad_seg)
        out["weight"] = w.fill_null(1.0)
        out["model_version"] = _or_unknown(col("mv"))
        for k in spec.segment_keys:
            out[segment_column(k)] = _or_unknown(col("seg." + k))
    ok = np.flatnonzero(~taken)
    keep = pa.array(ok, pa.int64())
    return ok, {name: arr.take(keep) for name, arr in out.items()}, dead


def _or_unknown(arr: pa.Array) -> pa.Array:
    """Null or empty strings -> ``"unknown"``."""
    return pc.if_else(pc.equal(arr, "").fill_null(True), UNKNOWN, arr)


__all__ = [
    "FORMATS",
    "RECORD_TYPES",
    "Reason",
    "parse_csv_header",
    "parse_json_messages",
    "parse_labels",
    "parse_predictions",
]
