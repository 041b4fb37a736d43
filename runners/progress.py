"""The progress bar of a bounded run on the in-process DirectRunner (stderr, tqdm).

A bounded run at 10 M predictions takes minutes; without this nothing was printed until
the summary. The bar shows the input bytes read of the total (every file of
``--predictions`` and ``--labels``), the records read, events/s and an ETA; once every
chunk is read it says that the join, the metrics and the writing are under way, and its
clock keeps running until the pipeline ends.

It is on only where it can be true: a bounded file run, on the DirectRunner in its
in-process mode (the readers then run in this process and report through
``transforms/io/read_progress.py``), stderr a terminal, and no ``--quiet``. Elsewhere
:func:`progress_bar` yields None and nothing is printed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import uuid

from msewatch.transforms.io import read_progress
from msewatch.transforms.io.files import chunk_shares

_REFRESH_S = 0.5


def wanted(quiet: bool, runner: str, running_mode: str | None, stream=None) -> bool:
    """Whether a run with these settings gets a bar (see the module docstring)."""
    stream = sys.stderr if stream is None else stream
    in_process = runner == "DirectRunner" and running_mode in (None, "in_memory")
    return not quiet and in_process and hasattr(stream, "isatty") and stream.isatty()


class _Bar:
    """A tqdm bar over input bytes, moved by the readers' reports (thread-safe)."""

    def __init__(self, shares: dict, stream):
        from tqdm import tqdm  # only a run that shows a bar imports it

        self._shares = shares
        self._lock = threading.Lock()
        self._records = 0
        self._left = len(shares)
        self._bar = tqdm(
            total=sum(shares.values()),
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc="msewatch: reading",
            file=stream,
            leave=False,
            **_width(stream),
        )

    def chunk_read(self, key, records: int) -> None:
        with self._lock:
            self._records += records
            self._left -= 1
            self._bar.update(self._shares.get(key, 0))
            elapsed = self._bar.format_dict["elapsed"]
            rate = f", {self._records / elapsed:,.0f}/s" if elapsed > 0 else ""
            self._bar.set_postfix_str(f"{self._records:,} records{rate}", refresh=False)
            if self._left <= 0:
                self._bar.set_description_str("msewatch: read; joining, writing")

    def tick(self, done: threading.Event) -> None:
        while not done.wait(_REFRESH_S):
            with self._lock:
                self._bar.refresh()

    def close(self) -> None:
        with self._lock:
            self._bar.close()


def _width(stream) -> dict:
    """tqdm's width: the terminal's, or 80 columns where the terminal says 0 (tqdm would
    then print an empty bar)."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        columns = 0
    return {"dynamic_ncols": True} if columns > 0 else {"ncols": 80}


@contextlib.contextmanager
def progress_bar(predictions: str, labels: str, enabled: bool, stream=None):
    """Yields the token the file source reports to (None when ``enabled`` is false) and
    shows the bar while the block runs."""
    if not enabled:
        yield None
        return
    stream = sys.stderr if stream is None else stream
    bar = _Bar({**chunk_shares(predictions), **chunk_shares(labels)}, stream)
    token, done = uuid.uuid4().hex, threading.Event()
    ticker = threading.Thread(target=bar.tick, args=(done,), daemon=True)
    read_progress.listen(token, bar.chunk_read)
    ticker.start()
    try:
        yield token
    finally:
        read_progress.stop(token)
        done.set()
        ticker.join()
        bar.close()
