"""Normalized columns (private to :mod:`msewatch.transforms.parse.records`).

Every format decoder turns one block into a :class:`Decoded`: the records' ingest
offsets, the records it could not parse, and *normalized columns* for the others.
Normalized columns use role names, the same for predictions and labels: ``id``,
``time`` (text), ``time_ms`` (already decoded), ``y``, ``mv`` (model_version), ``w``
(weight), ``seg.<key>``. A role name followed by ``!`` holds the offending value,
rendered as text, of a record whose field has a type that cannot be right (a JSON
string y, a numeric prediction_id...). A null ``y`` means absent: a null y value is
already NaN. Validation is left to ``parse``.

This module also decodes text values (RFC 3339 or epoch-millisecond times, CSV
numbers) and Parquet row groups, all with pyarrow.compute and numpy. Times are UTC.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class Spec(NamedTuple):
    """Field names of one record type."""

    record_type: str
    time: str
    y: str
    segment_keys: tuple[str, ...]

    @property
    def is_prediction(self) -> bool:
        return self.record_type == "prediction"

    @property
    def fields(self) -> dict[str, str]:
        """Role name -> source field name."""
        roles = {"id": "prediction_id", "time": self.time, "y": self.y}
        if self.is_prediction:
            roles.update(mv="model_version", w="weight")
        return roles

    def norm_schema(self) -> pa.Schema:
        """Normalized columns, as produced by the JSON decoder."""
        types = {"id": pa.string(), "time": pa.string(), "y": pa.float64()}
        if self.is_prediction:
            types.update(mv=pa.string(), w=pa.float64())
        cols = []
        for role, typ in types.items():
            cols += [(role, typ), (role + "!", pa.string())]
        if self.is_prediction:
            cols.append(("seg!", pa.string()))
            cols += [("seg." + k, pa.string()) for k in self.segment_keys]
        return pa.schema(cols)


class Decoded(NamedTuple):
    """One decoded block; record indices count records (not lines) from 0."""

    offsets: np.ndarray  # int64 per record: byte offset of its line, or row number
    rows: np.ndarray  # int64 record index of each row of `norm`
    norm: dict[str, pa.Array]
    bad_rows: np.ndarray  # int64 record indices that could not be parsed
    bad_details: list[str]
    raw: Callable[[np.ndarray], list[str]]  # record indices -> raw payload text


def matches(arr: pa.Array, pattern: str, regex: bool = True) -> np.ndarray:
    fn = pc.match_substring_regex if regex else pc.match_substring
    return fn(arr, pattern).fill_null(False).to_numpy(zero_copy_only=False)


def json_text(row: dict) -> str:
    """A row (dict) as a JSON object, for ``raw_payload``."""
    return json.dumps(row, ensure_ascii=False, default=str)


NUMBER_TEXT = r"^[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:nan|inf|infinity))$"
_EPOCH_INT = r"^-?[0-9]{1,15}$"
_EPOCH_NUMBER = r"^-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_RFC3339 = (
    r"^(?P<Y>[0-9]{4})-(?P<M>[0-9]{2})-(?P<D>[0-9]{2})[Tt ]"
    r"(?P<h>[0-9]{2}):(?P<m>[0-9]{2}):(?P<s>[0-9]{2})(?:\.(?P<f>[0-9]+))?"
    r"(?:[Zz]|(?P<sign>[+-])(?P<oh>[0-9]{2}):(?P<om>[0-9]{2}))$"
)
MIN_MS = -62135596800000  # 0001-01-01T00:00:00Z
MAX_MS = 253402300799999  # 9999-12-31T23:59:59.999Z
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def number_from_text(text: pa.Array, empty: float | None) -> tuple[pa.Array, pa.Array]:
    """CSV number cells -> (float64 values, offending text or null).

    ``""`` becomes ``empty``; ``nan``, ``inf``, ``infinity`` (any case, signed) are
    accepted. Invalid cells have a null value and their quoted text in the second array.
    """
    ok = matches(text, NUMBER_TEXT)
    blank = pc.equal(text, "").fill_null(False).to_numpy(zero_copy_only=False)
    values = pc.if_else(pa.array(ok), text, "0").cast(pa.float64())
    values = pc.if_else(pa.array(blank), pa.scalar(empty, pa.float64()), values)
    bad = pa.array(~ok & ~blank & text.is_valid().to_numpy(zero_copy_only=False))
    values = pc.if_else(bad, pa.scalar(None, pa.float64()), values)
    shown = pc.if_else(
        bad, pc.binary_join_element_wise('"', text, '"', ""), pa.scalar(None, pa.string())
    )
    return values, shown


def time_from_text(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """RFC 3339 or epoch-millisecond strings -> (UTC epoch ms, ok) as numpy arrays."""
    n = len(text)
    ms, ok = np.zeros(n, np.int64), np.zeros(n, bool)
    if n == text.null_count:
        return ms, ok
    is_int = matches(text, _EPOCH_INT)
    if is_int.any():
        ms = np.where(is_int, pc.if_else(pa.array(is_int), text, "0").cast(pa.int64()), ms)
        ok |= is_int & (ms >= MIN_MS) & (ms <= MAX_MS)
    is_num = matches(text, _EPOCH_NUMBER) & ~is_int
    if is_num.any():
        f = pc.if_else(pa.array(is_num), text, "0").cast(pa.float64()).to_numpy()
        good = is_num & np.isfinite(f) & (f >= MIN_MS) & (f < MAX_MS + 1)
        ms = np.where(good, np.floor(np.where(good, f, 0)).astype(np.int64), ms)
        ok |= good
    parts = pc.extract_regex(text, _RFC3339)
    is_rfc = parts.is_valid().to_numpy(zero_copy_only=False)
    if is_rfc.any():
        rfc_ms, rfc_ok = _rfc3339_ms(parts)
        ok |= is_rfc & rfc_ok
        ms = np.where(is_rfc, rfc_ms, ms)
    return ms, ok


def _rfc3339_ms(parts: pa.StructArray) -> tuple[np.ndarray, np.ndarray]:
    def num(name: str, width: int = 0) -> np.ndarray:
        s = pc.struct_field(parts, name).fill_null("")
        if width:
            s = pc.utf8_rpad(pc.utf8_slice_codeunits(s, 0, width), width=width, padding="0")
        s = pc.if_else(pc.equal(s, ""), "0", s)
        return s.cast(pa.int64()).to_numpy()

    year, month, day = num("Y"), num("M"), num("D")
    hour, minute, second, milli = num("h"), num("m"), num("s"), num("f", 3)
    off_h, off_m = num("oh"), num("om")
    sign = np.where(pc.equal(pc.struct_field(parts, "sign"), "-").fill_null(False), -1, 1)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = (month >= 1) & (month <= 12)
    dim = _DAYS_IN_MONTH[np.clip(month, 1, 12) - 1] + (leap & (month == 2))
    ok = (year >= 1) & month_ok & (day >= 1) & (day <= dim) & (hour <= 23) & (minute <= 59)
    ok &= (second <= 59) & (off_h <= 23) & (off_m <= 59)
    y = year - (month <= 2)  # days from civil (H. Hinnant), proleptic Gregorian
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    ms = days * 86_400_000 + hour * 3_600_000 + minute * 60_000 + second * 1000 + milli
    return ms - sign * (off_h * 3_600_000 + off_m * 60_000), ok


# --- Parquet ---------------------------------------------------------------------------


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
            norm["time_ms"], norm["time!"] = _time_column(col)
        elif _is_number(kind):
            norm[role] = col.cast(pa.float64(), safe=False)
        else:
            norm[role] = pa.nulls(n, pa.float64())
            norm[role + "!"] = _shown(col)
        if role == "y":
            norm["y"] = norm["y"].fill_null(math.nan)
    if spec.is_prediction:
        norm.update(_parquet_segments(cols, spec.segment_keys, n))
    rows = np.arange(n, dtype=np.int64)
    return Decoded(
        rows + base_offset,
        rows,
        norm,
        np.zeros(0, np.int64),
        [],
        lambda idx: [json_text(r) for r in table.take(pa.array(idx, pa.int64())).to_pylist()],
    )


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
        return pa.array([None if v is None else json_text(v) for v in col.to_pylist()])


_UNIT_MS = {"s": (1000, 1), "ms": (1, 1), "us": (1, 1000), "ns": (1, 1_000_000)}
_INT64 = (-(2**63), 2**63 - 1)


def _time_column(col: pa.Array) -> tuple[pa.Array, pa.Array]:
    """A typed Parquet time column -> (epoch ms or null, offending value as text or null).

    Timestamps without a time zone are taken as UTC; dates are midnight UTC; integers
    are epoch milliseconds; floats are epoch milliseconds, floored.
    """
    kind, valid = col.type, col.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind) or pa.types.is_integer(kind):
        if pa.types.is_timestamp(kind):
            mul, div = _UNIT_MS[kind.unit]
        else:
            mul, div = (86_400_000, 1) if pa.types.is_date32(kind) else (1, 1)
        ints = col.cast(pa.int32()) if pa.types.is_date32(kind) else col
        raw = ints.cast(pa.int64(), safe=False).fill_null(0).to_numpy()
        low = max(_INT64[0], -(-MIN_MS * div // mul))  # ceil(MIN_MS * div / mul)
        high = min(_INT64[1], -(-(MAX_MS + 1) * div // mul))
        ok = valid & (raw >= low) & (raw < high)
        ms = np.where(ok, raw, 0) * mul // div  # floor: times before 1970 round down
    elif pa.types.is_floating(kind):
        f = col.cast(pa.float64()).fill_null(0).to_numpy()
        ok = valid & np.isfinite(f) & (f >= MIN_MS) & (f < MAX_MS + 1)
        ms = np.floor(np.where(ok, f, 0)).astype(np.int64)
    else:
        ms, ok = np.zeros(len(col), np.int64), np.zeros(len(col), bool)
    return pa.array(ms, pa.int64(), mask=~ok), _shown_where(col, valid & ~ok)


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
