"""The join's tombstones: what it has resolved, kept to recognise repeats.

A shard remembers every prediction it joined or expired, one row per
``(prediction_id, model_version)``, and every label that ended late or orphaned, one
row per id, for ``2 * label_ttl``; so its tombstones outnumber its pending records by
far. A joined prediction's row also keeps its label's ``y_true`` and ``label_time``,
so that a shadow prediction of the same id from another model version arriving later
is still scored by that label. Tombstones are looked up by every batch, so they are
kept as sorted numpy arrays keyed by a 128-bit hash of the id (two independent
64-bit SipHash values from ``pandas.util.hash_array``) rather than as strings, with
a 64-bit hash of the model version beside it:

* a lookup of ``b`` ids costs ``O(b log n)`` (``searchsorted``), not a hash table
  built over all ``n`` tombstones; it returns every row of an id (all its versions);
* encoding the state is a ``tobytes`` of 50 bytes per tombstone, decoding is
  zero-copy.

A false match needs two ids whose two hashes both collide (probability about
``n**2 / 2**129``), or two versions of one id whose version hashes collide (about
``v**2 / 2**65`` for ``v`` versions); it would count a new record as a duplicate.

Rows with equal hashes keep their insertion order (older first), which the join's
"first match wins" lookups rely on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

TOMBS_SCHEMA = pa.schema(
    [
        ("prediction_id", pa.string()),
        ("version_hash", pa.uint64()),  # hash_versions(model_version); 0 for a label's row
        ("label_seen", pa.bool_()),  # a prediction's row: it was joined (y_true is its label's)
        ("y_true", pa.float64()),  # the label's, where label_seen
        ("label_time_ms", pa.int64()),  # the label's, where label_seen
        ("forget_at_ms", pa.int64()),
        ("is_prediction", pa.bool_()),  # False: a label that ended late or orphaned
    ]
)
"""The tombstones the join kernel works with (the rows sharing ids with a batch)."""

_COLUMNS = (  # name, dtype: one contiguous array each
    ("h1", np.dtype("<u8")),
    ("h2", np.dtype("<u8")),
    ("version_hash", np.dtype("<u8")),
    ("y_true", np.dtype("<f8")),
    ("label_time_ms", np.dtype("<i8")),
    ("forget_at_ms", np.dtype("<i8")),
    ("label_seen", np.dtype("?")),
    ("is_prediction", np.dtype("?")),
)
_ROW_BYTES = sum(dt.itemsize for _, dt in _COLUMNS)
_KEY2 = "msewatch-tomb-h2"  # 16 bytes: the second, independent SipHash key
_KEY_VERSION = "msewatch-tomb-mv"  # 16 bytes: the SipHash key of model versions


def hash_ids(ids: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Two independent 64-bit hashes of each id (stable across runs and workers)."""
    values = ids.to_numpy(zero_copy_only=False)
    h1 = pd.util.hash_array(values, categorize=False)
    h2 = pd.util.hash_array(values, hash_key=_KEY2, categorize=False)
    return h1, h2


