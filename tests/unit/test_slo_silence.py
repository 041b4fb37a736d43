"""Zero rows of silent slices: the bounded rule, the streaming walk, retirement.

Hourly grid (period 1h); a slice's window ends are given in hours. Expected ends are
listed by hand from the rule in transforms/slo/silence.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from msewatch.schemas.slo import epoch_ms, utc_datetime
from msewatch.transforms.slo.silence import HEARTBEAT, LiveSlice, advance, zero_window_ends

H = 3_600_000


def hours(values) -> list[int]:
    return [int(v) // H for v in values]


@pytest.mark.parametrize(
    "real, frontier, retire, expected",
    [
        # silent 4-6, back at 7; input up to 9: zero rows 4, 5, 6
        ([1, 2, 3, 7, 8, 9], 9, 5, [4, 5, 6]),
        # retire after 2h: 4 and 5 (2h after 3), not 6
        ([1, 2, 3, 7, 8, 9], 9, 2, [4, 5]),
        # stops for good at 3, input up to 10, retire 4h: 4..7
        ([1, 2, 3], 10, 4, [4, 5, 6, 7]),
        # the input ends first: no zero rows after it
        ([1, 2, 3], 5, 24, [4, 5]),
        # nothing before the first window, nothing for a slice with no rows
        ([5, 6], 6, 24, []),
        ([], 6, 24, []),
    ],
)
def test_bounded_zero_windows(real, frontier, retire, expected):
    ends = zero_window_ends(np.array(real, np.int64) * H, H, frontier * H, retire * H)
    assert hours(ends) == expected


def test_sliding_windows_get_a_zero_row_for_each_missing_window_of_the_grid():
    # 3h windows every 1h; data in hours 0-2 only: the windows holding it end at 1h..5h
    # (the window ending 5h is [2h, 5h)); the grid windows ending 6h..8h get zero rows.
    ends = zero_window_ends(np.arange(1, 6) * H, H, 8 * H, 24 * H)
    assert hours(ends) == [6, 7, 8]


class Cell:
    def __init__(self):
        self.value = None

    def read(self):
        return self.value

    def write(self, value):
        self.value = value

    def clear(self):
        self.value = None


class Bag:
    def __init__(self):
        self.items = []

    def read(self):
        return list(self.items)

    def add(self, item):
        self.items.append(item)

    def clear(self):
        self.items = []


class Timer:
    def __init__(self):
        self.at = None

    def set_ms(self, ms):
        self.at = ms


def _row(end_h: int, pane: int = 0, timing: str = "ON_TIME") -> dict:
    return {
        "window_start": utc_datetime((end_h - 1) * H),
        "window_end": utc_datetime(end_h * H),
        "predictions": 4,
        "pane_index": pane,
        "pane_timing": timing,
    }


def _end(row) -> int:
    return epoch_ms(row["window_end"])


def _live(retire_h: int = 3):
    cells = {"next_ms": Cell(), "last_real_ms": Cell(), "frontier_ms": Cell(), "pending": Bag()}
    timer = Timer()
    return LiveSlice(cells, timer, H, retire_h * H), cells, timer


def test_rows_wait_for_their_window_then_silent_windows_get_zero_rows():
    live, cells, timer = _live()
    assert not live.take(_row(1), _end(_row(1)))  # buffered: window 1 not done yet
    assert timer.at == 1 * H
    out = live.done(1 * H, _end, H, "region=eu")
    assert [(_end(r) // H, r["predictions"]) for r in out] == [(1, 4)]
    # the watermark passes 2h and 3h; the input frontier (a heartbeat) is at 3h
    assert not live.take({HEARTBEAT: 3 * H}, None)
    assert timer.at == 2 * H  # the heartbeat set the timer at the next window end
    out = live.done(3 * H, _end, H, "region=eu")
    assert [(_end(r) // H, r["predictions"]) for r in out] == [(2, 0), (3, 0)]
    assert out[0]["window_start"] < out[0]["window_end"]
    # 4h is beyond the frontier: not re-armed (it would fire at once at the end of the
    # input, for ever); the next heartbeat sets it
    assert cells["next_ms"].read() == 4 * H and timer.at == 2 * H


def test_a_late_pane_of_a_done_window_is_evaluated_at_once():
    live, _, _ = _live()
    live.take(_row(1), _end(_row(1)))
    live.done(1 * H, _end, H, "s")
    assert live.take(_row(1, pane=3, timing="LATE"), 1 * H)


def test_windows_are_given_in_order_even_when_a_later_pane_came_first():
    # the watermark jumped past 2h and 3h; window 3's pane was seen, window 2 had none
    live, _, _ = _live()
    live.take(_row(1), 1 * H)
    live.done(1 * H, _end, H, "s")
    live.take(_row(3, pane=1), 3 * H)
    live.take(_row(3, pane=0, timing="EARLY"), 3 * H)
    out = live.done(math.inf, _end, H, "s")
    assert [(_end(r) // H, r["predictions"], r["pane_index"]) for r in out] == [
        (2, 0, 0),
        (3, 4, 0),
        (3, 4, 1),
    ]


def test_a_slice_idle_beyond_retire_after_retires_and_its_state_is_cleared():
    live, cells, _ = _live(retire_h=3)
    live.take(_row(1), 1 * H)
    live.done(1 * H, _end, H, "s")
    live.take({HEARTBEAT: 10 * H}, None)
    out = live.done(10 * H, _end, H, "s")
    assert hours(_end(r) for r in out) == [2, 3, 4]  # 5 is 4h after 1h: retired
    assert all(c.read() in (None, []) for c in cells.values())
    assert live.done(20 * H, _end, H, "s") == []
    # it comes back: live again from its next row
    assert not live.take(_row(12), 12 * H)
    assert cells["next_ms"].read() == 12 * H


def test_advance_stops_at_the_frontier_and_at_the_watermark():
    step = advance(2 * H, 1 * H, 4 * H, 3 * H, [], H, 24 * H)
    assert (hours(step.zero_ms), step.next_ms) == ([2, 3], 4 * H)
    step = advance(2 * H, 1 * H, 2 * H, math.inf, [2 * H], H, 24 * H)
    assert (hours(step.real_ms), step.zero_ms, step.next_ms) == ([2], [], 3 * H)
