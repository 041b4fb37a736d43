"""tests/servers.py's :func:`running`, the one way a test starts a server: with
``python -m http.server`` as the server (it is always there), and a shell whose
background child shows that the whole process group is stopped."""

from __future__ import annotations

import os
import sys
import urllib.request

import pytest

from tests.servers import REQUIRE_ENV, answers, listening, running


def test_the_block_starts_once_the_server_answers_on_its_free_port(tmp_path):
    (tmp_path / "hello.txt").write_text("hi")

    def command(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "-b",
            "127.0.0.1",
            "-d",
            str(tmp_path),
        ]

    with running("http.server", command, answers("/hello.txt"), tmp_path / "log") as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(f"{server.url}/hello.txt", timeout=5) as response:
            assert response.read() == b"hi"
    assert server.proc.returncode is not None  # stopped after the block
    assert not listening(server)


def test_the_whole_process_group_is_stopped(tmp_path):
    # The shell starts a child that would sleep for 5 minutes and writes its pid.
    pid_file = tmp_path / "child.pid"
    script = f"sleep 300 & echo $! > {pid_file}; wait"
    with running(
        "sh", lambda _port: ["sh", "-c", script], lambda _s: pid_file.exists(), tmp_path / "log"
    ):
        child = int(pid_file.read_text().split()[0])
        os.kill(child, 0)  # alive during the block
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


@pytest.mark.parametrize(
    ("command", "start_seconds", "why"),
    [
        (
            lambda _port: [sys.executable, "-c", "print('no such luck'); raise SystemExit(3)"],
            30,
            "exited with 3",
        ),
        (lambda _port: [sys.executable, "-c", "import time; time.sleep(60)"], 0.5, "timed out"),
    ],
    ids=["exits", "never-ready"],
)
def test_a_server_that_does_not_start_skips_saying_why(
    tmp_path, monkeypatch, command, start_seconds, why
):
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    ran = []
    with pytest.raises(pytest.skip.Exception) as skipped:
        with running("the thing", command, lambda _s: False, tmp_path / "log", start_seconds):
            ran.append(True)
    assert not ran
    assert f"the thing did not start ({why}" in str(skipped.value)


def test_under_require_servers_a_server_that_does_not_start_fails(tmp_path, monkeypatch):
    monkeypatch.setenv(REQUIRE_ENV, "1")
    command = lambda _port: [sys.executable, "-c", "print('broken config')"]  # noqa: E731
    ran = []
    with pytest.raises(pytest.fail.Exception, match="broken config"):
        with running("the thing", command, lambda _s: False, tmp_path / "log"):
            ran.append(True)
    assert not ran