def hash_versions(versions: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash of each model version (stable across runs and workers).

    A batch holds few distinct versions: each is hashed once.
    """
    if isinstance(versions, pa.ChunkedArray):
        versions = versions.combine_chunks()
    encoded = pc.dictionary_encode(versions, null_encoding="encode")
    distinct = encoded.dictionary.to_numpy(zero_copy_only=False)
    hashes = pd.util.hash_array(distinct, hash_key=_KEY_VERSION, categorize=False)
    return hashes[encoded.indices.to_numpy(zero_copy_only=False)]


class TombSet:
    """Tombstones sorted by the first hash of their id, one numpy array per column.

    Immutable: every method returns a new set (arrays may be shared, never written).
    """

    __slots__ = ("_cols",)

    def __init__(self, cols: dict[str, np.ndarray]):
        self._cols = cols

    @classmethod
    def empty(cls) -> TombSet:
        return cls({name: np.empty(0, dtype=dt) for name, dt in _COLUMNS})

    @classmethod
    def from_table(cls, table: pa.Table) -> TombSet:
        """From rows in :data:`TOMBS_SCHEMA` (their order is kept among equal hashes)."""
        if table.num_rows == 0:
            return cls.empty()
        h1, h2 = hash_ids(table.column("prediction_id"))
        cols = {"h1": h1, "h2": h2}
        for name, dt in _COLUMNS[2:]:
            cols[name] = table.column(name).to_numpy(zero_copy_only=False).astype(dt, copy=False)
        order = np.argsort(h1, kind="stable")
        return cls({name: col[order] for name, col in cols.items()})

    @classmethod
    def from_bytes(cls, data) -> TombSet:
        """Zero-copy view of the bytes :meth:`write_to` wrote."""
        n = len(data) // _ROW_BYTES
        cols, offset = {}, 0
        for name, dt in _COLUMNS:
            cols[name] = np.frombuffer(data, dtype=dt, count=n, offset=offset)
            offset += n * dt.itemsize
        return cls(cols)

    def write_to(self, sink: pa.NativeFile) -> None:
        """Writes the columns, one after the other, to ``sink`` (read by
        :meth:`from_bytes`) without an intermediate copy."""
        for name, _ in _COLUMNS:
            col = np.ascontiguousarray(self._cols[name])
            if len(col):
                sink.write(pa.py_buffer(col))

    @property
    def num_rows(self) -> int:
        return len(self._cols["h1"])

    def max_forget_at_ms(self) -> int | None:
        return int(self._cols["forget_at_ms"].max()) if self.num_rows else None

    def _take(self, rows: np.ndarray) -> TombSet:
        return TombSet({name: col[rows] for name, col in self._cols.items()})

    def split(self, ids: pa.Array) -> tuple[pa.Table, TombSet]:
        """``(tombstones of these ids as a TOMBS_SCHEMA table, all the others)``.

        Args:
            ids: distinct prediction ids (e.g. of one batch).
        """
        n = self.num_rows
        if n == 0 or len(ids) == 0:
            return TOMBS_SCHEMA.empty_table(), self
        h1, h2 = hash_ids(ids)
        lo = np.searchsorted(self._cols["h1"], h1, side="left")
        hi = np.searchsorted(self._cols["h1"], h1, side="right")
        counts = hi - lo
        which = np.repeat(np.arange(len(ids)), counts)  # candidate -> id
        starts = np.repeat(lo - np.cumsum(counts) + counts, counts)
        cand = starts + np.arange(len(which))  # candidate row numbers
        hit = self._cols["h2"][cand] == h2[which]
        cand, which = cand[hit], which[hit]
        if len(cand) == 0:
            return TOMBS_SCHEMA.empty_table(), self
        order = np.argsort(cand, kind="stable")  # insertion order among an id's rows
        cand, which = cand[order], which[order]
        cols = {"prediction_id": ids.take(pa.array(which, type=pa.int64()))}
        for name in TOMBS_SCHEMA.names[1:]:
            cols[name] = self._cols[name][cand]
        table = pa.table(cols, schema=TOMBS_SCHEMA)
        keep = np.ones(n, dtype=bool)
        keep[cand] = False
        return table, self._take(keep)

    def merge(self, table: pa.Table) -> TombSet:
        """These tombstones plus the rows of ``table`` (placed after equal hashes)."""
        if table.num_rows == 0:
            return self
        new = TombSet.from_table(table)
        n, m = self.num_rows, new.num_rows
        if n == 0:
            return new
        at = np.searchsorted(self._cols["h1"], new._cols["h1"], side="right") + np.arange(m)
        is_old = np.ones(n + m, dtype=bool)
        is_old[at] = False
        cols = {}
        for name, dt in _COLUMNS:
            out = np.empty(n + m, dtype=dt)
            out[at] = new._cols[name]
            out[is_old] = self._cols[name]
            cols[name] = out
        return TombSet(cols)

    def forget_until(self, now_ms: int) -> TombSet:
        """Without the tombstones whose ``forget_at_ms`` is at or before ``now_ms``."""
        keep = self._cols["forget_at_ms"] > now_ms
        return self if keep.all() else self._take(keep)
