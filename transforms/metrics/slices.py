"""Slices: which cohorts each example is counted in, computed per batch.

Every example counts in ``overall``, in ``model_version=<v>``, and in one slice per
configured spec (``--slice region`` or a cross ``--slice model_version,region``).
A slice name is ``key=value`` pairs joined by ``,`` in the spec's key order, e.g.
``model_version=v2,region=eu``. The name is an unambiguous encoding of the pairs
(:func:`slice_name`, :func:`parse_slice_name`): inside a value, ``%``, ``,`` and ``=``
are written ``%25``, ``%2C`` and ``%3D``, and a value that is literally ``__other__``
starts with ``%5F``, so a segment value can never forge a separator or the fold-over
slice, and two different segment tuples never share a name. A missing or empty
segment value is ``unknown``, like a missing ``model_version``.

Cardinality cap: per slice key, the first ``max_values`` distinct values a worker
sees keep their own name and later ones fold into ``__other__``, so a
high-cardinality attribute cannot explode the number of keys. The choice is made
per worker process in order of arrival: with one worker (DirectRunner) it is
deterministic for a given input order; on a multi-worker runner a value near the cap
may be folded on one worker and not on another. Set the cap above the real
cardinality of a key to keep every value.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from msewatch.schemas.records import segment_column

OVERALL = "overall"
OTHER = "__other__"
_BUILTIN_KEYS = ("model_version",)
_ESCAPES = {"%": "%25", ",": "%2C", "=": "%3D"}
_UNESCAPES = {v: k for k, v in _ESCAPES.items()} | {"%5F": "_"}
_ESCAPED = re.compile(r"%(?:25|2C|3D|5F)")


def escape_value(value: str) -> str:
    """A segment value as it appears in a slice name (see the module docstring)."""
    text = "".join(_ESCAPES.get(c, c) for c in value) if any(c in value for c in "%,=") else value
    return "%5F" + text[1:] if value == OTHER else text


def slice_name(pairs) -> str:
    """The canonical slice name of ``(key, value)`` pairs (``overall`` for none).

    ``value`` is a segment value, or :data:`OTHER` for values folded by the cap.
    """
    if not pairs:
        return OVERALL
    return ",".join(f"{k}={v if v is OTHER else escape_value(v)}" for k, v in pairs)


def parse_slice_name(name: str) -> tuple[tuple[str, str], ...]:
    """The ``(key, value)`` pairs of a slice name; ``()`` for ``overall``.

    Raises:
        ValueError: not a slice name (a part without ``=``, or an empty key).
    """
    if name == OVERALL:
        return ()
    pairs = []
    for part in name.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key or "=" in value:
            raise ValueError(
                f"bad slice name {name!r}: use overall or key=value pairs joined by ','; "
                "inside a value write % as %25, ',' as %2C and '=' as %3D"
            )
        pairs.append((key, _ESCAPED.sub(lambda m: _UNESCAPES[m.group(0)], value)))
    return tuple(pairs)


@dataclasses.dataclass(frozen=True)
class SliceConfig:
    """Slice specs.

    Attributes:
        specs: extra slice specs, each a tuple of keys (``("model_version", "region")``).
        max_values: per-key cardinality cap (values beyond it fold into ``__other__``).
    """

    specs: tuple[tuple[str, ...], ...] = ()
    max_values: int = 100

    def __post_init__(self):
        for spec in self.specs:
            if not spec or any(not k or any(c in k for c in "=,%") for k in spec):
                raise ValueError(f"bad slice spec {spec!r}: use keys like 'region' or 'a,b'")
            if len(set(spec)) != len(spec):
                raise ValueError(f"slice spec {','.join(spec)!r} repeats a key")
        if self.max_values < 1:
            raise ValueError(f"max slice values must be >= 1, got {self.max_values}")

    @classmethod
    def parse(cls, texts, max_values: int = 100) -> SliceConfig:
        """Builds from CLI texts such as ``["region", "model_version,region"]``."""
        specs = []
        for text in texts or ():
            spec = tuple(k.strip() for k in text.split(","))
            if spec not in specs and spec != _BUILTIN_KEYS:
                specs.append(spec)
        return cls(tuple(specs), max_values)

    def with_specs(self, extra) -> SliceConfig:
        """These specs plus those of ``extra`` whose key set none of them has yet."""
        specs, key_sets = list(self.specs), {frozenset(s) for s in self.all_specs}
        for spec in extra:
            if frozenset(spec) not in key_sets:
                specs.append(tuple(spec))
                key_sets.add(frozenset(spec))
        return dataclasses.replace(self, specs=tuple(specs))

    @property
    def all_specs(self) -> tuple[tuple[str, ...], ...]:
        """``()`` (overall), ``("model_version",)``, then the configured specs."""
        return ((), _BUILTIN_KEYS, *self.specs)

    @property
    def segment_keys(self) -> tuple[str, ...]:
        """Segment attributes the slices need, in first-use order."""
        keys: list[str] = []
        for spec in self.specs:
            for k in spec:
                if k not in _BUILTIN_KEYS and k not in keys:
                    keys.append(k)
        return tuple(keys)


def _column_name(key: str) -> str:
    return key if key in _BUILTIN_KEYS else segment_column(key)


def dense_unique(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` for integers, without sorting when
    their range is small (buckets of a batch, group codes): a bincount and a lookup."""
    if len(values) == 0:
        return values[:0], np.zeros(0, dtype=np.intp)
    low = int(values.min())
    span = int(values.max()) - low + 1
    if span > 4 * len(values) + 1024:
        return np.unique(values, return_inverse=True)
    offsets = values - low
    present = np.flatnonzero(np.bincount(offsets, minlength=span))
    lookup = np.empty(span, dtype=np.intp)
    lookup[present] = np.arange(len(present))
    return present + low, lookup[offsets]


