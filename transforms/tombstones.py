"""The join's tombstones: ids it has resolved, kept to recognise repeats.

A shard remembers every prediction id it joined or expired (and every orphaned
label's id) for ``2 * label_ttl``, so its tombstones outnumber its pending records
by far. They are looked up by every batch, so they are kept as a sorted numpy
structured array keyed by a 128-bit hash of the id (two independent 64-bit SipHash
values from ``pandas.util.hash_array``) rather than as strings:

* a lookup of ``b`` ids costs ``O(b log n)`` (``searchsorted``), not a hash table
  built over all ``n`` tombstones;
* encoding the state is one ``tobytes`` of 26 bytes per tombstone, decoding is
  zero-copy.

A false match needs two ids whose two hashes both collide (probability about
``n**2 / 2**129``); it would count a new record as a duplicate.

Rows with equal hashes keep their insertion order (older first), which the join's
"first match wins" lookups rely on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

TOMBS_SCHEMA = pa.schema(
    [
        ("prediction_id", pa.string()),
        ("label_seen", pa.bool_()),
        ("forget_at_ms", pa.int64()),
        ("is_prediction", pa.bool_()),  # False: an orphaned label's id
    ]
)
"""The tombstones the join kernel works with (the rows sharing ids with a batch)."""

_DTYPE = np.dtype(
    [
        ("h1", "<u8"),
        ("h2", "<u8"),
        ("forget_at_ms", "<i8"),
        ("label_seen", "?"),
        ("is_prediction", "?"),
    ]
)
_KEY2 = "msewatch-tomb-h2"  # 16 bytes: the second, independent SipHash key


def hash_ids(ids: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Two independent 64-bit hashes of each id (stable across runs and workers)."""
    values = ids.to_numpy(zero_copy_only=False)
    h1 = pd.util.hash_array(values, categorize=False)
    h2 = pd.util.hash_array(values, hash_key=_KEY2, categorize=False)
    return h1, h2


class TombSet:
    """Tombstones sorted by the first hash of their id. Immutable: methods return new sets."""

    __slots__ = ("_rows",)

    def __init__(self, rows: np.ndarray):
        self._rows = rows

    @classmethod
    def empty(cls) -> TombSet:
        return cls(np.empty(0, dtype=_DTYPE))

    @classmethod
    def from_table(cls, table: pa.Table) -> TombSet:
        """From rows in :data:`TOMBS_SCHEMA` (their order is kept among equal hashes)."""
        rows = np.empty(table.num_rows, dtype=_DTYPE)
        if table.num_rows:
            rows["h1"], rows["h2"] = hash_ids(table.column("prediction_id"))
            for name in ("forget_at_ms", "label_seen", "is_prediction"):
                rows[name] = table.column(name).to_numpy(zero_copy_only=False)
            rows = rows[np.argsort(rows["h1"], kind="stable")]
        return cls(rows)

    @classmethod
    def from_bytes(cls, data) -> TombSet:
        return cls(np.frombuffer(data, dtype=_DTYPE))

    def to_bytes(self) -> bytes:
        return self._rows.tobytes()

    @property
    def num_rows(self) -> int:
        return len(self._rows)

    def max_forget_at_ms(self) -> int | None:
        return int(self._rows["forget_at_ms"].max()) if len(self._rows) else None

    def split(self, ids: pa.Array) -> tuple[pa.Table, TombSet]:
        """``(tombstones of these ids as a TOMBS_SCHEMA table, all the others)``.

        Args:
            ids: distinct prediction ids (e.g. of one batch).
        """
        rows = self._rows
        if len(rows) == 0 or len(ids) == 0:
            return TOMBS_SCHEMA.empty_table(), self
        h1, h2 = hash_ids(ids)
        lo = np.searchsorted(rows["h1"], h1, side="left")
        hi = np.searchsorted(rows["h1"], h1, side="right")
        counts = hi - lo
        which = np.repeat(np.arange(len(ids)), counts)  # candidate -> id
        starts = np.repeat(lo - np.cumsum(counts) + counts, counts)
        cand = starts + np.arange(len(which))  # candidate row numbers
        hit = rows["h2"][cand] == h2[which]
        cand, which = cand[hit], which[hit]
        order = np.argsort(cand, kind="stable")  # insertion order among an id's rows
        cand, which = cand[order], which[order]
        found = rows[cand]
        table = pa.table(
            {
                "prediction_id": ids.take(pa.array(which, type=pa.int64())),
                "label_seen": found["label_seen"],
                "forget_at_ms": found["forget_at_ms"],
                "is_prediction": found["is_prediction"],
            },
            schema=TOMBS_SCHEMA,
        )
        return table, TombSet(np.delete(rows, cand)) if len(cand) else self

    def merge(self, table: pa.Table) -> TombSet:
        """These tombstones plus the rows of ``table`` (placed after equal hashes)."""
        if table.num_rows == 0:
            return self
        new = TombSet.from_table(table)._rows
        if len(self._rows) == 0:
            return TombSet(new)
        at = np.searchsorted(self._rows["h1"], new["h1"], side="right")
        return TombSet(np.insert(self._rows, at, new))

    def forget_until(self, now_ms: int) -> TombSet:
        """Without the tombstones whose ``forget_at_ms`` is at or before ``now_ms``."""
        keep = self._rows["forget_at_ms"] > now_ms
        return self if keep.all() else TombSet(self._rows[keep])
