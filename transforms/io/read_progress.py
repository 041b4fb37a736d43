"""How far the file readers are, for a progress bar in the process that launched the run.

The readers (``files.ReadRecords``) call :func:`report` after each chunk with the
chunk's key (its path and start, see ``files.Chunk``) and its records; the listener knows
what share of the input each chunk is. A report goes to the listener registered under the run's
token in *this* process, if any: on the in-process DirectRunner the readers run in the
launching process and the launcher's bar moves; on Flink, Dataflow or Beam's
multi-process DirectRunner the workers have no listener and a report does nothing.
Listeners are called from the runner's threads; they must be thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Listener = Callable[[tuple[str, int], int], None]  # ((path, start) of a chunk, its records)

_LOCK = threading.Lock()
_LISTENERS: dict[str, Listener] = {}


def listen(token: str, listener: Listener) -> None:
    """Registers ``listener`` for the reports of the run ``token``."""
    with _LOCK:
        _LISTENERS[token] = listener


def stop(token: str) -> None:
    """Removes the listener of ``token`` (no error if there is none)."""
    with _LOCK:
        _LISTENERS.pop(token, None)


def report(token: str | None, key: tuple[str, int], records: int) -> None:
    """The chunk ``key`` (path, start) was read: ``records`` records, valid or not."""
    if token is None:
        return
    with _LOCK:
        listener = _LISTENERS.get(token)
    if listener is not None:
        listener(key, records)
