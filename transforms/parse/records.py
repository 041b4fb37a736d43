"""Parsing prediction and label records from files: one entry point per record type.

:func:`parse_predictions` and :func:`parse_labels` take one block of a file (whole
lines of JSON Lines or CSV, or a Parquet row group), decode it with the module of its
format (:mod:`.jsonl`, :mod:`.csv`, :mod:`.parquet`) and check it with the shared
rules of :mod:`.validate`. They return two Arrow tables: the valid records and the
rejected ones (dead letters, each with a reason). Pub/Sub messages have their own
entry point, :func:`.pubsub_messages.parse_json_messages`.

Segment attributes: in JSON from the ``segments`` object (numbers and booleans become
their JSON text); in CSV from any other column; in Parquet from a struct or map
``segments`` column, else from top-level columns named like the keys.

Features (only the names the run reads, ``features``; others are ignored): in JSON from
the ``features`` object; in CSV from columns named ``features.<name>``; in Parquet from
a struct or map ``features`` column, else from top-level columns ``features.<name>``.

Conservation: every record becomes exactly one valid row or one dead letter. A blank
(whitespace-only) line of a file is not a record.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from msewatch.schemas.records import LABEL, PREDICTION
from msewatch.transforms.parse.csv import decode_csv, parse_csv_header
from msewatch.transforms.parse.jsonl import decode_jsonl
from msewatch.transforms.parse.normalized import Decoded, Spec
from msewatch.transforms.parse.parquet import decode_parquet
from msewatch.transforms.parse.validate import assemble

FORMATS = ("jsonl", "csv", "parquet")


def parse_predictions(
    block: bytes | pa.Table,
    fmt: str,
    source: str,
    file_index: int,
    base_offset: int,
    segment_keys: tuple[str, ...] = (),
    *,
    csv_header: bytes | None = None,
    features: tuple[str, ...] = (),
) -> tuple[pa.Table, pa.Table]:
    """Parses and validates one block of prediction records.

    Args:
        block: whole lines of a JSON Lines or CSV file (bytes), or a Parquet row group.
        fmt: ``"jsonl"``, ``"csv"`` or ``"parquet"``.
        source: file path, copied to dead letters.
        file_index: index of the file among the job's inputs, for ``position``.
        base_offset: byte offset of ``block`` in its file, or the row number of the
            row group's first row for Parquet.
        segment_keys: segment attributes to keep, as ``seg.<key>`` columns.
        csv_header: the CSV file's header line (required for ``"csv"``).
        features: feature names to keep, as float64 ``feat.<name>`` columns
            (:func:`~msewatch.schemas.features.check_features`).

    Returns:
        (predictions with schema ``PREDICTION.batch_schema(segment_keys, features)``,
        dead letters with schema ``DEAD_LETTER``).

    Raises:
        ValueError: unknown ``fmt``, or a CSV block without ``csv_header``.
    """
    spec = Spec.of(PREDICTION, segment_keys, features)
    decoded = _decode(block, fmt, spec, base_offset, csv_header)
    return assemble(decoded, spec, source, file_index)


def parse_labels(
    block: bytes | pa.Table,
    fmt: str,
    source: str,
    file_index: int,
    base_offset: int,
    default_label_time_ms: Sequence[int | None] | np.ndarray | pa.Array | None = None,
    *,
    csv_header: bytes | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Parses and validates one block of label records.

    Args:
        block, fmt, source, file_index, base_offset, csv_header: as for
            :func:`parse_predictions`.
        default_label_time_ms: one UTC epoch-ms value per record (blank lines are not
            records), used where label_time is absent; None makes label_time required.

    Returns:
        (labels with schema ``LABELS``, dead letters with schema ``DEAD_LETTER``).

    Raises:
        ValueError: unknown ``fmt``, a CSV block without ``csv_header``, or
            ``default_label_time_ms`` not one value per record.
    """
    spec = Spec.of(LABEL)
    decoded = _decode(block, fmt, spec, base_offset, csv_header)
    default = None
    if default_label_time_ms is not None:
        default = pa.array(default_label_time_ms, pa.int64())
        if len(default) != len(decoded.offsets):
            raise ValueError(
                f"default_label_time_ms has {len(default)} values for "
                f"{len(decoded.offsets)} records"
            )
    return assemble(decoded, spec, source, file_index, default)


def _decode(block, fmt: str, spec: Spec, base_offset: int, csv_header) -> Decoded:
    """Decodes a block with the decoder of its format."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}; got {fmt!r}")
    if fmt == "parquet":
        if not isinstance(block, pa.Table):
            raise ValueError("a parquet block must be a pyarrow.Table (one row group)")
        return decode_parquet(block, base_offset, spec)
    block = bytes(block)
    if fmt == "jsonl":
        return decode_jsonl(block, base_offset, spec)
    if csv_header is None:
        raise ValueError("a csv block needs csv_header, the file's header line")
    return decode_csv(block, base_offset, spec, parse_csv_header(csv_header))


__all__ = ["FORMATS", "parse_labels", "parse_predictions"]
