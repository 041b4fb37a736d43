"""JSON Lines: one JSON object per line, decoded into normalized columns.

pyarrow parses blocks (see :mod:`.text_blocks`); the per-line parser is Python's ``json``
module, the reference for what a line means. pyarrow's rows are kept only where both
agree by construction; lines where they could differ (``Inf`` and ``-NaN`` tokens,
which only pyarrow accepts; a null y, which pyarrow cannot tell from an absent one)
are re-parsed by Python. Before either parser runs, numbers and booleans given to
the time field or to a segment key are quoted (``"event_time": 17e11`` becomes
``"event_time": "17e11"``) so that one file may mix RFC 3339 strings and epoch
milliseconds, and pyarrow reads segment values of any scalar type as text.
"""

from __future__ import annotations

import functools
import io
import json
import math
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pjson

from msewatch.transforms.parse.normalized import Decoded, Spec, matches
from msewatch.transforms.parse.text_blocks import (
    Unparsed,
    check_utf8,
    decode_text,
    line_array,
    text_of,
    unpack,
)

_JSON_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
_ONLY_ARROW = r"-NaN|Inf(?:$|[^i])"  # tokens pyarrow reads and Python's json rejects


class _Num:
    """A JSON number or NaN/Infinity token, kept as written."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


def render(value) -> str:
    """A parsed JSON value as JSON text, numbers as written."""
    if isinstance(value, _Num):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(render(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


@functools.lru_cache(maxsize=64)
def json_decoders(spec: Spec):
    """Returns (prepare, fast, leaf) for ``decode_text`` of JSON Lines.

    ``prepare`` quotes numbers and booleans given to the time field and to segment
    keys, at any depth, so that pyarrow reads them as strings (their JSON text) and a
    file may mix RFC 3339 strings with epoch milliseconds. Both parsers read the
    quoted lines, so both see the same values.
    """
    fields = spec.fields
    keys = [_key(spec.time)] + [_key(k) for k in spec.segment_keys if k not in fields.values()]
    names = "|".join(re.escape(k.decode()) for k in keys)
    pattern = f"((?:{names})[ \t]*:[ \t]*)({_JSON_NUMBER}|true|false)"
    explicit = [(f, pa.string()) for f in ("prediction_id", spec.time)] + [(spec.y, pa.float64())]
    if spec.is_prediction:
        explicit += [("model_version", pa.string()), ("weight", pa.float64())]
        if spec.segment_keys:
            explicit.append(("segments", pa.struct([(k, pa.string()) for k in spec.segment_keys])))
        if spec.features:
            explicit.append(("features", pa.struct([(f, pa.float64()) for f in spec.features])))
    options = pjson.ParseOptions(
        explicit_schema=pa.schema(explicit), unexpected_field_behavior="ignore"
    )
    y_maybe = re.escape(_key(spec.y).decode()) + r"|\\u"  # the y key, maybe escaped

    def prepare(buf: bytes, starts: np.ndarray) -> tuple[bytes, np.ndarray]:
        if not any(k in buf for k in keys):
            return buf, starts
        lines = pc.replace_substring_regex(line_array(buf, starts), pattern, r'\1"\2"')
        return unpack(lines)

    def fast(piece: bytes, starts: np.ndarray):
        check_utf8(piece, starts)
        _check_objects(piece, starts)
        read = pjson.ReadOptions(use_threads=False, block_size=max(len(piece) + 1, 1 << 16))
        try:
            table = pjson.read_json(io.BytesIO(piece), read_options=read, parse_options=options)
        except pa.ArrowInvalid as err:
            raise Unparsed.from_arrow(err, r"in row (\d+)", 0) from err
        if table.num_rows != len(starts):
            raise Unparsed("not one object per line")
        norm = {role: table[name].combine_chunks() for role, name in fields.items()}
        if spec.is_prediction:
            for k in spec.segment_keys:
                norm["seg." + k] = pc.struct_field(table["segments"].combine_chunks(), k)
            for f in spec.features:
                norm["feat." + f] = pc.struct_field(table["features"].combine_chunks(), f)
        redo = np.zeros(len(starts), bool)
        lines = None
        if b"Inf" in piece or b"-NaN" in piece:
            lines = line_array(piece, starts)
            redo |= matches(lines, _ONLY_ARROW)
        if norm["y"].null_count:
            lines = line_array(piece, starts) if lines is None else lines
            redo |= norm["y"].is_null().to_numpy(zero_copy_only=False) & matches(lines, y_maybe)
        return pa.table(norm), np.flatnonzero(redo), {}

    def leaf(line: bytes) -> dict | str:
        return _json_row(line, spec)

    return prepare, fast, leaf


def _check_objects(piece: bytes, starts: np.ndarray) -> None:
    """Raises on the first line that does not start with ``{``.

    Such lines go to Python's json: pyarrow reads a top-level ``null`` as an empty row
    (and crashes when it comes first), where it is not a record.
    """
    other = np.frombuffer(piece, np.uint8)[starts] != ord("{")
    for row in np.flatnonzero(other).tolist():
        end = starts[row + 1] if row + 1 < len(starts) else len(piece)
        if not piece[starts[row] : end].lstrip(b" \t\r").startswith(b"{"):
            raise Unparsed("not a JSON object", row)


def _key(name: str) -> bytes:
    """The JSON text of an object key, with its quotes."""
    return json.dumps(name, ensure_ascii=False).encode()


_ABSENT = object()


def _json_row(line: bytes, spec: Spec) -> dict | str:
    """Reference meaning of one JSON line: a normalized row, or why it is unparseable."""
    try:
        text = line.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError:
        return "not valid UTF-8"
    try:
        obj = json.loads(text, parse_int=_Num, parse_float=_Num, parse_constant=_Num)
    except (ValueError, RecursionError) as err:
        return f"invalid JSON: {err}"
    if not isinstance(obj, dict):
        return f"not a JSON object: {text.strip()[:80]}"
    row: dict = {}
    for role, name in spec.fields.items():
        value = obj.get(name, _ABSENT)
        if value is _ABSENT or (value is None and role != "y"):
            continue
        if role == "y" and value is None:
            row[role] = math.nan
        elif role in ("y", "w") and isinstance(value, _Num):
            row[role] = float(value.text)
        elif role == "time" and isinstance(value, _Num):
            row[role] = value.text
        elif role in ("id", "time", "mv") and isinstance(value, str):
            row[role] = value
        else:
            row[role + "!"] = render(value)
    segments = obj.get("segments") if spec.is_prediction and spec.segment_keys else None
    if isinstance(segments, dict):
        for k in spec.segment_keys:
            value = segments.get(k)
            if isinstance(value, dict | list):
                row["seg!"] = render(segments)
            elif isinstance(value, _Num | bool | str):
                row["seg." + k] = render(value) if not isinstance(value, str) else value
    elif segments is not None:
        row["seg!"] = render(segments)
    if spec.is_prediction and spec.features:
        row.update(_json_features(obj.get("features"), spec.features))
    try:
        json.dumps(row, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return "invalid JSON: lone surrogate in a string"
    return row


def _json_features(features, names: tuple[str, ...]) -> dict:
    """The normalized feature columns of one parsed ``features`` value (module docstring
    of :mod:`.normalized`): numbers as floats, other values rendered under ``feat.<name>!``,
    a value that is not an object under ``feat!``. Null and absent names are absent."""
    if features is None:
        return {}
    if not isinstance(features, dict):
        return {"feat!": render(features)}
    row = {}
    for name in names:
        value = features.get(name)
        if isinstance(value, _Num):
            row["feat." + name] = float(value.text)
        elif value is not None:
            row["feat." + name + "!"] = render(value)
    return row


def decode_jsonl(block: bytes, base_offset: int, spec: Spec) -> Decoded:
    """Decodes whole JSON Lines; raw payloads are the lines."""
    tb = decode_text(block, base_offset, *json_decoders(spec), spec.norm_schema())
    norm = {name: tb.table[name].combine_chunks() for name in tb.table.column_names}
    return Decoded(
        tb.offsets,
        tb.rows,
        norm,
        tb.bad_rows,
        tb.bad_details,
        lambda idx: [text_of(line) for line in tb.lines(idx)],
    )
