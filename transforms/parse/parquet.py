"""Parquet (and any Arrow table): decoding one row group into normalized columns.

A row group arrives as a ``pyarrow.Table``; its typed columns are read as they are:

* prediction_id, model_version: string (or dictionary of strings) columns; any other
  type is ``bad_type``.
* the time (event_time / label_time): a string column holds RFC 3339 or epoch-ms text
  (see :mod:`.timestamps`); timestamps without a time zone are taken as UTC, dates are
  midnight UTC, integers are epoch milliseconds, floats are epoch milliseconds,
  floored; NaN, infinite or of another type: ``bad_timestamp``. Any value of a time
  type is read (none overflows; far ones are clamped) and then held to the accepted
  range like every format (:mod:`.validate`), its detail showing the value as stored.
* y and weight: any integer, floating or decimal column; any other type ``bad_number``.
* segments: a struct or map ``segments`` column, else top-level columns named like the
  keys; string, number and boolean values become text, others are ``bad_type``.
* features (the names the run reads): a struct or map ``features`` column (another type
  is ``bad_type``), else top-level columns named ``features.<name>``; integer, floating
  and decimal values are read as float64, others are ``bad_number``.

Offsets are row numbers (``base_offset`` is the row number of the row group's first
row); every row is one record, none is unparseable. Raw payloads are the rows as JSON
objects, time values as text (so that no year is out of Python's reach).
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from msewatch.schemas.time_range import in_range
from msewatch.transforms.parse.normalized import Decoded, Spec, json_text
from msewatch.transforms.parse.timestamps import CLAMP_MS, clamp_ms


def decode_parquet(table: pa.Table, base_offset: int, spec: Spec) -> Decoded:
    """Decodes a Parquet row group; raw payloads are rows as JSON objects."""
    n = table.num_rows
    cols = {name: table[name].combine_chunks() for name in table.column_names}
    norm: dict[str, pa.Array] = {}
    for role, name in spec.fields.items():
        col = cols.get(name)
        if col is None:
            continue
        kind = col.type
        if role in ("id", "mv") or (role == "time" and _is_text(kind)):
            if _is_text(kind):
                norm[role] = col.cast(pa.string())
            else:
                norm[role + "!"] = _shown(col)
        elif role == "time":
            norm["time_ms"], norm["time!"], norm["time_shown"] = _time_column(col)
        elif _is_number(kind):
            norm[role] = col.cast(pa.float64(), safe=False)
        else:
            norm[role] = pa.nulls(n, pa.float64())
            norm[role + "!"] = _shown(col)
        if role == "y":
            norm["y"] = norm["y"].fill_null(math.nan)
    if spec.is_prediction:
        norm.update(_parquet_segments(cols, spec.segment_keys, n))
        if spec.features:
            norm.update(_parquet_features(cols, spec.features))
    rows = np.arange(n, dtype=np.int64)
    return Decoded(
        rows + base_offset,
        rows,
        norm,
        np.zeros(0, np.int64),
        [],
        lambda idx: _payloads(table.take(pa.array(idx, pa.int64()))),
    )


def _payloads(rows: pa.Table) -> list[str]:
    """Rows as JSON objects; time values become text first (Python's datetime stops at
    the year 9999, a Parquet timestamp does not)."""
    texts = [_times_as_text(rows.column(i).combine_chunks()) for i in range(rows.num_columns)]
    return [json_text(r) for r in pa.table(texts, names=rows.column_names).to_pylist()]


def _times_as_text(col: pa.Array) -> pa.Array:
    """``col`` with every time value (also nested in structs, lists, maps) cast to text."""
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    target = _text_time_type(col.type)
    return col if target.equals(col.type) else col.cast(target)


def _text_time_type(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_temporal(kind):
        return pa.string()
    if pa.types.is_struct(kind):
        return pa.struct([f.with_type(_text_time_type(f.type)) for f in kind])
    if pa.types.is_map(kind):
        return pa.map_(_text_time_type(kind.key_type), _text_time_type(kind.item_type))
    if pa.types.is_large_list(kind):
        return pa.large_list(_text_time_type(kind.value_type))
    if pa.types.is_list(kind):
        return pa.list_(_text_time_type(kind.value_type))
    if pa.types.is_dictionary(kind):
        return _text_time_type(kind.value_type)
    return kind


def _is_text(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        return _is_text(kind.value_type)
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


def _shown(col: pa.Array) -> pa.Array:
    """The values of ``col`` as text (for details), null where ``col`` is null."""
    try:
        return col.cast(pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        values = _times_as_text(col).to_pylist()
        return pa.array([None if v is None else json_text(v) for v in values], pa.string())


_UNIT_MS = {"s": (1000, 1), "ms": (1, 1), "us": (1, 1000), "ns": (1, 1_000_000)}


def _time_column(col: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """A typed Parquet time column -> (epoch ms, not-a-time text, outside-range text).

    Timestamps without a time zone are taken as UTC; dates are midnight UTC; integers
    are epoch milliseconds; floats are epoch milliseconds, floored. Far values are
    clamped to +-``CLAMP_MS`` (no overflow). Returns the ms (null where the value is
    not a time: null, NaN, infinite, another type), the value as text where it is not
    a time, and the value as text where it is a time outside the accepted range.
    """
    kind, valid = col.type, col.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind) or pa.types.is_integer(kind):
        if pa.types.is_timestamp(kind):
            mul, div = _UNIT_MS[kind.unit]
        else:
            mul, div = (86_400_000, 1) if pa.types.is_date32(kind) else (1, 1)
        ints = col.cast(pa.int32()) if pa.types.is_date32(kind) else col
        raw = ints.cast(pa.int64(), safe=False).fill_null(0).to_numpy()
        limit = min(2**63 - 1, CLAMP_MS * div // mul)
        is_time = valid
        ms = np.clip(raw, -limit, limit) * mul // div  # floor: times before 1970 round down
    elif pa.types.is_floating(kind):
        f = col.cast(pa.float64()).fill_null(0).to_numpy()
        is_time = valid & np.isfinite(f)
        ms = clamp_ms(np.where(is_time, f, 0))
    else:
        ms, is_time = np.zeros(len(col), np.int64), np.zeros(len(col), bool)
    outside = is_time & ~in_range(ms)
    return (
        pa.array(ms, pa.int64(), mask=~is_time),
        _shown_where(col, valid & ~is_time),
        _shown_where(col, outside),
    )


def _shown_where(col: pa.Array, bad: np.ndarray) -> pa.Array:
    """``col`` as text where ``bad``, null elsewhere; renders only the bad rows."""
    out = pa.nulls(len(col), pa.string())
    rows = np.flatnonzero(bad)
    if len(rows) == 0:
        return out
    shown = _shown(col.take(pa.array(rows)))
    return pc.replace_with_mask(out, pa.array(bad), shown)


def _parquet_segments(cols: dict, keys: tuple[str, ...], n: int) -> dict[str, pa.Array]:
    """Segment values from a struct or map ``segments`` column, else top-level columns."""
    out: dict[str, pa.Array] = {}
    errors = []
    seg = cols.get("segments") if keys else None
    nested = seg is not None and (pa.types.is_struct(seg.type) or pa.types.is_map(seg.type))
    if seg is not None and not nested:
        errors.append(_shown(seg))
    for k in keys:
        values = []
        if nested and pa.types.is_map(seg.type):
            values.append(pc.map_lookup(seg, pa.scalar(k, seg.type.key_type), "first"))
        elif nested and seg.type.get_field_index(k) >= 0:
            values.append(pc.struct_field(seg, k))
        if k in cols:
            values.append(cols[k])
        texts = []
        for v in values:
            if _is_text(v.type) or _is_number(v.type) or pa.types.is_boolean(v.type):
                texts.append(v.cast(pa.string()))
            else:
                errors.append(_shown(v))
        if texts:
            out["seg." + k] = pc.coalesce(*texts) if len(texts) > 1 else texts[0]
    if errors:
        out["seg!"] = pc.coalesce(*errors) if len(errors) > 1 else errors[0]
    return out


def _parquet_features(cols: dict, names: tuple[str, ...]) -> dict[str, pa.Array]:
    """Feature values from a struct or map ``features`` column, else top-level
    ``features.<name>`` columns (module docstring); typed, so no row is looked at alone."""
    out: dict[str, pa.Array] = {}
    nested = cols.get("features")
    kind = None if nested is None else nested.type
    if kind is not None and not (
        pa.types.is_struct(kind) or (pa.types.is_map(kind) and _is_text(kind.key_type))
    ):
        out["feat!"] = _shown(nested)
        nested = None
    for name in names:
        value = cols.get("features." + name)
        if nested is not None and pa.types.is_map(nested.type):
            value = pc.map_lookup(nested, pa.scalar(name, nested.type.key_type), "first")
        elif nested is not None and nested.type.get_field_index(name) >= 0:
            value = pc.struct_field(nested, name)
        if value is None:
            continue
        if _is_number(value.type):
            out["feat." + name] = value.cast(pa.float64(), safe=False)
        elif not pa.types.is_null(value.type):
            out["feat." + name + "!"] = _shown(value)
    return out
