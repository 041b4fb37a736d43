"""The buckets of :class:`~msewatch.transforms.metrics.sketch.ValueSketch`: the mapping
of a value to its bucket and back, and the arithmetic on stores (sorted int bucket keys
with int64 counts): collapsing, merging, counting a batch per group, packing counts.
The algorithm and its accuracy are in the ``sketch`` module's docstring.
"""

from __future__ import annotations

import math

import numpy as np

ALPHA = 0.005
"""Relative accuracy of every quantile estimate."""

MAX_BUCKETS = 4096
"""Most buckets kept per store (positive, negative)."""

_GAMMA = (1.0 + ALPHA) / (1.0 - ALPHA)
_LN_GAMMA = math.log(_GAMMA)
# Bucket keys of finite non-zero doubles lie in about [-74436, 70980]; the offset and
# bit widths below pack (group code, sign, key) into one non-negative int64.
_KEY_OFFSET = 1 << 17
_SIGN_SHIFT = 18
_CODE_SHIFT = 19
_KEY_MASK = (1 << _SIGN_SHIFT) - 1

# Merging stores whose keys span fewer buckets than this sums them with one bincount
# (float64 weights: exact for counts below 2**53).
_DENSE_MERGE_SPAN = 1 << 16
# from_groups counts (group, sign, bucket) cells with one bincount when there are at
# most this many cells in the span of the batch's keys (and not many more than values).
_DENSE_CELLS = 1 << 22

_EMPTY_KEYS = np.zeros(0, dtype=np.int64)
_EMPTY_COUNTS = np.zeros(0, dtype=np.int64)


def _bucket_keys(magnitudes: np.ndarray) -> np.ndarray:
    """Bucket key of each positive finite magnitude."""
    return np.ceil(np.log(magnitudes) / _LN_GAMMA).astype(np.int64)


def _bucket_value(key: int) -> float:
    """Representative value of bucket ``key``: ``2 * gamma**key / (gamma + 1)``."""
    # 2 / (gamma + 1) == 1 - alpha; exp of a sum avoids overflowing gamma**key first.
    with np.errstate(over="ignore"):
        return float(np.exp(key * _LN_GAMMA + math.log1p(-ALPHA)))


def bucket_values(index: np.ndarray) -> np.ndarray:
    """Representative value of each signed bucket index of :meth:`ValueSketch.histogram`."""
    index = np.asarray(index, dtype=np.int64)
    keys = np.abs(index) - _KEY_OFFSET - 1
    with np.errstate(over="ignore"):
        magnitude = np.exp(keys * _LN_GAMMA + math.log1p(-ALPHA))
    return np.where(index == 0, 0.0, np.sign(index) * magnitude)


def _collapse(keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Folds the lowest buckets into the lowest kept one so at most MAX_BUCKETS remain."""
    extra = keys.size - MAX_BUCKETS
    if extra <= 0:
        return keys, counts
    kept_counts = counts[extra:].copy()
    kept_counts[0] += counts[:extra].sum()
    return keys[extra:].copy(), kept_counts


def _merge_stores(stores: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Sums the counts of several stores bucket by bucket."""
    stores = [s for s in stores if s[0].size]
    if not stores:
        return _EMPTY_KEYS, _EMPTY_COUNTS
    if len(stores) == 1:
        return stores[0]
    keys = np.concatenate([s[0] for s in stores])
    counts = np.concatenate([s[1] for s in stores])
    lo, hi = int(keys.min()), int(keys.max())
    if hi - lo < _DENSE_MERGE_SPAN:  # the usual case: one bincount, no sort
        dense = np.bincount(keys - lo, weights=counts, minlength=hi - lo + 1)
        present = np.flatnonzero(dense)
        return _collapse(present + lo, dense[present].astype(np.int64))
    keys, inverse = np.unique(keys, return_inverse=True)
    summed = np.zeros(keys.size, dtype=np.int64)
    np.add.at(summed, inverse, counts)
    return _collapse(keys, summed)


def _store_item(keys: np.ndarray, counts: np.ndarray, index: int) -> float:
    """Representative magnitude of the ``index``-th smallest item (0-based) of a store."""
    bucket = int(np.searchsorted(np.cumsum(counts), index, side="right"))
    return _bucket_value(int(keys[bucket]))


def _bucket_counts(codes, negative, keys, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct packed ``(group code, sign, bucket key)`` cells, ascending, and the
    number of values in each: one ``np.bincount`` over a dense grid when the keys span a
    narrow range (the usual case: no sort), else ``np.unique``."""
    if keys.size:
        k_min, width = int(keys.min()), int(keys.max() - keys.min()) + 1
        if n_groups * 2 * width <= min(_DENSE_CELLS, 8 * keys.size + 4096):  # < a sort
            cell = (codes * 2 + negative) * width + (keys - k_min)
            dense = np.bincount(cell, minlength=n_groups * 2 * width)
            present = np.flatnonzero(dense)
            group_sign, offset = np.divmod(present, width)
            packed = (group_sign << _SIGN_SHIFT) | (offset + k_min + _KEY_OFFSET)
            return packed, dense[present]
    packed = (
        (codes << _CODE_SHIFT) | (negative.astype(np.int64) << _SIGN_SHIFT) | (keys + _KEY_OFFSET)
    )
    return np.unique(packed, return_counts=True)


def _pack_counts(counts: np.ndarray) -> bytes:
    """Counts as little-endian bytes in the narrowest unsigned width that holds them."""
    top = int(counts.max()) if counts.size else 0
    for limit, dtype, code in _WIDTHS:
        if top <= limit:
            return code + counts.astype(dtype).tobytes()
    return b"Q" + counts.astype("<u8").tobytes()


# (largest count, dtype, its type code): the widths _pack_counts tries, narrowest first
_WIDTHS = tuple((np.iinfo(d).max, d, np.dtype(d).char.encode()) for d in ("<u1", "<u2", "<u4"))


def _unpack_counts(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob[1:], dtype="<" + blob[:1].decode()).astype(np.int64)