class SliceCoder:
    """Turns a batch into per-row slice codes, one array per spec, with the cap."""

    def __init__(self, config: SliceConfig):
        self._config = config
        self._kept: dict[str, dict[str, None]] = {}

    def _key_codes(self, table: pa.Table, key: str) -> tuple[np.ndarray, list[str]]:
        encoded = pc.dictionary_encode(table.column(_column_name(key))).combine_chunks()
        values = encoded.dictionary.to_pylist()
        kept = self._kept.setdefault(key, {})
        names = []
        for v in values:  # distinct values only, not records
            if v in kept or len(kept) < self._config.max_values:
                kept.setdefault(v, None)
                names.append(escape_value(v))
            else:
                names.append(OTHER)
        return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), names

    def codes(self, table: pa.Table) -> list[tuple[np.ndarray, list[str]]]:
        """For each spec: ``(codes, names)`` with ``names[codes[i]]`` row i's slice."""
        n = table.num_rows
        out = []
        per_key = {}
        for spec in self._config.all_specs:
            if not spec:
                out.append((np.zeros(n, dtype=np.int64), [OVERALL]))
                continue
            combined = np.zeros(n, dtype=np.int64)
            parts = []
            for key in spec:
                if key not in per_key:
                    per_key[key] = self._key_codes(table, key)
                codes, names = per_key[key]
                combined = combined * len(names) + codes
                parts.append((key, names))
            uniq, inverse = dense_unique(combined)
            labels = []
            for c in uniq.tolist():  # distinct combinations only
                pieces = []
                for key, names in reversed(parts):
                    c, r = divmod(c, len(names))
                    pieces.append(f"{key}={names[r]}")
                labels.append(",".join(reversed(pieces)))
            # Folded values can make two combinations share a name: merge them.
            names_arr = np.array(labels, dtype=object)
            uniq_names, name_codes = np.unique(names_arr, return_inverse=True)
            out.append((name_codes[inverse].astype(np.int64), uniq_names.tolist()))
        return out
