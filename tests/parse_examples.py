"""Record blocks for the parse tests: JSON lines, their byte offsets, a reference clock.

Shared by ``tests/unit/test_parse.py`` (JSON Lines and the shared rules) and the
per-format tests ``tests/unit/test_parse_csv.py``, ``test_parse_parquet.py`` and
``test_parse_pubsub_messages.py``.
"""

from __future__ import annotations

import datetime as dt
import json

from msewatch.transforms.parse.records import parse_predictions

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
OK = {"prediction_id": "ok", "event_time": 1_000, "y_pred": 1.0}


def utc_ms(text: str) -> int:
    """Reference: RFC 3339 -> epoch ms by Python's datetime (floors to the millisecond)."""
    return (dt.datetime.fromisoformat(text.upper()) - EPOCH) // dt.timedelta(milliseconds=1)


def line(obj) -> str:
    return obj if isinstance(obj, str) else json.dumps(obj)


def block(*objs) -> bytes:
    return ("\n".join(line(o) for o in objs) + "\n").encode()


def offsets(*objs) -> list[int]:
    """Byte offset of each line of ``block(*objs)``."""
    sizes = [len(line(o).encode()) + 1 for o in objs]
    return [sum(sizes[:i]) for i in range(len(objs))]


def preds(data, keys=(), fmt="jsonl", file_index=0, base=0, **kw):
    return parse_predictions(data, fmt, "src", file_index, base, keys, **kw)


def encode(lines: list[str]) -> bytes:
    """Lines as one block; lone surrogates become the invalid UTF-8 bytes they stand for."""
    return ("\n".join(lines) + "\n").encode("utf-8", errors="surrogateescape")
