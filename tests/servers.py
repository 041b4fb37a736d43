"""What the tests that start a real server share: a free port on 127.0.0.1, skipping
(or, under ``MSEWATCH_REQUIRE_SERVERS=1``, which ``.ci/run`` sets, failing) when the
server cannot start here, and :func:`running`, the one way a test starts a server
process, waits until it is ready and stops it (and every process it started)."""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

import pytest

REQUIRE_ENV = "MSEWATCH_REQUIRE_SERVERS"


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cannot_start(reason: str) -> NoReturn:
    """Skips the test with ``reason``; fails it where servers are required (CI)."""
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(reason)
    pytest.skip(reason)


def missing(what: str, install: str):
    """:func:`cannot_start` for a server binary that is not installed."""
    cannot_start(f"{what} not installed ({install}; .ci/run installs it)")


@dataclasses.dataclass(frozen=True)
class Server:
    """A process :func:`running` started: its port on 127.0.0.1 and its output file."""

    proc: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        """Everything the process has written to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def running(
    name: str,
    command: Callable[[int], Sequence[str]],
    ready: Callable[[Server], bool],
    log_path: Path,
    start_seconds: float = 30,
    unavailable: Callable[[str], NoReturn] = cannot_start,
) -> Iterator[Server]:
    """Runs ``command(port)`` (``port``: a free one of 127.0.0.1) for the block.

    The process gets a process group of its own and its stdout and stderr go to
    ``log_path``. The block starts once ``ready(server)`` is true, checked every 0.2 s.

    Args:
        name: what the reason says did not start.
        command: the argv, given the free port.
        ready: true once the server answers.
        log_path: where its output goes.
        start_seconds: how long it may take to become ready.
        unavailable: called with the reason (and the log's tail) when the process exits
            or is not ready in time: :func:`cannot_start` (skip, or fail under
            ``MSEWATCH_REQUIRE_SERVERS=1``) unless a failure to start is a bug.

    Yields:
        The :class:`Server`; after the block its whole process group is stopped.
    """
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            list(command(port)),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = Server(proc, port, log_path)
    try:
        deadline = time.monotonic() + start_seconds
        while not ready(server):
            if proc.poll() is not None or time.monotonic() > deadline:
                how = f"exited with {proc.returncode}" if proc.poll() is not None else "timed out"
                unavailable(f"{name} did not start ({how}; its log): {server.log()[-800:]}")
            time.sleep(0.2)
        yield server
    finally:
        stop(proc)


def answers(path: str) -> Callable[[Server], bool]:
    """A ``ready`` check for :func:`running`: ``GET url + path`` answers 200."""

    def check(server: Server) -> bool:
        try:
            with urllib.request.urlopen(server.url + path, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    return check


def listening(server: Server) -> bool:
    """A ``ready`` check for :func:`running`: the port accepts a TCP connection."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", server.port), 1):
        return True
    return False


def stop(proc: subprocess.Popen, timeout_s: float = 10) -> None:
    """Stops ``proc`` and the process group it leads (``start_new_session=True``; e.g.
    gcloud's Java child outlives gcloud): SIGTERM, then SIGKILL to whatever is left
    after ``timeout_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout_s)
    deadline = time.monotonic() + timeout_s
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A request handler that does not log each request to stderr."""

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def http_on_loopback(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    """Serves ``handler`` on 127.0.0.1 on a free port in a thread; yields the port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
