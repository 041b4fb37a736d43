"""What the tests that start a real server share: a free port on 127.0.0.1, skipping
(or, under ``MSEWATCH_REQUIRE_SERVERS=1``, which ``.ci/run`` sets, failing) when the
server cannot start here, and stopping a server process."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

REQUIRE_ENV = "MSEWATCH_REQUIRE_SERVERS"


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cannot_start(reason: str):
    """Skips the test with ``reason``; fails it where servers are required (CI)."""
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(reason)
    pytest.skip(reason)


def missing(what: str, install: str):
    """:func:`cannot_start` for a server binary that is not installed."""
    cannot_start(f"{what} not installed ({install}; .ci/run installs it)")


def stop(proc: subprocess.Popen, timeout_s: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not ended after ``timeout_s``."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
