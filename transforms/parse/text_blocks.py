"""Text blocks: whole lines parsed by pyarrow, one by one only where it fails.

Shared by :mod:`.jsonl` and :mod:`.csv`. A block is cut into sub-blocks of about 1 MiB
at line starts; blank lines are dropped (they are not records). pyarrow parses each
sub-block whole. When it rejects one and names the failing line (it does for JSON
syntax and type errors and invalid UTF-8), that line alone goes to the per-line parser
and pyarrow resumes on the lines before and after it; a rejection without a line number
halves the range, down to a few lines parsed one by one. A bad line therefore costs one
extra pass over the lines after it in its sub-block, never a per-line loop over the
sub-block.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from msewatch.transforms.parse.normalized import payload_text

SUB_BLOCK_BYTES = 1 << 20
MAX_LINE_BYTES = 1 << 20
"""A longer line is unparseable without being parsed (a record is a few hundred bytes;
pyarrow's JSON reader holds a line at about 15 times its size)."""
_LEAF_LINES = 16
_SOLID = np.ones(256, bool)
_SOLID[[9, 10, 13, 32]] = False  # JSON whitespace: \t \n \r space


class Unparsed(Exception):
    """A piece of a block that the fast parser rejects; ``row``: the failing line, if known."""

    def __init__(self, message: str, row: int | None = None):
        super().__init__(message)
        self.row = row

    @classmethod
    def from_arrow(cls, err: pa.ArrowInvalid, pattern: str, base: int) -> Unparsed:
        match = re.search(pattern, str(err))
        return cls(str(err), None if match is None else int(match[1]) - base)


class _Out:
    """Accumulates the parsed pieces of one block."""

    def __init__(self):
        self.tables, self.table_rows, self.leaf_rows, self.leaf_idx = [], [], [], []
        self.bad_idx, self.bad_details = [], []

    def leaf(self, index: int, result: dict | str):
        if isinstance(result, str):
            self.bad_idx.append(index)
            self.bad_details.append(result)
        else:
            self.leaf_rows.append(result)
            self.leaf_idx.append(index)

    def table(self, schema: pa.Schema) -> tuple[pa.Table, np.ndarray]:
        tables = self.tables + [pa.Table.from_pylist(self.leaf_rows, schema=schema)]
        rows = np.concatenate(self.table_rows + [np.array(self.leaf_idx, np.int64)])
        table = pa.concat_tables([_conform(t, schema) for t in tables])
        if rows.size and np.any(np.diff(rows) < 0):
            order = np.argsort(rows, kind="stable")
            table, rows = table.take(order), rows[order]
        return table, rows


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with the columns of ``schema``; absent ones are all null."""
    cols = [
        table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(cols, schema=schema)


class TextBlock(NamedTuple):
    """A parsed text block: rows, unparseable records, and the record lines."""

    table: pa.Table
    rows: np.ndarray  # record index of each table row
    bad_rows: np.ndarray
    bad_details: list[str]
    offsets: np.ndarray  # byte offset of each record's line
    lines: Callable[[np.ndarray], list[bytes]]  # record indices -> their lines


def _nonblank_lines(buf: bytes) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Drops blank lines: returns (the other lines packed, their starts, their starts in buf).

    A line runs to and including its ``\\n``; the last may lack one. A blank line holds
    only spaces, tabs and carriage returns.
    """
    arr = np.frombuffer(buf, dtype=np.uint8)
    starts = np.concatenate(([0], np.flatnonzero(arr == 10) + 1)).astype(np.int64)
    starts = starts[starts < len(buf)]
    if not starts.size:
        return b"", starts, starts
    keep = np.logical_or.reduceat(_SOLID[arr], starts)
    if keep.all():
        return buf, starts, starts
    if not keep.any():
        return b"", starts[:0], starts[:0]
    lengths = np.append(starts[1:], len(buf)) - starts
    packed = arr[np.repeat(keep, lengths)].tobytes()
    lengths = lengths[keep]
    return packed, np.concatenate(([0], np.cumsum(lengths)[:-1])), starts[keep]


def decode_text(block: bytes, base_offset: int, prepare, fast, leaf, schema) -> TextBlock:
    """Parses a block of lines with ``fast`` per piece and ``leaf`` per line where it fails.

    Args:
        block: whole lines of text; blank lines are skipped, they are not records.
        base_offset: byte offset of ``block`` in its file.
        prepare: None or ``prepare(buf, line_starts) -> (buf, line_starts)``: rewrites
            lines (line for line) before parsing; raw payloads keep the original text.
        fast: ``fast(piece, line_starts) -> (table, redo, bad)``: parses the lines of
            ``piece`` (a table with one row per line not in ``bad``), ``redo`` the
            line indices to parse with ``leaf`` instead, ``bad`` {line index: detail} of
            unparseable lines. Raises ``Unparsed`` to reject the piece.
        leaf: ``leaf(line) -> row dict | detail of why the line is unparseable``.
        schema: schema of the rows.
    """
    out, pieces, pos, count = _Out(), [], 0, 0
    while pos < len(block):
        cut = block.find(b"\n", pos + SUB_BLOCK_BYTES - 1)
        cut = len(block) if cut < 0 else cut + 1
        buf, starts, orig = _nonblank_lines(block[pos:cut])
        ends = np.append(starts[1:], len(buf))
        work, work_starts = buf, starts
        if prepare is not None and len(starts):
            work, work_starts = prepare(buf, starts)
        work_ends = np.append(work_starts[1:], len(work))
        for i in np.flatnonzero(ends - starts > MAX_LINE_BYTES).tolist():  # the over-long only
            out.leaf(count + i, f"line of {ends[i] - starts[i]} bytes, over {MAX_LINE_BYTES}")
        _parse_lines(work, work_starts, work_ends, count, fast, leaf, out, ends - starts)
        pieces.append((count, buf, starts, ends, orig + pos + base_offset))
        count += len(starts)
        pos = cut
    table, rows = out.table(schema)
    firsts = np.array([p[0] for p in pieces], np.int64)

    def lines(idx: np.ndarray) -> list[bytes]:
        result = []
        for i in idx.tolist():
            first, buf, starts, ends, _ = pieces[int(np.searchsorted(firsts, i, "right")) - 1]
            result.append(buf[starts[i - first] : ends[i - first]])
        return result

    offsets = np.concatenate([p[4] for p in pieces]) if pieces else np.zeros(0, np.int64)
    bad = np.array(out.bad_idx, np.int64)
    return TextBlock(table, rows, bad, out.bad_details, offsets, lines)


def _parse_lines(buf, starts, ends, first, fast, leaf, out: _Out, sizes) -> None:
    """Parses lines ``[0, len(starts))`` of ``buf``: whole ranges with ``fast`` where it
    accepts them; a line it names as the failure, or every line of a small range it
    rejects without naming one, with ``leaf``; other rejected ranges are halved. Lines
    whose original ``sizes`` exceed :data:`MAX_LINE_BYTES` are left out (the caller
    rejected them)."""
    cuts = np.flatnonzero(sizes > MAX_LINE_BYTES).tolist()
    bounds = [-1, *cuts, len(starts)]
    stack = [(a + 1, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)][::-1]
    while stack:
        lo, hi = stack.pop()
        if lo >= hi:
            continue
        try:
            table, redo, bad = fast(buf[starts[lo] : ends[hi - 1]], starts[lo:hi] - starts[lo])
        except Unparsed as err:
            if err.row is not None and 0 <= err.row < hi - lo:
                row = lo + err.row
                out.leaf(first + row, leaf(buf[starts[row] : ends[row]]))
                stack += [(row + 1, hi), (lo, row)]
            elif hi - lo > _LEAF_LINES:
                stack += [((lo + hi) // 2, hi), (lo, (lo + hi) // 2)]
            else:
                for i in range(lo, hi):
                    out.leaf(first + i, leaf(buf[starts[i] : ends[i]]))
            continue
        parsed = np.ones(hi - lo, bool)
        parsed[list(bad)] = False
        table_lines = np.flatnonzero(parsed)  # the line of each table row
        keep = ~np.isin(table_lines, redo)
        out.tables.append(table if keep.all() else table.filter(pa.array(keep)))
        out.table_rows.append(table_lines[keep] + first + lo)
        for i in redo.tolist():
            out.leaf(first + lo + i, leaf(buf[starts[lo + i] : ends[lo + i]]))
        for i, detail in bad.items():
            out.leaf(first + lo + i, detail)


def unpack(lines: pa.Array) -> tuple[bytes, np.ndarray]:
    """(buffer, line starts) of a binary array of lines."""
    offsets = np.frombuffer(lines.buffers()[1], np.int32)[
        lines.offset : lines.offset + len(lines) + 1
    ]
    data = lines.buffers()[2].to_pybytes()[offsets[0] : offsets[-1]]
    return data, (offsets[:-1] - offsets[0]).astype(np.int64)


def check_utf8(piece: bytes, starts: np.ndarray) -> None:
    try:
        piece.decode("utf-8")
    except UnicodeDecodeError as err:
        row = int(np.searchsorted(starts, err.start, "right")) - 1
        raise Unparsed("not valid UTF-8", row) from err


def line_array(piece: bytes, starts: np.ndarray) -> pa.Array:
    """Zero-copy binary array of the lines of ``piece``."""
    offsets = np.append(starts, len(piece)).astype(np.int32)
    return pa.Array.from_buffers(
        pa.binary(), len(starts), [None, pa.py_buffer(offsets), pa.py_buffer(piece)]
    )


def text_of(line: bytes) -> str:
    """A line as text for ``raw_payload``, without its line break (``payload_text``)."""
    return payload_text(line.rstrip(b"\r\n"))
