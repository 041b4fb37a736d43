"""Background processes with pid files: start detached, ask whether alive, stop cleanly.

A pid file holds the pid on its first line and, on its second, a marker that the
process's command line contains (a path under the cluster's state folder). A pid
whose command line lacks the marker belongs to someone else (the pid was reused after
a reboot or a crash), so it is treated as gone and never signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def check_ports(settings, names: tuple[str, str], what: str) -> None:
    """The two port fields ``names`` of ``settings`` are ports (1-65535) that differ.

    Raises:
        ValueError: naming the field, or ``what`` (e.g. "the REST and RPC ports").
    """
    for name in names:
        if not 1 <= getattr(settings, name) <= 65535:
            raise ValueError(f"{name} must be a port, 1 to 65535; got {getattr(settings, name)}")
    if getattr(settings, names[0]) == getattr(settings, names[1]):
        raise ValueError(f"{what} must differ")


def _cmdline(pid: int) -> str | None:
    """The process's command line, or None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rpartition(")")[2].split()[0] == "Z":
            return None
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    return _cmdline(pid) is not None


def running_pid(pid_file: Path) -> int | None:
    """The pid recorded in ``pid_file`` if that process still runs, else None."""
    try:
        pid_text, _, marker = pid_file.read_text().partition("\n")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    cmdline = _cmdline(pid)
    return pid if cmdline is not None and marker.strip() in cmdline else None


def start(
    cmd: Sequence[str], *, pid_file: Path, log_file: Path, marker: str, env: dict | None = None
) -> int:
    """Starts ``cmd`` in its own session, output to ``log_file``; records its pid.

    Args:
        cmd: the command; it must ``exec`` the long-running process (or be it) so that
            the recorded pid is the server's own. Waits (30 s at most) until it has.
        pid_file: where the pid and ``marker`` go.
        log_file: stdout and stderr (appended).
        marker: a string the server's command line contains.
        env: the environment (default: this process's).

    Returns:
        The pid.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    pid_file.write_text(f"{proc.pid}\n{marker}\n")
    # a launcher script takes a moment to exec the server, whose command line has the marker
    wait_for(lambda: proc.poll() is not None or running_pid(pid_file) is not None, 30.0, 0.1)
    return proc.pid


def kill(pid_file: Path, sig: int = signal.SIGKILL) -> int | None:
    """Sends ``sig`` to the recorded process (a crash, for tests); returns its pid."""
    pid = running_pid(pid_file)
    if pid is not None:
        os.kill(pid, sig)
    return pid


def stop(pid_file: Path, *, timeout_s: float = 30.0) -> int | None:
    """SIGTERM, then SIGKILL after ``timeout_s``; removes the pid file.

    Returns:
        The pid that was stopped, or None when nothing ran.
    """
    pid = kill(pid_file, signal.SIGTERM)
    if pid is not None and not wait_for(lambda: running_pid(pid_file) is None, timeout_s):
        kill(pid_file, signal.SIGKILL)
        wait_for(lambda: running_pid(pid_file) is None, 10.0)
    pid_file.unlink(missing_ok=True)
    return pid


def wait_for(check: Callable[[], object], timeout_s: float, every_s: float = 0.5) -> bool:
    """Polls ``check`` until it is truthy (True) or ``timeout_s`` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every_s)


def log_tail(log_file: Path, lines: int = 5) -> str:
    """The last lines of a log, one line (for an error message)."""
    try:
        text = log_file.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])
