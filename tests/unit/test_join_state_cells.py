"""The streaming join's state: three cells, each written only when a batch or timer
firing changed it, and versioned coders that refuse a value of another format."""

from __future__ import annotations

import pickle

import pyarrow as pa
import pytest
from apache_beam.utils.timestamp import Timestamp

from msewatch.transforms.join import kernel as jk
from msewatch.transforms.join.state import CELLS, TombstonesCoder, WaitingLabelsCoder
from msewatch.transforms.join.transform import _LABEL, _PRED, _StreamingJoinDoFn
from tests.harness import H, labels, predictions

CFG = jk.JoinConfig(label_ttl_ms=3 * H, orphan_ttl_ms=H)


class _Cell:
    """A ReadModifyWriteState that counts its writes and clears."""

    def __init__(self):
        self.value, self.writes, self.clears = None, 0, 0

    def read(self):
        return self.value

    def write(self, value):
        self.value, self.writes = value, self.writes + 1

    def clear(self):
        self.value, self.clears = None, self.clears + 1


class _Timer:
    def set(self, ts):
        self.ts = ts


def _run(dofn, cells, timer, tag, table):
    return list(dofn.process(("0000", (tag, table)), *cells, timer))


def _counts(cells):
    return [(c.writes, c.clears) for c in cells]


def test_a_batch_writes_only_the_cells_it_changed():
    dofn, cells, timer = _StreamingJoinDoFn(CFG), [_Cell() for _ in CELLS], _Timer()
    # 1. a prediction, nothing waiting: only the pending-predictions cell is written
    _run(dofn, cells, timer, _PRED, predictions([{"id": "a", "t": 0, "y": 1.0}]))
    assert _counts(cells) == [(1, 0), (0, 0), (0, 0)]
    # 2. its label joins it: the prediction leaves (cleared), a tombstone is written,
    # the label never waits (labels cell untouched)
    _run(dofn, cells, timer, _LABEL, labels([{"id": "a", "t": 5, "y": 0.5}]))
    assert _counts(cells) == [(1, 1), (0, 0), (1, 0)]
    # 3. a prediction of another id: the tombstones and labels are not rewritten
    _run(dofn, cells, timer, _PRED, predictions([{"id": "b", "t": 10, "y": 2.0}]))
    assert _counts(cells) == [(2, 1), (0, 0), (1, 0)]
    # 4. a label of no prediction waits: only the labels cell is written
    _run(dofn, cells, timer, _LABEL, labels([{"id": "zzz", "t": 11, "y": 0.0}]))
    assert _counts(cells) == [(2, 1), (1, 0), (1, 0)]
    # 5. a timer firing before anything is due writes nothing
    list(dofn.on_expiry(Timestamp(micros=20 * 1000), *cells, timer))
    assert _counts(cells) == [(2, 1), (1, 0), (1, 0)]
    # 6. at 2 h the label (11 ms + 1 h orphan TTL) is orphaned: labels cleared,
    # its tombstone added; prediction b (expires at 3 h + 10 ms) untouched
    list(dofn.on_expiry(Timestamp(micros=2 * H * 1000), *cells, timer))
    assert _counts(cells) == [(2, 1), (1, 1), (2, 0)]


def _state():
    state, _, _ = jk.step(
        jk.ShardState.empty(CFG),
        predictions([{"id": "a", "t": 0, "y": 1.0}, {"id": "b", "t": 1, "y": 2.0}]),
        labels([{"id": "a", "t": 5, "y": 0.5}, {"id": "zzz", "t": 6, "y": 0.0}]),
        CFG,
    )
    return state


@pytest.mark.parametrize("cell", range(3))
def test_each_cell_round_trips_starts_with_its_tag_and_refuses_another_version(cell):
    spec = CELLS[cell]
    state = _state()
    value = (state.preds, state.labels, state.tombs)[cell]
    encoded = spec.coder.encode(value)
    assert encoded[:4] == type(spec.coder).MAGIC and encoded[4] == 1
    back = spec.coder.decode(encoded)
    if cell < 2:
        assert back.equals(value)
    else:
        ids = pa.array(["a", "b", "zzz"])
        assert back.split(ids)[0].equals(value.split(ids)[0])
    newer = encoded[:4] + bytes([2]) + encoded[5:]
    name = type(spec.coder).__name__
    with pytest.raises(ValueError, match=f"{name}: state format version 2 is unknown"):
        spec.coder.decode(newer)


def test_a_value_of_another_cell_or_an_old_unversioned_value_is_refused():
    labels_bytes = WaitingLabelsCoder().encode(_state().labels)
    with pytest.raises(ValueError, match="TombstonesCoder: not a b'MWJT' state value"):
        TombstonesCoder().decode(labels_bytes)
    with pytest.raises(ValueError, match="WaitingLabelsCoder: not a"):
        WaitingLabelsCoder().decode(pickle.dumps({"old": 1}))
