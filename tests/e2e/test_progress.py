"""The progress bar of a bounded run (``runners/progress.py``): shown on a terminal,
absent with ``--quiet`` or when stderr is not a terminal; the records it counts are the
records the run read (the outcome table's inputs)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest

from msewatch.commands.generate import generate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress")
    generate(str(root / "s"), predictions=2000, seed=5)
    return root


def _command(sample, out: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "msewatch", "run",
        "--predictions", str(sample / "s" / "predictions.jsonl"),
        "--labels", str(sample / "s" / "labels.jsonl"),
        "--output", str(sample / out), *extra,
    ]  # fmt: skip


def _on_a_terminal(argv: list[str]) -> tuple[int, str]:
    """Runs ``argv`` with stdout and stderr on a pseudo-terminal 160 columns wide."""
    pid, fd = pty.fork()
    if pid == 0:  # the child
        os.execv(argv[0], argv)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))
    out = b""
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        out += data
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def _inputs(sample, out: str) -> int:
    outcomes = json.loads((sample / out / "summary.json").read_text())["outcomes"]
    return sum(row["input"] for row in outcomes.values())


def test_a_terminal_shows_the_bar_and_its_records_are_the_inputs(sample):
    code, text = _on_a_terminal(_command(sample, "tty"))
    assert code == 0, text[-2000:]
    assert "msewatch: reading" in text and "read; joining, writing" in text
    assert f"{_inputs(sample, 'tty'):,} records" in text


def test_quiet_shows_no_bar(sample):
    code, text = _on_a_terminal(_command(sample, "quiet", "--quiet"))
    assert code == 0, text[-2000:]
    assert "msewatch: reading" not in text


def test_no_bar_when_stderr_is_not_a_terminal(sample):
    proc = subprocess.run(_command(sample, "pipe"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "msewatch: reading" not in proc.stderr + proc.stdout
