"""TombSet (the join's hashed, sorted tombstones) against a plain list of rows."""

from __future__ import annotations

from unittest import mock

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from msewatch.transforms.join import tombstones
from msewatch.transforms.join.state import TombstonesCoder
from msewatch.transforms.join.tombstones import TOMBS_SCHEMA, TombSet

_row = st.tuples(  # in TOMBS_SCHEMA order
    st.integers(0, 30).map(lambda i: f"id-{i}"),  # few ids: repeats are common
    st.integers(0, 2**64 - 1),  # version_hash
    st.booleans(),  # label_seen
    st.floats(-1e6, 1e6),  # y_true
    st.integers(0, 10**12),  # label_time_ms
    st.integers(0, 1000),  # forget_at_ms
    st.booleans(),  # is_prediction
)
_FORGET = TOMBS_SCHEMA.names.index("forget_at_ms")


def _table(rows) -> pa.Table:
    cols = list(zip(*rows, strict=True)) if rows else [[] for _ in TOMBS_SCHEMA.names]
    return pa.table(
        dict(zip(TOMBS_SCHEMA.names, (list(c) for c in cols), strict=True)), schema=TOMBS_SCHEMA
    )


def _rows(table: pa.Table) -> list[tuple]:
    return list(zip(*(table.column(n).to_pylist() for n in TOMBS_SCHEMA.names), strict=True))


def _state_cell_round_trip(tombs: TombSet) -> TombSet:
    """The tombstones as a runner's state backend gives them back: through the
    join's TombstonesCoder (written by TombSet.write_to, read by TombSet.from_bytes)."""
    coder = TombstonesCoder()
    return coder.decode(coder.encode(tombs))


def _all(tombs: TombSet) -> list[tuple]:
    ids = pa.array([f"id-{i}" for i in range(31)])
    table, rest = tombs.split(ids)
    assert rest.num_rows == 0
    return _rows(table)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.lists(_row, max_size=12), max_size=5),
    st.sets(st.integers(0, 30), max_size=10),
    st.integers(0, 1000),
)
def test_split_merge_and_forget_equal_a_list_of_rows(batches, wanted, now):
    _check_against_rows(batches, wanted, now, round_trip=True)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.lists(_row, max_size=12), max_size=5),
    st.sets(st.integers(0, 30), max_size=10),
    st.integers(0, 1000),
    st.integers(0, 8),
)
def test_rows_in_the_main_and_the_recent_run_equal_a_list_of_rows(batches, wanted, now, limit):
    # A tiny limit folds the recent run into the main run after some merges and not
    # after others, so rows of one id lie in both runs (no round trip: that folds all).
    with mock.patch.object(tombstones, "_recent_limit", lambda n_main: limit):
        _check_against_rows(batches, wanted, now, round_trip=False)


def _check_against_rows(batches, wanted, now, *, round_trip: bool):
    # Reference: rows in insertion order; a lookup returns an id's rows oldest first.
    reference: list[tuple] = []
    tombs = TombSet.empty()
    for batch in batches:
        tombs = tombs.merge(_table(batch))
        reference += batch
    if round_trip:
        tombs = _state_cell_round_trip(tombs)
    assert tombs.num_rows == len(reference)

    wanted_ids = {f"id-{i}" for i in wanted}
    near, rest = tombs.split(pa.array(sorted(wanted_ids), type=pa.string()))
    assert sorted(_rows(near)) == sorted(r for r in reference if r[0] in wanted_ids)
    for i in wanted_ids:  # per id, insertion order is kept
        assert [r for r in _rows(near) if r[0] == i] == [r for r in reference if r[0] == i]
    assert sorted(_all(rest)) == sorted(r for r in reference if r[0] not in wanted_ids)

    kept = tombs.forget_until(now)
    assert sorted(_all(kept)) == sorted(r for r in reference if r[_FORGET] > now)
    assert tombs.max_forget_at_ms() == (max(r[_FORGET] for r in reference) if reference else None)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.tuples(st.lists(_row, max_size=8), st.integers(0, 1000)), max_size=6),
    st.booleans(),
    st.integers(0, 8),
)
def test_lazily_forgotten_rows_are_gone(steps, compact, limit):
    # Reference: rows in insertion order, minus those forgotten. A row merged after a
    # forget_until whose now is past its forget_at_ms stays until the next one.
    reference: list[tuple] = []
    tombs = TombSet.empty()
    with (
        mock.patch.object(tombstones, "_compact_dead", lambda dead, stored: compact),
        mock.patch.object(tombstones, "_recent_limit", lambda n_main: limit),
    ):
        for batch, now in steps:
            tombs = tombs.merge(_table(batch))
            reference += batch
            assert _by_id(_all(tombs)) == _by_id(reference)
            tombs = tombs.forget_until(now)
            reference = [r for r in reference if r[_FORGET] > now]
            assert tombs.num_rows == len(reference)
            assert _by_id(_all(tombs)) == _by_id(reference)
            assert _by_id(_all(_state_cell_round_trip(tombs))) == _by_id(reference)
            expected_max = max(r[_FORGET] for r in reference) if reference else None
            assert tombs.max_forget_at_ms() == expected_max


def _by_id(rows: list[tuple]) -> dict[str, list[tuple]]:
    """Each id's rows, in the order listed (a lookup lists them oldest first)."""
    out: dict[str, list[tuple]] = {}
    for r in rows:
        out.setdefault(r[0], []).append(r)
    return out


def test_split_of_absent_ids_and_of_an_empty_set():
    tombs = TombSet.empty().merge(_table([("a", 7, True, 2.5, 3, 5, True)]))
    near, rest = tombs.split(pa.array(["zzz"]))
    assert near.num_rows == 0 and rest.num_rows == 1
    near, rest = TombSet.empty().split(pa.array(["a"]))
    assert near.num_rows == 0 and rest.num_rows == 0
