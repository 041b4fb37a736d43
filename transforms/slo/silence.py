"""Silent slices: the zero rows a traffic SLO reads for the windows a slice sent nothing in.

A slice that stops sending predictions produces no ``metrics`` rows, so an SLO on it
could never see the silence. For every slice a ``traffic`` SLO covers, its evaluation
adds a *zero row* (``predictions`` 0, nothing else) for each window of the window grid
that has no row, from the slice's first window on, while the slice is *live*:

* the grid is the metrics windows: windows ``window_ms`` long ending every
  ``period_ms`` (epoch-aligned, UTC; fixed windows when they are equal), so a zero row
  is one window of the grid, sliding windows included;
* a window gets a zero row only when the input has it: its end is at most the
  *input frontier*, the newest window end of any ``metrics`` row of any slice (a
  bounded run: the newest of the whole input; streaming: the newest seen so far);
* the slice **retires** once it has been idle for ``retire_after``: the windows
  ending more than ``retire_after`` after the end of its newest window with a row
  get no zero row. A slice that comes back is live again from its next row.

Zero rows exist only inside the traffic SLO's evaluation: the ``metrics`` table never
has them, and the other SLIs never see them. The bounded run computes them at once
(:func:`zero_window_ends`); a streaming run walks the grid one window at a time as
the watermark passes (:func:`advance`). Both give the same rows for the same input.
This module is Beam-free; the DoFns are in :mod:`.transform`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from msewatch.schemas.slo import utc_datetime

HEARTBEAT = "heartbeat_ms"  # the field of a streaming heartbeat: the input frontier so far


def zero_window_ends(
    real_ends_ms: np.ndarray, period_ms: int, frontier_ms: int, retire_after_ms: int
) -> np.ndarray:
    """Bounded: the ends of the windows that get a zero row, ascending.

    Args:
        real_ends_ms: the window ends (UTC epoch ms) of the slice's rows, on the grid.
        period_ms: the grid's step (``--every``, or the window for fixed windows).
        frontier_ms: the newest window end of the whole input.
        retire_after_ms: the idle time after which the slice gets no more zero rows.

    Returns:
        The grid ends after the slice's first window and at most ``frontier_ms`` that
        have no row and lie at most ``retire_after_ms`` after the slice's previous row.
    """
    real = np.unique(np.asarray(real_ends_ms, np.int64))
    if len(real) == 0:
        return real
    grid = np.arange(real[0] + period_ms, frontier_ms + 1, period_ms, dtype=np.int64)
    grid = grid[~np.isin(grid, real)]
    previous = real[np.searchsorted(real, grid, side="right") - 1]
    return grid[grid - previous <= retire_after_ms]


class Step(NamedTuple):
    """What a streaming key does with the grid windows the watermark has passed."""

    real_ms: list[int]  # window ends whose buffered rows are evaluated now, ascending
    zero_ms: list[int]  # window ends that get a zero row now, ascending
    next_ms: int | None  # the next grid end to wait for; None: the slice retired
    last_real_ms: int  # the end of the slice's newest window with a row


def advance(
    next_ms: int,
    last_real_ms: int,
    frontier_ms: int,
    passed_ms: float,
    pending_ms: Iterable[int],
    period_ms: int,
    retire_after_ms: int,
) -> Step:
    """Streaming: walks the grid from ``next_ms`` over the windows that are done.

    A grid window is done when the watermark has passed its end (``<= passed_ms``, so
    every pane of it, whose timestamp is the window's last millisecond, has been seen)
    and the input has it (``<= frontier_ms``). A done window with buffered rows
    (``pending_ms``) is evaluated with them; one without gets a zero row, unless the
    slice has been idle for more than ``retire_after_ms``: then it retires.
    """
    pending, real, zero = set(pending_ms), [], []
    upto = min(frontier_ms, passed_ms)
    while next_ms <= upto:
        if next_ms in pending:
            real.append(next_ms)
            last_real_ms = next_ms
        elif next_ms - last_real_ms > retire_after_ms:
            return Step(real, zero, None, last_real_ms)
        else:
            zero.append(next_ms)
        next_ms += period_ms
    return Step(real, zero, next_ms, last_real_ms)


def zero_row(slice_name: str, end_ms: int, window_ms: int) -> dict:
    """The zero row of one window: a ``metrics`` row with ``predictions`` 0 and no
    other measure (the traffic SLI reads ``predictions`` only)."""
    return {
        "window_start": utc_datetime(end_ms - window_ms),
        "window_end": utc_datetime(end_ms),
        "slice": slice_name,
        "predictions": 0,
        "pane_index": 0,
        "pane_timing": "ON_TIME",
    }


class LiveSlice:
    """The streaming silence state of one (traffic SLO, slice) key, over Beam's cells.

    Cells (each ``read``/``write``/``clear``; ``pending`` a bag: ``read``/``add``/
    ``clear``; ``timer`` has ``set``): ``next_ms``, the next grid end to wait for (None:
    the slice is not live); ``last_real_ms``, its newest window end with a row;
    ``frontier_ms``, the input frontier it knows (its own rows and the heartbeats);
    ``pending``, its rows of windows not yet done. The timer is set at ``next_ms``: it
    fires once the watermark has passed that end, after every pane of that window (a
    pane's timestamp is its window's last millisecond). Every exit path (retirement)
    clears the cells.
    """

    def __init__(self, cells: dict, timer, period_ms: int, retire_after_ms: int):
        self._cells, self._timer = cells, timer
        self._period_ms, self._retire_after_ms = period_ms, retire_after_ms

    def _raise_frontier(self, end_ms: int) -> None:
        frontier = self._cells["frontier_ms"]
        known = frontier.read()
        if known is None or end_ms > known:
            frontier.write(end_ms)

    def take(self, row: dict, end_ms: int | None) -> bool:
        """Takes a heartbeat (``end_ms`` None) or a row of window end ``end_ms``; True
        when the row is to be evaluated now (a window already done: a late pane), False
        when it waits in ``pending`` for its window to be done (or was a heartbeat)."""
        nxt = self._cells["next_ms"].read()
        if end_ms is None:
            self._raise_frontier(row[HEARTBEAT])
            if nxt is not None and nxt <= row[HEARTBEAT]:
                self._timer.set_ms(nxt)
            return False
        self._raise_frontier(end_ms)
        if nxt is None:  # the slice's first row (or its first after retiring)
            nxt = end_ms
            self._cells["next_ms"].write(nxt)
            self._cells["last_real_ms"].write(end_ms)
        elif end_ms < nxt:
            return True
        self._cells["pending"].add(row)
        self._timer.set_ms(nxt)
        return False

    def done(self, passed_ms: float, end_of, window_ms: int, slice_name: str) -> list[dict]:
        """The rows of the windows done once the watermark has passed ``passed_ms``, in
        window order, each window's own rows or its zero row; ``end_of(row)`` is a
        row's window end (ms). Re-arms the timer, or retires the slice."""
        nxt = self._cells["next_ms"].read()
        if nxt is None:
            return []
        rows = list(self._cells["pending"].read())
        ends = [end_of(r) for r in rows]
        step = advance(
            nxt,
            self._cells["last_real_ms"].read(),
            self._cells["frontier_ms"].read(),
            passed_ms,
            ends,
            self._period_ms,
            self._retire_after_ms,
        )
        real = set(step.real_ms)
        out = [r for r, e in zip(rows, ends, strict=True) if e in real]
        out += [zero_row(slice_name, e, window_ms) for e in step.zero_ms]
        out.sort(key=lambda r: (end_of(r), r["pane_index"]))
        keep = [(r, e) for r, e in zip(rows, ends, strict=True) if e not in real]
        if step.real_ms:
            self._cells["pending"].clear()
            for r, _ in keep:
                self._cells["pending"].add(r)
        if step.next_ms is not None:
            self._cells["next_ms"].write(step.next_ms)
            self._cells["last_real_ms"].write(step.last_real_ms)
            if step.next_ms <= self._cells["frontier_ms"].read():
                self._timer.set_ms(step.next_ms)  # else a heartbeat sets it
        elif keep:  # retired, but rows of later windows wait: live again from them
            first = min(e for _, e in keep)
            self._cells["next_ms"].write(first)
            self._cells["last_real_ms"].write(first)
            self._timer.set_ms(first)
        else:
            for cell in self._cells.values():
                cell.clear()
        return out
