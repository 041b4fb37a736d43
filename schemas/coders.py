"""Beam coders for Arrow batches.

Records cross stage boundaries (shuffles, state) as ``pyarrow.Table`` batches. Pickle
is the wrong coder for them: pickling a *slice* of a table serializes the whole parent
buffers (a 1,000-row slice of a 1 M-row table pickles to the size of the 1 M rows),
so sharding a batch into slices multiplied the bytes moved by the shard count. The
Arrow IPC stream format writes only the rows of the slice, and decodes without a copy.

Importing this module registers :class:`ArrowTableCoder` for ``pa.Table`` in Beam's
coder registry, so a PCollection typed ``pa.Table`` (or a tuple containing one) uses it.
"""

from __future__ import annotations

import struct

import apache_beam as beam
import pyarrow as pa


def write_table(sink: pa.NativeFile, table: pa.Table) -> None:
    """Writes ``table`` to ``sink`` as one Arrow IPC stream (only its own rows)."""
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)


def table_to_bytes(table: pa.Table) -> bytes:
    """Arrow IPC stream bytes of ``table`` (only its own rows, even for a slice)."""
    sink = pa.BufferOutputStream()
    write_table(sink, table)
    return sink.getvalue().to_pybytes()


def table_from_bytes(data: bytes) -> pa.Table:
    """Inverse of :func:`table_to_bytes` (zero-copy over ``data``)."""
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


class ArrowTableCoder(beam.coders.Coder):
    """Encodes a ``pa.Table`` as an Arrow IPC stream."""

    def encode(self, value: pa.Table) -> bytes:
        return table_to_bytes(value)

    def decode(self, encoded: bytes) -> pa.Table:
        return table_from_bytes(encoded)

    def is_deterministic(self) -> bool:
        return False  # batches are values, never keys

    def to_type_hint(self):
        return pa.Table


beam.coders.registry.register_coder(pa.Table, ArrowTableCoder)


class VersionedStateCoder(beam.coders.Coder):
    """A state coder whose every value starts with an 8-byte header: a 4-byte ``MAGIC``
    naming the state and its format ``VERSION`` (one byte, then 3 zero bytes, so the
    payload stays 8-byte aligned). Decoding a value of another state or version raises
    a ``ValueError`` naming the coder and the version, not a garbled value: state
    written by another msewatch format cannot be read (docs/architecture.md).

    Subclasses write the payload (:meth:`write_payload`) and read it back from a
    zero-copy ``memoryview`` (:meth:`read_payload`).
    """

    MAGIC: bytes = b""
    VERSION: int = 1
    _HEADER = struct.Struct("<4sB3x")

    def write_payload(self, sink: pa.NativeFile, value) -> None:
        raise NotImplementedError

    def read_payload(self, payload: memoryview):
        raise NotImplementedError

    def encode(self, value) -> bytes:
        sink = pa.BufferOutputStream()
        sink.write(self._HEADER.pack(self.MAGIC, self.VERSION))
        self.write_payload(sink, value)
        return sink.getvalue().to_pybytes()

    def decode(self, encoded: bytes):
        view = memoryview(encoded)
        name = type(self).__name__
        if len(view) < self._HEADER.size:
            raise ValueError(f"{name}: a state value of {len(view)} bytes has no header")
        magic, version = self._HEADER.unpack_from(view)
        if magic != self.MAGIC:
            raise ValueError(
                f"{name}: not a {self.MAGIC!r} state value (its tag is {magic!r}); "
                "state written by an older msewatch cannot be read"
            )
        if version != self.VERSION:
            raise ValueError(
                f"{name}: state format version {version} is unknown (this msewatch "
                f"reads version {self.VERSION}); start the job without its old state"
            )
        return self.read_payload(view[self._HEADER.size :])

    def is_deterministic(self) -> bool:
        return False  # state values, never keys


class ArrowStateCoder(VersionedStateCoder):
    """A ``pa.Table`` state cell: the header, then one Arrow IPC stream."""

    def write_payload(self, sink: pa.NativeFile, value: pa.Table) -> None:
        write_table(sink, value)

    def read_payload(self, payload: memoryview) -> pa.Table:
        return table_from_bytes(payload)
