"""A mergeable quantile sketch of values (DDSketch-style log buckets): :class:`ValueSketch`.

One definition serves every distribution msewatch keeps per window and slice: label lag
seconds (``label_lag_p*_s``) and the value distributions of ``y_pred``, ``y_true`` and
features (``y_pred_sketch``, ... in the metrics table, read by the drift SLIs). In a
table a sketch is bytes (:meth:`ValueSketch.to_bytes`, a leading version byte);
:meth:`ValueSketch.buckets` gives its bucket values and counts (for binning, drift).

A value ``x != 0`` falls in bucket ``k = ceil(log(|x|) / log(gamma))`` with
``gamma = (1 + alpha) / (1 - alpha)``; the bucket stands for the value
``2 * gamma**k / (gamma + 1)``, which is within ``alpha`` relative error of every value
in the bucket ``(gamma**(k-1), gamma**k]`` (Masson, Rim & Lee, "DDSketch", VLDB 2019).
With ``alpha = 0.005`` a quantile is within 0.5 % (so well within 1 %) of the true
order statistic ``sorted(values)[floor(q * (n - 1))]`` (numpy's ``method="lower"``).

Values may be negative (label lag under clock skew, predictions), so the
sketch keeps three stores: the positive values, ``|x|`` of the negative values, and a
count of exact zeros. Each store is a pair of numpy arrays (sorted int bucket keys,
int64 counts), never a dict, so merging is one ``np.unique`` and pickling is a few
byte strings. The exact minimum and maximum are kept too: ``max`` is exact, ``q = 0``
and ``q = 1`` return the exact extremes, and other estimates are clamped into
``[min, max]``.

Size is bounded: a store holds at most :data:`MAX_BUCKETS` buckets; beyond that the
buckets nearest zero are folded into the lowest kept bucket (DDSketch's
"collapsing lowest" store). 4096 buckets span a ratio of about 6e17 between the
smallest and largest ``|x|`` (a millisecond to far longer than any label TTL), so in
practice nothing collapses; if it does, only quantiles that land in the folded
buckets lose accuracy, and merging stays exact (``merge`` of collapsed sketches
equals the collapsed sketch of the union).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable

import numpy as np

from msewatch.transforms.metrics.sketch_buckets import (  # noqa: F401 (ALPHA, MAX_BUCKETS, bucket_values: the API)
    _CODE_SHIFT,
    _EMPTY_COUNTS,
    _EMPTY_KEYS,
    _KEY_MASK,
    _KEY_OFFSET,
    _SIGN_SHIFT,
    ALPHA,
    MAX_BUCKETS,
    _bucket_counts,
    _bucket_keys,
    _collapse,
    _merge_stores,
    _pack_counts,
    _store_item,
    _unpack_counts,
    bucket_values,
)

SKETCH_VERSION = 1
"""Leading byte of :meth:`ValueSketch.to_bytes`; :meth:`ValueSketch.from_bytes` refuses others."""

# version, zero count, min, max, positive buckets, negative buckets (little-endian).
_HEADER = struct.Struct("<BqddII")


def _restore(zero_count, lo, hi, pos_keys, pos_counts, neg_keys, neg_counts) -> ValueSketch:
    """Unpickles a :class:`ValueSketch` (see ``ValueSketch.__reduce__``)."""
    return ValueSketch(
        np.frombuffer(pos_keys, dtype="<i4").astype(np.int64),
        _unpack_counts(pos_counts),
        np.frombuffer(neg_keys, dtype="<i4").astype(np.int64),
        _unpack_counts(neg_counts),
        zero_count,
        lo,
        hi,
    )


class ValueSketch:
    """Mergeable quantile sketch of finite floats (negative, zero or positive).

    Immutable: :meth:`merge` returns a new sketch. Build one with :meth:`empty`,
    :meth:`from_values` or :meth:`from_groups`; the constructor is internal.
    """

    __slots__ = ("_pos_keys", "_pos_counts", "_neg_keys", "_neg_counts", "_zero", "_min", "_max")

    def __init__(self, pos_keys, pos_counts, neg_keys, neg_counts, zero_count, lo, hi):
        self._pos_keys = pos_keys
        self._pos_counts = pos_counts
        self._neg_keys = neg_keys
        self._neg_counts = neg_counts
        self._zero = int(zero_count)
        self._min = float(lo)
        self._max = float(hi)

    @classmethod
    def empty(cls) -> ValueSketch:
        """The sketch of no values."""
        return cls(_EMPTY_KEYS, _EMPTY_COUNTS, _EMPTY_KEYS, _EMPTY_COUNTS, 0, math.inf, -math.inf)

    @classmethod
    def from_values(cls, values: np.ndarray) -> ValueSketch:
        """Sketch of an array of finite values.

        Raises:
            ValueError: if a value is NaN or infinite (the caller filters those).
        """
        values = np.asarray(values, dtype=np.float64).ravel()
        return cls.from_groups(np.zeros(values.size, dtype=np.int64), values, 1)[0]

    @classmethod
    def from_groups(cls, codes: np.ndarray, values: np.ndarray, n_groups: int) -> list[ValueSketch]:
        """One sketch per group, built with one ``np.unique`` over (code, bucket) pairs.

        Args:
            codes: Group code of each value, ints in ``[0, n_groups)``.
            values: Finite float values, same length as ``codes``.
            n_groups: Number of groups; groups without values get an empty sketch.

        Returns:
            ``n_groups`` sketches, index = group code.

        Raises:
            ValueError: on mismatched lengths, codes out of range or non-finite values.
        """
        codes = np.asarray(codes, dtype=np.int64).ravel()
        values = np.asarray(values, dtype=np.float64).ravel()
        if codes.shape != values.shape:
            raise ValueError(f"codes ({codes.size}) and values ({values.size}) differ in length")
        if n_groups < 0 or n_groups >= 1 << (63 - _CODE_SHIFT):
            raise ValueError(f"n_groups must be in [0, 2**44), got {n_groups}")
        if codes.size and (codes.min() < 0 or codes.max() >= n_groups):
            raise ValueError(f"codes must be in [0, {n_groups})")
        if not np.isfinite(values).all():
            raise ValueError("ValueSketch takes finite values only; filter NaN and inf first")

        hi = np.full(n_groups, -np.inf)
        lo = np.full(n_groups, np.inf)
        np.maximum.at(hi, codes, values)
        np.minimum.at(lo, codes, values)
        is_zero = values == 0
        zeros = np.bincount(codes[is_zero], minlength=n_groups)
        if zeros.any():  # exact zeros have no bucket
            codes, values = codes[~is_zero], values[~is_zero]
        uniq, counts = _bucket_counts(codes, values < 0, _bucket_keys(np.abs(values)), n_groups)
        keys = (uniq & _KEY_MASK) - _KEY_OFFSET
        group_base = np.arange(n_groups + 1, dtype=np.int64) << _CODE_SHIFT
        starts = np.searchsorted(uniq, group_base)
        mids = np.searchsorted(uniq, group_base[:-1] | (1 << _SIGN_SHIFT))
        counts = counts.astype(np.int64)

        # One object per group, no loop over values; on Python ints (numpy scalars are
        # slow to index), collapsing only if some store is over MAX_BUCKETS.
        wide = n_groups and max(np.diff(starts).max(), 0) > MAX_BUCKETS
        store = _collapse if wide else lambda k, c: (k, c)
        bounds = zip(starts[:-1].tolist(), mids.tolist(), starts[1:].tolist(), strict=True)
        extras = zip(zeros.tolist(), lo.tolist(), hi.tolist(), strict=True)
        return [
            cls(*store(keys[a:m], counts[a:m]), *store(keys[m:b], counts[m:b]), *extra)
            for (a, m, b), extra in zip(bounds, extras, strict=True)
        ]

    def merge(self, other: ValueSketch) -> ValueSketch:
        """The sketch of both inputs' values (neither input is modified)."""
        return ValueSketch.merge_all((self, other))

    @classmethod
    def merge_all(cls, sketches: Iterable[ValueSketch]) -> ValueSketch:
        """The sketch of the union of any iterable (list, generator, ...) of sketches."""
        sketches = list(sketches)
        if not sketches:
            return cls.empty()
        pos = _merge_stores([(s._pos_keys, s._pos_counts) for s in sketches])
        neg = _merge_stores([(s._neg_keys, s._neg_counts) for s in sketches])
        return cls(
            *pos,
            *neg,
            sum(s._zero for s in sketches),
            min(s._min for s in sketches),
            max(s._max for s in sketches),
        )

    @property
    def count(self) -> int:
        """Number of values sketched."""
        return int(self._pos_counts.sum() + self._neg_counts.sum()) + self._zero

    @property
    def max(self) -> float:
        """Exact largest value (NaN when empty)."""
        return self._max if self.count else math.nan

    @property
    def min(self) -> float:
        """Exact smallest value (NaN when empty)."""
        return self._min if self.count else math.nan

    @property
    def num_buckets(self) -> int:
        """Buckets held (positive plus negative store): the sketch's size."""
        return int(self._pos_keys.size + self._neg_keys.size)

    def quantile(self, q: float) -> float:
        """Estimate of the order statistic ``sorted(values)[floor(q * (count - 1))]``.

        Args:
            q: Quantile in ``[0, 1]``.

        Returns:
            The estimate, within ``ALPHA`` relative error; NaN when the sketch is empty.

        Raises:
            ValueError: if ``q`` is not in ``[0, 1]``.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile q must be in [0, 1], got {q}")
        n = self.count
        if n == 0:
            return math.nan
        rank = math.floor(q * (n - 1))
        if rank == 0:
            return self._min
        if rank == n - 1:
            return self._max
        n_neg = int(self._neg_counts.sum())
        if rank < n_neg:
            # The rank-th smallest negative has the (n_neg - 1 - rank)-th smallest |x|.
            value = -_store_item(self._neg_keys, self._neg_counts, n_neg - 1 - rank)
        elif rank < n_neg + self._zero:
            value = 0.0
        else:
            value = _store_item(self._pos_keys, self._pos_counts, rank - n_neg - self._zero)
        return min(max(value, self._min), self._max)

    def histogram(self) -> tuple[np.ndarray, np.ndarray]:
        """The buckets as signed indices (ascending in value) and their counts.

        The index of positive bucket ``k`` is ``k + 2**17 + 1``, of the negative one
        ``-(k + 2**17 + 1)``, of exact zeros 0: sketches of any values share one index
        space, so histograms of many sketches line up (the drift statistics,
        :mod:`msewatch.transforms.slo.drift`). :func:`bucket_values` maps an index to its
        bucket's representative value.
        """
        neg = -(self._neg_keys[::-1] + _KEY_OFFSET + 1)
        pos = self._pos_keys + _KEY_OFFSET + 1
        zero = np.zeros(1 if self._zero else 0, np.int64)
        zero_count = np.full(zero.size, self._zero, np.int64)
        counts = np.concatenate([self._neg_counts[::-1], zero_count, self._pos_counts])
        return np.concatenate([neg, zero, pos]), counts.astype(np.int64)

    def buckets(self) -> tuple[np.ndarray, np.ndarray]:
        """The sketch as a weighted sample: bucket values (ascending) and their counts.

        Each bucket's representative value (:func:`bucket_values`), clamped into
        ``[min, max]``, with the number of values in it; empty arrays when empty.
        """
        index, counts = self.histogram()
        values = bucket_values(index)
        return (np.clip(values, self._min, self._max) if values.size else values), counts

    def to_bytes(self) -> bytes:
        """The sketch as bytes (a BYTES column): :data:`SKETCH_VERSION`, then the stores.

        Layout (little-endian): version u8, zero count i64, min f64, max f64, number of
        positive and of negative buckets u32 each, then per store its keys (i32) and its
        counts (a width code and the narrowest unsigned ints that hold them).
        """
        header = _HEADER.pack(
            SKETCH_VERSION,
            self._zero,
            self._min,
            self._max,
            self._pos_keys.size,
            self._neg_keys.size,
        )
        return b"".join(
            (
                header,
                self._pos_keys.astype("<i4").tobytes(),
                _pack_counts(self._pos_counts),
                self._neg_keys.astype("<i4").tobytes(),
                _pack_counts(self._neg_counts),
            )
        )

    @classmethod
    def from_bytes(cls, blob: bytes) -> ValueSketch:
        """The sketch :meth:`to_bytes` wrote.

        Raises:
            ValueError: ``blob`` is not a sketch, or of a version this release cannot read.
        """
        blob = bytes(blob)
        if not blob or blob[0] != SKETCH_VERSION:
            found = blob[0] if blob else "none (empty bytes)"
            raise ValueError(
                f"value sketch version {found} is not readable here (this release reads "
                f"version {SKETCH_VERSION}); was the table written by a newer msewatch?"
            )
        try:
            _, zero, lo, hi, n_pos, n_neg = _HEADER.unpack_from(blob)
            at = _HEADER.size
            stores = []
            for n in (n_pos, n_neg):
                keys = np.frombuffer(blob, "<i4", n, at).astype(np.int64)
                at += 4 * n
                width = np.dtype("<" + chr(blob[at])).itemsize
                stores += [keys, _unpack_counts(blob[at : at + 1 + width * n])]
                at += 1 + width * n
        except (struct.error, ValueError, TypeError, IndexError) as err:
            raise ValueError(f"malformed value sketch bytes ({len(blob)} bytes): {err}") from err
        if at != len(blob):
            raise ValueError(f"malformed value sketch bytes: {len(blob) - at} bytes left over")
        return cls(*stores, zero, lo, hi)

    def __reduce__(self):
        return (
            _restore,
            (
                self._zero,
                self._min,
                self._max,
                self._pos_keys.astype("<i4").tobytes(),
                _pack_counts(self._pos_counts),
                self._neg_keys.astype("<i4").tobytes(),
                _pack_counts(self._neg_counts),
            ),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ValueSketch):
            return NotImplemented
        return (
            self._zero == other._zero
            and self._min == other._min
            and self._max == other._max
            and np.array_equal(self._pos_keys, other._pos_keys)
            and np.array_equal(self._pos_counts, other._pos_counts)
            and np.array_equal(self._neg_keys, other._neg_keys)
            and np.array_equal(self._neg_counts, other._neg_counts)
        )

    __hash__ = None

    def __repr__(self) -> str:
        return (
            f"ValueSketch(count={self.count}, min={self.min}, max={self.max}, "
            f"buckets={self.num_buckets})"
        )
