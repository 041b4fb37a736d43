"""An explicit encoding of state values as a small tagged tree (no pickle).

Used after a :class:`~msewatch.schemas.coders.VersionedStateCoder` header by the
metrics' pane totals and the SLO/comparison evaluators' state. One type byte per
value, then:

* ``N`` None, ``T``/``F`` booleans, ``i`` int64, ``f`` float64, ``s`` UTF-8 string,
  ``b`` bytes, ``z``/``n`` an aware (read back in UTC) or naive datetime (int64 µs
  since the epoch);
* ``t`` a tuple or list (count, items), ``d`` a dict (count, key and value pairs);
* ``a`` a 1-d numpy array (dtype string, count, raw little-endian bytes), ``o`` an
  object array (count, items);
* a class :func:`register`-ed under another byte: its field count, then its fields
  in declaration order (dataclasses, NamedTuples, ``__slots__`` classes).

A change of a registered class's fields is a new version of the coders using it; the
decoder also checks the field count.
"""

from __future__ import annotations

import dataclasses
import datetime
import struct

import numpy as np

from msewatch.schemas.coders import VersionedStateCoder

_U32, _I64, _F64 = struct.Struct("<I"), struct.Struct("<q"), struct.Struct("<d")
_CLASSES: dict[bytes, tuple[type, tuple[str, ...]]] = {}
_TAG_OF: dict[type, tuple[bytes, tuple[str, ...]]] = {}
_BUILTIN = frozenset(b"NTFifsbtdaozn")
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_US = datetime.timedelta(microseconds=1)


def register(tag: bytes, cls: type) -> None:
    """Encodes instances of ``cls`` (a dataclass, a NamedTuple or a class with
    ``__slots__``) as ``tag``, its field count and its fields in declaration order."""
    if len(tag) != 1 or tag[0] in _BUILTIN or _CLASSES.get(tag, (cls,))[0] is not cls:
        raise ValueError(f"state_tree: type byte {tag!r} is taken")
    if dataclasses.is_dataclass(cls):
        names = tuple(f.name for f in dataclasses.fields(cls))
    else:
        names = tuple(getattr(cls, "_fields", None) or cls.__slots__)
    _CLASSES[tag] = (cls, names)
    _TAG_OF[cls] = (tag, names)


def encode(value) -> bytes:
    """``value`` as a tagged tree (module docstring)."""
    out: list = []
    _encode(value, out)
    return b"".join(out)


def decode(payload: memoryview, what: str):
    """Inverse of :func:`encode`; ``what`` (a coder's name) is in the errors."""
    try:
        value, end = _decode(payload, 0)
    except (struct.error, KeyError, TypeError) as exc:
        raise ValueError(f"{what}: a truncated or garbled state value ({exc})") from None
    if end != len(payload):
        raise ValueError(f"{what}: {len(payload) - end} bytes after the state value")
    return value


def _encode(value, out: list) -> None:  # noqa: C901, PLR0912 (one branch per type byte)
    if type(value) in _TAG_OF:  # before tuple: a NamedTuple is one
        tag, names = _TAG_OF[type(value)]
        out += [tag, _U32.pack(len(names))]
        for name in names:
            _encode(getattr(value, name), out)
    elif value is None:
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
    elif isinstance(value, datetime.datetime):
        aware = value.tzinfo is not None
        since = value - (_EPOCH if aware else _EPOCH.replace(tzinfo=None))
        out += [b"z" if aware else b"n", _I64.pack(since // _US)]
    elif isinstance(value, bytes):
        out += [b"b", _U32.pack(len(value)), value]
    elif isinstance(value, (tuple, list)):
        out += [b"t", _U32.pack(len(value))]
        for item in value:
            _encode(item, out)
    elif isinstance(value, dict):
        out += [b"d", _U32.pack(len(value))]
        for k, v in value.items():
            _encode(k, out)
            _encode(v, out)
    elif isinstance(value, np.ndarray) and value.ndim != 1:
        raise TypeError(f"state_tree: a {value.ndim}-d array (only 1-d arrays are encoded)")
    elif isinstance(value, np.ndarray) and value.dtype.hasobject:
        out += [b"o", _U32.pack(value.size)]
        for item in value.ravel().tolist():
            _encode(item, out)
    elif isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value.ravel(), dtype=value.dtype.newbyteorder("<"))
        dtype = arr.dtype.str.encode()
        out += [b"a", _U32.pack(len(dtype)), dtype, _U32.pack(arr.size), arr.tobytes()]
    else:
        raise TypeError(f"state_tree: no explicit encoding for {type(value).__name__}")


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
    if tag in (b"z", b"n"):
        base = _EPOCH if tag == b"z" else _EPOCH.replace(tzinfo=None)
        return base + _I64.unpack_from(view, pos)[0] * _US, pos + 8
    if tag in (b"s", b"b", b"t", b"d", b"a", b"o") or tag in _CLASSES:
        n = _U32.unpack_from(view, pos)[0]
        pos += 4
    else:
        raise TypeError(f"unknown type byte {tag!r} at {pos - 1}")
    if tag in (b"s", b"b", b"a") and pos + n > len(view):
        raise TypeError(f"{n} bytes at {pos}, past the end ({len(view)})")
    if tag in (b"s", b"b"):
        raw = bytes(view[pos : pos + n])
        return (raw.decode() if tag == b"s" else raw), pos + n
    if tag == b"a":
        dtype = np.dtype(bytes(view[pos : pos + n]).decode())
        pos += n
        count = _U32.unpack_from(view, pos)[0]
        pos += 4
        end = pos + count * dtype.itemsize
        if end > len(view):
            raise TypeError(f"an array of {count} past the end ({len(view)})")
        return np.frombuffer(view[pos:end], dtype=dtype).astype(dtype.newbyteorder("=")), end
    items = []
    for _ in range(2 * n if tag == b"d" else n):
        item, pos = _decode(view, pos)
        items.append(item)
    if tag == b"t":
        return tuple(items), pos
    if tag == b"o":
        out = np.empty(n, dtype=object)
        out[:] = items
        return out, pos
    if tag == b"d":
        return dict(zip(items[::2], items[1::2], strict=True)), pos
    cls, names = _CLASSES[tag]
    if n != len(names):
        raise TypeError(f"a {cls.__name__} of {n} fields, this msewatch's has {len(names)}")
    if not (dataclasses.is_dataclass(cls) or hasattr(cls, "_fields")):  # a __slots__ class
        obj = cls.__new__(cls)
        for name, item in zip(names, items, strict=True):
            object.__setattr__(obj, name, item)
        return obj, pos
    return cls(*items), pos


class TreeStateCoder(VersionedStateCoder):
    """A state value encoded as a tagged tree after the versioned header; subclasses
    name the state (``MAGIC``) and its ``VERSION``."""

    def write_payload(self, sink, value) -> None:
        sink.write(encode(value))

    def read_payload(self, payload: memoryview):
        return decode(payload, type(self).__name__)
