"""Pub/Sub messages: one JSON record per message, parsed a batch of messages at a time.

A message body holds the fields of one JSON Lines line (see :mod:`.jsonl`). Every
message is one record: an empty (whitespace-only) message, or one holding a newline,
is ``unparseable``. The bodies of the other messages are joined into one JSON Lines
block and decoded as a file's would be. Message ``i`` of a batch has position and
ingest position ``base_sequence + i`` (its arrival sequence); a label without
label_time takes its message's publish time. Dead letters carry the message id and
the attributes as a JSON object.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from msewatch.schemas.records import LABEL, RecordType
from msewatch.transforms.parse.jsonl import decode_jsonl
from msewatch.transforms.parse.normalized import Decoded, Spec, payload_text
from msewatch.transforms.parse.validate import assemble

_WHITESPACE = np.array([9, 10, 13, 32], np.uint8)  # JSON whitespace: \t \n \r space


def parse_json_messages(
    payloads: Sequence[bytes],
    record_type: str,
    source: str,
    base_sequence: int,
    segment_keys: tuple[str, ...] = (),
    message_ids: Sequence[str | None] | None = None,
    attributes: Sequence[dict | None] | None = None,
    publish_time_ms: Sequence[int | None] | None = None,
    features: tuple[str, ...] = (),
) -> tuple[pa.Table, pa.Table]:
    """Parses Pub/Sub messages, one JSON record each.

    Args:
        payloads: message bodies.
        record_type: ``"prediction"`` or ``"label"``.
        source: subscription name, copied to dead letters.
        base_sequence: arrival sequence of ``payloads[0]``.
        segment_keys: segment attributes to keep (predictions).
        message_ids: one id per message, or None.
        attributes: one attribute dict per message, or None.
        publish_time_ms: publish times (UTC epoch ms), the default label_time.
        features: feature names of predictions to keep (``feat.<name>`` columns).

    Returns:
        (records, dead letters), as :func:`.records.parse_predictions` or
        :func:`.records.parse_labels`.

    Raises:
        ValueError: an unknown ``record_type``, or a per-message list that is not one
            value per payload.
    """
    kind = RecordType.of(record_type)
    n = len(payloads)
    per_message = (
        ("message_ids", message_ids),
        ("attributes", attributes),
        ("publish_time_ms", publish_time_ms),
    )
    for name, values in per_message:
        if values is not None and len(values) != n:
            raise ValueError(f"{name} has {len(values)} values for {n} payloads")
    spec = Spec.of(kind, segment_keys, features)
    decoded = _decode_messages(payloads, spec, base_sequence)
    default = None
    if kind is LABEL and publish_time_ms is not None:
        default = pa.array(publish_time_ms, pa.int64())
    return assemble(decoded, spec, source, 0, default, message_ids, attributes)


def _decode_messages(payloads: Sequence[bytes], spec: Spec, base_sequence: int) -> Decoded:
    """Decodes the messages as one JSON Lines block; rejects empty and multi-line ones."""
    n = len(payloads)
    joined = b"\n".join(payloads)
    sizes = np.fromiter(map(len, payloads), np.int64, n)
    starts = np.cumsum(sizes + 1) - (sizes + 1)  # each payload plus its separator
    arr = np.frombuffer(joined, np.uint8)
    newlines = np.concatenate(([0], np.cumsum(arr == 10)))
    solid = np.concatenate(([0], np.cumsum(~np.isin(arr, _WHITESPACE))))
    split = newlines[starts + sizes] - newlines[starts] > 0
    blank = solid[starts + sizes] - solid[starts] == 0
    good = np.flatnonzero(~split & ~blank)
    block = joined if good.size == n else b"\n".join(itertools.compress(payloads, ~split & ~blank))
    part = decode_jsonl(block, 0, spec)
    bad = np.flatnonzero(split | blank)
    return Decoded(
        offsets=np.arange(n, dtype=np.int64) + base_sequence,
        rows=good[part.rows],
        norm=part.norm,
        bad_rows=np.concatenate((bad, good[part.bad_rows])),
        bad_details=["message contains a newline" if split[i] else "empty message" for i in bad]
        + part.bad_details,
        raw=lambda idx: [payload_text(payloads[i]) for i in idx.tolist()],
    )
