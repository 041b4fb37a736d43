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
