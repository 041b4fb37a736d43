"""JSON Lines text built column-wise: Arrow string arrays, no per-record Python loop.

The sample writers (:mod:`msewatch.commands.generate`,
:mod:`msewatch.commands.scenarios`) build each line as an element-wise :func:`concat` of
constants and token arrays (:func:`json_floats`, :func:`json_times`, :func:`string_rows`),
then :func:`write_jsonl` writes the Arrow value buffer as the file. Tokens are spelled as
Python's ``json`` module writes them. UTC.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

OFFSET_TEXT = np.array(["Z", "+02:00", "-05:00", "+05:30", "+00:00"], "S6")  # RFC 3339 suffixes
_OFFSET_LEN = np.strings.str_len(OFFSET_TEXT)
_OFFSET_MINUTES = np.array([0, 120, -300, 330, 0], np.int64)  # of each OFFSET_TEXT entry


def string_rows(parts):
    """A large_string array from ``(matrix, length)`` pairs, without a Python loop.

    Row i joins, for each pair, the first ``length`` (an int, or an array's item i) bytes
    of row i of ``matrix`` (an ``(n, width)`` uint8 array).
    """
    n = len(parts[0][0])
    keep = [
        np.broadcast_to(np.arange(m.shape[1]) < np.reshape(k, (-1, 1)), m.shape) for m, k in parts
    ]
    keep = np.hstack(keep)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(keep.sum(axis=1), out=offsets[1:])
    data = pa.py_buffer(np.hstack([m for m, _ in parts])[keep].tobytes())
    return pa.Array.from_buffers(pa.large_string(), n, [None, pa.py_buffer(offsets), data])


def concat(*parts):
    """Element-wise concatenation of string arrays and Python str constants."""
    large = pa.large_string()
    args = [pa.scalar(x, large) if isinstance(x, str) else x.cast(large) for x in parts]
    return pc.binary_join_element_wise(*args, pa.scalar("", large))


def json_floats(x):
    """JSON number tokens as Python's json writes them (``NaN``, ``1.0``)."""
    text = pc.cast(pa.array(x), pa.large_string())
    text = pc.if_else(pc.match_substring_regex(text, r"^-?\d+$"), concat(text, ".0"), text)
    return pc.if_else(pa.array(np.isnan(x)), pa.scalar("NaN", pa.large_string()), text)


def json_times(cols):
    """JSON tokens for times as encoded: epoch ms digits or quoted RFC 3339 strings.

    ``cols`` holds numpy arrays: ``ms`` (the instant, epoch ms UTC), ``epoch`` (write
    the ms as a JSON int), ``fraction`` (write milliseconds in RFC 3339) and ``offset``
    (an index into :data:`OFFSET_TEXT`; the local time is written with that offset).
    """
    n, offset = len(cols["ms"]), cols["offset"]
    local = cols["ms"] + _OFFSET_MINUTES[offset] * 60_000
    text = np.datetime_as_string(local.astype("datetime64[ms]"), unit="ms").astype("S23")
    text = text.view(np.uint8).reshape(n, 23)
    suffix = OFFSET_TEXT[offset].view(np.uint8).reshape(n, 6)
    quote, suffix_len = np.full((n, 1), ord('"'), np.uint8), _OFFSET_LEN[offset]
    parts = [(quote, 1), (text[:, :19], 19), (text[:, 19:], 4 * cols["fraction"])]
    quoted = string_rows(parts + [(suffix, suffix_len), (quote, 1)])
    epoch = pc.cast(pa.array(cols["ms"]), pa.large_string())
    return pc.if_else(pa.array(cols["epoch"]), epoch, quoted)


def write_jsonl(path, lines, bad, rng):
    """Writes ``lines`` (newline-terminated) with the ``bad`` lines at random positions.

    Args:
        path: File to write, overwritten.
        lines: A large_string array, each item one newline-terminated line.
        bad: Extra lines (str, without newline) to insert; may be empty.
        rng: numpy Generator choosing the positions of ``bad`` (unused when empty).
    """
    if bad:
        at = np.sort(rng.integers(0, len(lines) + 1, len(bad)))
        order = np.insert(np.arange(len(lines)), at, len(lines) + np.arange(len(bad)))
        extra = pa.array([text + "\n" for text in bad], pa.large_string())
        lines = pa.concat_arrays([lines, extra]).take(order)
    with open(path, "wb") as f:  # the Arrow value buffer is the file's content
        if len(lines):
            offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset :]
            f.write(memoryview(lines.buffers()[2])[offsets[0] : offsets[len(lines)]])
