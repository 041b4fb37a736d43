"""Runs one command as a child process and measures its wall time and peak RSS.

The command runs under ``_spawn.py``, a standard-library-only launcher started with
``python -S``: it times the command with ``time.perf_counter`` from spawn to exit and
reads its peak RSS from ``os.wait4`` (the kernel's ``ru_maxrss`` of that process and
the descendants it waited for). The launcher keeps the measurement clean: spawned
straight from the benchmark process, a child would inherit the benchmark's own RSS
as its floor. Each run is measured alone, not through the running maximum of
``getrusage(RUSAGE_CHILDREN)``; psutil is not used.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time

_SPAWN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_spawn.py")


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One measured run.

    Attributes:
        wall_s: wall-clock seconds from spawn to exit.
        peak_rss_bytes: the child's peak resident set size (None if killed).
        user_s: CPU seconds in user mode (child and waited-for descendants).
        system_s: CPU seconds in kernel mode.
        returncode: exit status (negative: killed by that signal).
        timed_out: killed after the time limit.
    """

    wall_s: float
    peak_rss_bytes: int | None
    user_s: float | None
    system_s: float | None
    returncode: int
    timed_out: bool = False


def _tail(path: str, lines: int = 25) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - 16_384))
        return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])


def run(
    command: list[str],
    log_path: str,
    env: dict | None = None,
    timeout_s: float | None = None,
) -> Measurement:
    """Runs ``command``, its output going to ``log_path``, and measures it.

    Args:
        command: argv of the child.
        log_path: file receiving the child's stdout and stderr.
        env: extra environment variables.
        timeout_s: kill the child (and its process group) after this many seconds.

    Returns:
        The measurement; ``timed_out`` if the time limit killed it.

    Raises:
        RuntimeError: if the command exits with a non-zero status before any time
            limit (the message holds the end of its log).
    """
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    result_path = log_path + ".measure.json"
    if os.path.exists(result_path):
        os.remove(result_path)
    expired = threading.Event()
    with open(log_path, "wb") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-S", _SPAWN, result_path, *command],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(os.environ) | (env or {}),
            start_new_session=True,  # one process group to kill on timeout
        )

        def kill():
            expired.set()
            _kill_group(proc.pid)

        timer = threading.Timer(timeout_s, kill) if timeout_s else None
        try:
            if timer:
                timer.start()
            proc.wait()
        except BaseException:
            _kill_group(proc.pid)
            raise
        finally:
            if timer:
                timer.cancel()
        outer_wall = time.perf_counter() - start
    if expired.is_set() or not os.path.exists(result_path):
        if not expired.is_set():
            raise RuntimeError(f"the launcher died ({proc.returncode}): {' '.join(command)}")
        return Measurement(outer_wall, None, None, None, proc.returncode, timed_out=True)
    with open(result_path, encoding="utf-8") as f:
        result = Measurement(**json.load(f))
    if result.returncode != 0:
        raise RuntimeError(
            f"command failed with status {result.returncode}: {' '.join(command)}\n"
            f"--- end of {log_path} ---\n{_tail(log_path)}"
        )
    return result


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
