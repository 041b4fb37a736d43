"""The explicit, versioned state coder of the metrics' pane totals (no pickle).

``AccumulatePanes`` keeps, per window, ``{slice: ErrorAccumulator}`` in Beam state.
:class:`PaneTotalsCoder` writes it as a small tagged tree (after the
``VersionedStateCoder`` header, tag ``MWMT``): one type byte per value, then

* ``N`` None, ``T``/``F`` booleans, ``i`` int64, ``f`` float64, ``s`` UTF-8 string;
* ``t`` a tuple (count, items), ``d`` a dict (count, key and value pairs);
* ``a`` a 1-d numpy array (dtype string, count, raw little-endian bytes);
* ``E`` an ``ErrorAccumulator``, ``D`` a ``Distributions``, ``V`` a ``ValueSketch``:
  the field (slot) count, then the fields in declaration order.

A change of those classes' fields is a new ``VERSION``: the decoder checks the field
count and refuses a value of another version by name.
"""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pyarrow as pa

from msewatch.schemas.coders import VersionedStateCoder
from msewatch.transforms.metrics.accumulators import ErrorAccumulator
from msewatch.transforms.metrics.distributions import Distributions
from msewatch.transforms.metrics.sketch import ValueSketch

_U32, _I64, _F64 = struct.Struct("<I"), struct.Struct("<q"), struct.Struct("<d")
_SKETCH_SLOTS = ValueSketch.__slots__
_CLASSES = {
    b"E": (ErrorAccumulator, tuple(f.name for f in dataclasses.fields(ErrorAccumulator))),
    b"D": (Distributions, tuple(f.name for f in dataclasses.fields(Distributions))),
    b"V": (ValueSketch, _SKETCH_SLOTS),
}
_TAG_OF = {cls: (tag, names) for tag, (cls, names) in _CLASSES.items()}


def _encode(value, out: list) -> None:  # noqa: C901 (one branch per type byte)
    if value is None:
        out.append(b"N")
    elif value is True or value is False or isinstance(value, np.bool_):
        out.append(b"T" if value else b"F")
    elif isinstance(value, (int, np.integer)):
        out += [b"i", _I64.pack(int(value))]
    elif isinstance(value, (float, np.floating)):
        out += [b"f", _F64.pack(float(value))]
    elif isinstance(value, str):
        raw = value.encode()
        out += [b"s", _U32.pack(len(raw)), raw]
    elif isinstance(value, (tuple, list)):
        out += [b"t", _U32.pack(len(value))]
        for item in value:
            _encode(item, out)
    elif isinstance(value, dict):
        out += [b"d", _U32.pack(len(value))]
        for k, v in value.items():
            _encode(k, out)
            _encode(v, out)
    elif isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value.ravel(), dtype=value.dtype.newbyteorder("<"))
        if arr.dtype.hasobject:
            raise TypeError("PaneTotalsCoder: object arrays have no explicit encoding")
        dtype = arr.dtype.str.encode()
        out += [b"a", _U32.pack(len(dtype)), dtype, _U32.pack(arr.size), arr.tobytes()]
    elif type(value) in _TAG_OF:
        tag, names = _TAG_OF[type(value)]
        out += [tag, _U32.pack(len(names))]
        for name in names:
            _encode(getattr(value, name), out)
    else:
        raise TypeError(f"PaneTotalsCoder: no explicit encoding for {type(value).__name__}")


def _decode(view: memoryview, pos: int):  # noqa: C901, PLR0911 (one branch per type byte)
    tag, pos = bytes(view[pos : pos + 1]), pos + 1
    if tag == b"N":
        return None, pos
    if tag in (b"T", b"F"):
        return tag == b"T", pos
    if tag == b"i":
        return _I64.unpack_from(view, pos)[0], pos + 8
    if tag == b"f":
        return _F64.unpack_from(view, pos)[0], pos + 8
    if tag in (b"s", b"t", b"d", b"a") or tag in _CLASSES:
        n = _U32.unpack_from(view, pos)[0]
        pos += 4
    else:
        raise ValueError(f"PaneTotalsCoder: unknown type byte {tag!r} at {pos - 1}")
    if tag == b"s":
        return bytes(view[pos : pos + n]).decode(), pos + n
    if tag == b"a":
        dtype = np.dtype(bytes(view[pos : pos + n]).decode())
        pos += n
        count = _U32.unpack_from(view, pos)[0]
        pos += 4
        end = pos + count * dtype.itemsize
        return np.frombuffer(view[pos:end], dtype=dtype).astype(dtype.newbyteorder("=")), end
    items = []
    for _ in range(2 * n if tag == b"d" else n):
        item, pos = _decode(view, pos)
        items.append(item)
    if tag == b"t":
        return tuple(items), pos
    if tag == b"d":
        return dict(zip(items[::2], items[1::2], strict=True)), pos
    cls, names = _CLASSES[tag]
    if n != len(names):
        raise ValueError(
            f"PaneTotalsCoder: a {cls.__name__} of {n} fields, this msewatch has {len(names)}"
        )
    if cls is ValueSketch:
        obj = ValueSketch.__new__(ValueSketch)
        for name, item in zip(names, items, strict=True):
            object.__setattr__(obj, name, item)
        return obj, pos
    return cls(*items), pos


class PaneTotalsCoder(VersionedStateCoder):
    """``{slice: ErrorAccumulator}`` of one window (``AccumulatePanes``' state), encoded
    explicitly (module docstring); decodes to a :class:`Totals`."""

    MAGIC = b"MWMT"
    VERSION = 1

    def write_payload(self, sink: pa.NativeFile, value) -> None:
        out: list = []
        _encode(dict(value), out)
        sink.write(b"".join(out))

    def read_payload(self, payload: memoryview):
        value, end = _decode(payload, 0)
        if end != len(payload) or not isinstance(value, dict):
            raise ValueError("PaneTotalsCoder: the payload is not one totals map")
        return Totals(value)


class Totals(dict):
    """``{slice: ErrorAccumulator}`` of a window so far; never modified once stored."""

    def __deepcopy__(self, memo) -> Totals:
        return self
