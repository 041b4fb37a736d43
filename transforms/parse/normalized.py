"""Normalized columns: what every format decoder hands to :mod:`.validate`.

Each format decoder (:mod:`.jsonl`, :mod:`.csv`, :mod:`.parquet`) turns one block into a
:class:`Decoded`: the records' ingest offsets, the records it could not parse, and
*normalized columns* for the others. Normalized columns use role names, the same for
predictions and labels: ``id``, ``time`` (text), ``time_ms`` (already decoded), ``y``,
``mv`` (model_version), ``w`` (weight), ``seg.<key>``, ``feat.<name>`` (a configured
feature's value, float64). A role name followed by ``!``
holds the offending value, rendered as text, of a record whose field has a type that
cannot be right (a JSON string y, a numeric prediction_id, a feature value that is not a
number...); ``seg!`` and ``feat!`` hold a ``segments`` / ``features`` value that is not an
object (map). ``time_shown`` (optional)
holds a decoded ``time_ms`` as the input wrote it, where that time lies outside the
accepted range (for the dead letter's detail). A null ``y`` means absent: a null y
value is already NaN. Checking the values is left to :mod:`.validate`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from msewatch.schemas.records import PREDICTION, RecordType


class Spec(NamedTuple):
    """Field names of one record type (hashable: decoders are cached per spec)."""

    record_type: str
    time: str
    y: str
    segment_keys: tuple[str, ...]
    features: tuple[str, ...] = ()

    @classmethod
    def of(cls, record_type: RecordType, segment_keys=(), features=()) -> Spec:
        """The spec of ``record_type``; segment keys and features are dropped where it
        has none (labels)."""
        keys = tuple(segment_keys) if record_type.has_segments else ()
        names = tuple(features) if record_type.has_segments else ()
        return cls(record_type.name, record_type.time_field, record_type.value_field, keys, names)

    @property
    def is_prediction(self) -> bool:
        return self.record_type == PREDICTION.name

    @property
    def fields(self) -> dict[str, str]:
        """Role name -> source field name."""
        roles = {"id": "prediction_id", "time": self.time, "y": self.y}
        if self.is_prediction:
            roles.update(mv="model_version", w="weight")
        return roles

    def norm_schema(self) -> pa.Schema:
        """Normalized columns, as produced by the JSON decoder."""
        types = {"id": pa.string(), "time": pa.string(), "y": pa.float64()}
        if self.is_prediction:
            types.update(mv=pa.string(), w=pa.float64())
        cols = []
        for role, typ in types.items():
            cols += [(role, typ), (role + "!", pa.string())]
        if self.is_prediction:
            cols.append(("seg!", pa.string()))
            cols += [("seg." + k, pa.string()) for k in self.segment_keys]
            if self.features:
                cols.append(("feat!", pa.string()))
            for name in self.features:
                cols += [("feat." + name, pa.float64()), ("feat." + name + "!", pa.string())]
        return pa.schema(cols)


class Decoded(NamedTuple):
    """One decoded block; record indices count records (not lines) from 0."""

    offsets: np.ndarray  # int64 per record: byte offset of its line, or row number
    rows: np.ndarray  # int64 record index of each row of `norm`
    norm: dict[str, pa.Array]
    bad_rows: np.ndarray  # int64 record indices that could not be parsed
    bad_details: list[str]
    raw: Callable[[np.ndarray], list[str]]  # record indices -> raw payload text


def matches(arr: pa.Array, pattern: str, regex: bool = True) -> np.ndarray:
    """Whether each value of ``arr`` matches ``pattern`` (null: False), as numpy."""
    fn = pc.match_substring_regex if regex else pc.match_substring
    return fn(arr, pattern).fill_null(False).to_numpy(zero_copy_only=False)


def json_text(row: dict) -> str:
    """A row (dict) as a JSON object, for ``raw_payload`` (:func:`payload_text`)."""
    return payload_text(json.dumps(row, ensure_ascii=False, default=str))


RAW_PAYLOAD_BYTES = 1 << 16
"""``raw_payload`` keeps at most this much of a record, then says how long it was."""


def payload_text(data: bytes | str) -> str:
    """A record as text for ``raw_payload``: its first :data:`RAW_PAYLOAD_BYTES` bytes
    of UTF-8, and its length when it is longer."""
    if isinstance(data, str):
        if len(data) <= RAW_PAYLOAD_BYTES // 4:  # short enough in any encoding
            return data
        data = data.encode("utf-8", errors="surrogatepass")
    if len(data) <= RAW_PAYLOAD_BYTES:
        return data.decode("utf-8", errors="replace")
    head = data[:RAW_PAYLOAD_BYTES].decode("utf-8", errors="ignore")
    return f"{head}... [cut: the line has {len(data)} bytes]"
