"""The streaming join's state cells and their versioned coders.

A shard (hash bucket) keeps three ``ReadModifyWriteState`` cells, so a batch or a
timer firing reads them all but writes (re-encodes) only the ones it changed: a
prediction-only batch that joins nothing rewrites the pending predictions, never the
waiting labels or the tombstones.

* ``pending_predictions``: Arrow IPC stream (:class:`PendingPredictionsCoder`, tag ``MWJP``);
* ``waiting_labels``: Arrow IPC stream (:class:`WaitingLabelsCoder`, tag ``MWJL``);
* ``tombstones``: the :class:`~msewatch.transforms.join.tombstones.TombSet` packed
  columns (:class:`TombstonesCoder`, tag ``MWJT``).

Every value starts with its tag and format version
(:class:`~msewatch.schemas.coders.VersionedStateCoder`).
"""

from __future__ import annotations

import pyarrow as pa
from apache_beam.transforms import userstate

from msewatch.schemas.coders import ArrowStateCoder, VersionedStateCoder
from msewatch.transforms.join.kernel import JoinConfig, ShardState
from msewatch.transforms.join.tombstones import TombSet


class PendingPredictionsCoder(ArrowStateCoder):
    """The shard's pending predictions (pending schema)."""

    MAGIC = b"MWJP"
    VERSION = 1


class WaitingLabelsCoder(ArrowStateCoder):
    """The shard's waiting labels (``kernel.WAITING_LABELS``)."""

    MAGIC = b"MWJL"
    VERSION = 1


class TombstonesCoder(VersionedStateCoder):
    """The shard's tombstones: ``TombSet.write_to`` columns, read zero-copy."""

    MAGIC = b"MWJT"
    VERSION = 1

    def write_payload(self, sink: pa.NativeFile, value: TombSet) -> None:
        value.write_to(sink)

    def read_payload(self, payload: memoryview) -> TombSet:
        return TombSet.from_bytes(payload)


CELL_CODERS = (PendingPredictionsCoder, WaitingLabelsCoder, TombstonesCoder)
"""The coders of the cells, in :class:`ShardState` field order."""

CELLS = tuple(
    userstate.ReadModifyWriteStateSpec(name, coder())
    for name, coder in zip(
        ("pending_predictions", "waiting_labels", "tombstones"), CELL_CODERS, strict=True
    )
)


def _rows(value) -> int:
    return value.num_rows


def read_shard(cells, config: JoinConfig) -> tuple[ShardState, tuple]:
    """``(the shard's state, the raw cell values)``; an absent cell reads as empty."""
    raw = tuple(cell.read() for cell in cells)
    empty = ShardState.empty(config)
    defaults = (empty.preds, empty.labels, empty.tombs)
    values = [d if r is None else r for r, d in zip(raw, defaults, strict=True)]
    return ShardState(*values), raw


def write_shard(cells, raw: tuple, shard: ShardState) -> None:
    """Writes the cells whose value changed (the kernel keeps an unchanged part as the
    same object), clears the ones that became empty, leaves the others alone."""
    for cell, old, new in zip(cells, raw, (shard.preds, shard.labels, shard.tombs), strict=True):
        if new is old:
            continue
        if _rows(new):
            cell.write(new)
        elif old is not None:
            cell.clear()
