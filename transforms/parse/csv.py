"""CSV: a header line, then one record per line, every cell read as text.

The chunk reader hands over the file's header line (column names; a UTF-8 byte order
mark is dropped) and whole lines after it. Blocks are parsed by :mod:`.text_blocks`;
the per-line parser is pyarrow itself on the single line, so quoting behaves the same
way on both paths. A line with the wrong number of fields, an unterminated quoted
value or a bare carriage return is ``unparseable``; so is every line of a file whose
header repeats a column name. Column-count errors do not reject a piece: pyarrow
reports them row by row.

Cells: prediction_id as written (a column absent from the header is a missing field);
an empty time or model_version is absent, an empty y is NaN, an empty weight is 1.0.
Numbers are decimal text, or ``nan``, ``inf``, ``infinity`` in any case, signed; other
text is ``bad_number`` (see :func:`number_from_text`). Segment values come from the
columns named like the keys; a feature's value from the column ``features.<name>`` (an
empty cell is no value, NaN). Raw payloads are the parsed rows as JSON objects (the
line itself when it does not parse).
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from msewatch.transforms.parse.normalized import Decoded, Spec, json_text, matches
from msewatch.transforms.parse.text_blocks import Unparsed, check_utf8, decode_text, text_of

NUMBER_TEXT = r"^[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:nan|inf|infinity))$"


def parse_csv_header(line: bytes) -> tuple[str, ...]:
    """Column names of a CSV header line (a UTF-8 byte order mark is dropped)."""
    text = line.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")
    return tuple(next(csv.reader(io.StringIO(text)), []))


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


def csv_decoders(header: tuple[str, ...]):
    """Returns (fast, leaf) parsers of headerless CSV lines, every column a string."""
    convert = pcsv.ConvertOptions(
        column_types={name: pa.string() for name in header},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )

    def fast(piece: bytes, starts: np.ndarray):
        check_utf8(piece, starts)
        invalid: dict[int, str] = {}

        def on_invalid(row) -> str:
            if row.number is None or "\n" in row.text or "\r" in row.text:
                return "error"
            invalid[row.number - 1] = (
                f"expected {row.expected_columns} CSV fields, got {row.actual_columns}"
            )
            return "skip"

        read = pcsv.ReadOptions(
            column_names=list(header), use_threads=False, block_size=max(len(piece) + 1, 1 << 16)
        )
        parse = pcsv.ParseOptions(invalid_row_handler=on_invalid)
        try:
            table = pcsv.read_csv(io.BytesIO(piece), read, parse, convert)
        except pa.ArrowInvalid as err:
            raise Unparsed.from_arrow(err, r"Row #(\d+)", 1) from err
        spans = table.num_rows + len(invalid) != len(starts)
        if not spans and b'"' in piece:
            spans = any(
                pc.any(pc.match_substring_regex(c, "[\r\n]")).as_py() for c in table.columns
            )
        if spans:
            raise Unparsed("an unterminated quoted value or a bare carriage return")
        return table, np.zeros(0, np.int64), invalid

    def leaf(line: bytes) -> dict | str:
        try:
            table, _, invalid = fast(line, np.zeros(1, np.int64))
        except Unparsed as err:
            return f"invalid CSV line: {err}"
        return invalid[0] if invalid else table.to_pylist()[0]

    return fast, leaf


def decode_csv(block: bytes, base_offset: int, spec: Spec, header: tuple[str, ...]) -> Decoded:
    """Decodes whole CSV lines (no header line); raw payloads are rows as JSON objects."""
    fast, leaf = csv_decoders(header)
    if len(set(header)) < len(header):
        detail = f"duplicate column names in the CSV header: {list(header)}"

        def fast(piece, starts):  # noqa: F811 - every line is unparseable
            return pa.table({}), np.zeros(0, np.int64), dict.fromkeys(range(len(starts)), detail)

    schema = pa.schema([(name, pa.string()) for name in header])
    tb = decode_text(block, base_offset, None, fast, leaf, schema)
    cols = {name: tb.table[name].combine_chunks() for name in tb.table.column_names}

    def text(name: str):
        col = cols.get(name)
        return None if col is None else pc.if_else(pc.equal(col, ""), None, col)

    norm = {"id": cols.get("prediction_id"), "time": text(spec.time)}
    if spec.y in cols:
        norm["y"], norm["y!"] = number_from_text(cols[spec.y], math.nan)
    if spec.is_prediction:
        norm["mv"] = text("model_version")
        if "weight" in cols:
            norm["w"], norm["w!"] = number_from_text(cols["weight"], None)
        norm.update({"seg." + k: cols[k] for k in spec.segment_keys if k in cols})
        for name in spec.features:
            if "features." + name in cols:
                value, shown = number_from_text(cols["features." + name], None)
                norm["feat." + name], norm["feat." + name + "!"] = value, shown

    def raw(idx: np.ndarray) -> list[str]:
        pos = np.clip(np.searchsorted(tb.rows, idx), 0, max(len(tb.rows) - 1, 0))
        parsed = (tb.rows[pos] == idx) if len(tb.rows) else np.zeros(len(idx), bool)
        lines = tb.lines(idx[~parsed])[::-1]
        rows = tb.table.take(pa.array(pos[parsed], pa.int64())).to_pylist()[::-1]
        return [json_text(rows.pop()) if p else text_of(lines.pop()) for p in parsed.tolist()]

    norm = {k: v for k, v in norm.items() if v is not None}
    return Decoded(tb.offsets, tb.rows, norm, tb.bad_rows, tb.bad_details, raw)
