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

_INT64_MIN = int(np.iinfo(np.int64).min)

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

    Two sorted runs: the *main* rows and the *recent* rows, all newer than the main
    ones. :meth:`merge` inserts into the small recent run and folds it into the main
    run only when it grows past :func:`_recent_limit` (``n / 8`` rows), so a batch
    adding ``m`` rows to ``n`` copies the recent run and, amortized, ``8 m`` rows of
    the main run, rather than all ``n`` rows every time. Read together,
    the two runs are the rows sorted by hash, older first among equal hashes.

    :meth:`forget_until` forgets lazily: rows whose ``forget_at_ms`` is at or before
    the last ``now_ms`` it was given are *dead* (no method returns or counts them) and
    are removed only once they are more than an eighth of the rows
    (:func:`_compact_dead`), so a timer firing that forgets a few rows does not copy
    all of them.

    Immutable: every method returns a new set (arrays may be shared, never written).
    """

    __slots__ = ("_dead", "_dead_until_ms", "_main", "_recent")

    def __init__(
        self,
        main: dict[str, np.ndarray],
        recent: dict[str, np.ndarray] | None = None,
        dead_until_ms: int = _INT64_MIN,
        dead: int = 0,
    ):
        self._main = main
        self._recent = _empty_cols() if recent is None else recent
        self._dead_until_ms = dead_until_ms  # rows forgotten at or before it are dead
        self._dead = dead  # how many rows are dead

    @classmethod
    def empty(cls) -> TombSet:
        return cls(_empty_cols())

    @classmethod
    def from_table(cls, table: pa.Table) -> TombSet:
        """From rows in :data:`TOMBS_SCHEMA` (their order is kept among equal hashes)."""
        return cls(_cols_from_table(table))

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
        live = self._without_dead()
        cols = _merge_cols(live._main, live._recent)
        for name, _ in _COLUMNS:
            col = np.ascontiguousarray(cols[name])
            if len(col):
                sink.write(pa.py_buffer(col))

    @property
    def num_rows(self) -> int:
        return self._stored_rows() - self._dead

    def _stored_rows(self) -> int:
        return len(self._main["h1"]) + len(self._recent["h1"])

    def max_forget_at_ms(self) -> int | None:
        if not self.num_rows:
            return None
        # a dead row's forget_at_ms is below every live row's
        return int(max(col["forget_at_ms"].max(initial=_INT64_MIN) for col in self._runs()))

    def _runs(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        return self._main, self._recent

    def find(self, ids: pa.Array) -> tuple[pa.Table, tuple[np.ndarray, np.ndarray]]:
        """``(tombstones of these ids as a TOMBS_SCHEMA table, where they are)``.

        The table's rows are in hash order, older first among an id's rows; the
        second value (row numbers in the main and in the recent run) is for
        :meth:`drop`.

        Args:
            ids: distinct prediction ids (e.g. of one batch).
        """
        none = np.empty(0, dtype=np.int64)
        if self.num_rows == 0 or len(ids) == 0:
            return TOMBS_SCHEMA.empty_table(), (none, none)
        h1, h2 = hash_ids(ids)
        by_hash = np.argsort(h1)  # sorted needles: searchsorted is ~2x faster
        found = [
            _search(run, h1[by_hash], h2[by_hash], self._dead_until_ms) for run in self._runs()
        ]
        rows = tuple(cand for cand, _ in found)
        n_main = len(rows[0])
        if n_main + len(rows[1]) == 0:
            return TOMBS_SCHEMA.empty_table(), (none, none)
        hits = list(zip(self._runs(), rows, strict=True))
        cand_h1 = np.concatenate([run["h1"][cand] for run, cand in hits])
        run_of = np.arange(len(cand_h1)) >= n_main  # main rows first among equal hashes
        order = np.lexsort((np.concatenate(rows), run_of, cand_h1))
        which = by_hash[np.concatenate([w for _, w in found])[order]]
        cols = {"prediction_id": ids.take(pa.array(which, type=pa.int64()))}
        for name in TOMBS_SCHEMA.names[1:]:
            values = [run[name][cand] for run, cand in hits]
            cols[name] = np.concatenate(values)[order]
        return pa.table(cols, schema=TOMBS_SCHEMA), rows

    def drop(self, rows: tuple[np.ndarray, np.ndarray]) -> TombSet:
        """Without the rows :meth:`find` returned."""
        if len(rows[0]) + len(rows[1]) == 0:
            return self
        kept = []
        for run, cand in zip(self._runs(), rows, strict=True):
            keep = np.ones(len(run["h1"]), dtype=bool)
            keep[cand] = False
            kept.append(_take(run, keep) if len(cand) else run)
        return TombSet(*kept, self._dead_until_ms, self._dead)

    def split(self, ids: pa.Array) -> tuple[pa.Table, TombSet]:
        """``(tombstones of these ids as a TOMBS_SCHEMA table, all the others)``.

        Args:
            ids: distinct prediction ids (e.g. of one batch).
        """
        table, rows = self.find(ids)
        return table, self.drop(rows)

    def merge(self, table: pa.Table) -> TombSet:
        """These tombstones plus the rows of ``table`` (placed after equal hashes)."""
        if table.num_rows == 0:
            return self
        new = _cols_from_table(table)
        base = self
        if (new["forget_at_ms"] <= self._dead_until_ms).any():  # new rows are not dead
            base = self._without_dead()
        recent = _merge_cols(base._recent, new)
        n_main = len(base._main["h1"])
        if len(recent["h1"]) <= _recent_limit(n_main):
            return TombSet(base._main, recent, base._dead_until_ms, base._dead)
        return TombSet(_merge_cols(base._main, recent), None, base._dead_until_ms, base._dead)

    def forget_until(self, now_ms: int) -> TombSet:
        """Without the tombstones whose ``forget_at_ms`` is at or before ``now_ms``."""
        if now_ms <= self._dead_until_ms:
            return self
        dead = sum(int(np.count_nonzero(run["forget_at_ms"] <= now_ms)) for run in self._runs())
        if dead == self._dead:  # nothing more forgotten: the same set (no state write)
            return self
        forgotten = TombSet(self._main, self._recent, now_ms, dead)
        if _compact_dead(dead, self._stored_rows()):
            return forgotten._without_dead()
        return forgotten

    def _without_dead(self) -> TombSet:
        """The same rows with the dead ones removed."""
        if self._dead == 0:
            return TombSet(self._main, self._recent)
        runs = (_take(run, run["forget_at_ms"] > self._dead_until_ms) for run in self._runs())
        return TombSet(*runs)


def _compact_dead(dead: int, stored: int) -> bool:
    """Whether to remove the dead rows now: when they are more than an eighth of the
    stored rows (so a set of ``n`` rows is rewritten once per ``n / 8`` forgotten)."""
    return dead * 8 > stored


def _recent_limit(n_main: int) -> int:
    """How many rows the recent run may hold before it is folded into the main run:
    about ``n_main / 8``, at least 4096 (so a set of ``n`` rows is rewritten once per
    ``n / 8`` added rows)."""
    return max(4096, n_main // 8)


def _empty_cols() -> dict[str, np.ndarray]:
    return {name: np.empty(0, dtype=dt) for name, dt in _COLUMNS}


def _cols_from_table(table: pa.Table) -> dict[str, np.ndarray]:
    """Sorted columns of rows in :data:`TOMBS_SCHEMA` (order kept among equal hashes)."""
    if table.num_rows == 0:
        return _empty_cols()
    h1, h2 = hash_ids(table.column("prediction_id"))
    cols = {"h1": h1, "h2": h2}
    for name, dt in _COLUMNS[2:]:
        cols[name] = table.column(name).to_numpy(zero_copy_only=False).astype(dt, copy=False)
    order = np.argsort(h1, kind="stable")
    return {name: col[order] for name, col in cols.items()}


def _take(cols: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {name: col[rows] for name, col in cols.items()}


def _search(cols: dict[str, np.ndarray], h1: np.ndarray, h2: np.ndarray, dead_until_ms: int):
    """``(rows, which)``: the rows of ``cols`` whose hashes equal an id's and that
    are not forgotten by ``dead_until_ms``, in row order, and the number of that id."""
    lo = np.searchsorted(cols["h1"], h1, side="left")
    hi = np.searchsorted(cols["h1"], h1, side="right")
    counts = hi - lo
    which = np.repeat(np.arange(len(h1)), counts)  # candidate -> id
    starts = np.repeat(lo - np.cumsum(counts) + counts, counts)
    cand = starts + np.arange(len(which))  # candidate row numbers
    hit = (cols["h2"][cand] == h2[which]) & (cols["forget_at_ms"][cand] > dead_until_ms)
    cand, which = cand[hit], which[hit]
    order = np.argsort(cand, kind="stable")
    return cand[order].astype(np.int64), which[order]


def _merge_cols(old: dict[str, np.ndarray], new: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Both sorted runs in one, ``new``'s rows after ``old``'s among equal hashes."""
    n, m = len(old["h1"]), len(new["h1"])
    if m == 0:
        return old
    if n == 0:
        return new
    at = np.searchsorted(old["h1"], new["h1"], side="right") + np.arange(m)
    is_old = np.ones(n + m, dtype=bool)
    is_old[at] = False
    cols = {}
    for name, dt in _COLUMNS:
        out = np.empty(n + m, dtype=dt)
        out[at] = new[name]
        out[is_old] = old[name]
        cols[name] = out
    return cols
