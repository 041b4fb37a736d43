"""``python -m msewatch`` itself: a user mistake is one line on stderr and exit status 2.

The same command lines run in-process in ``tests/unit/test_cli.py``; here each is a
real process, so nothing printed while importing or exiting (a traceback, a library's
message) can hide.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.cli_cases import IDS, USER_ERRORS, error_lines


@pytest.mark.parametrize(("args", "message"), USER_ERRORS, ids=IDS)
def test_user_errors_print_one_line_and_exit_2(args, message, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MSEWATCH_DEBUG"}  # no traceback
    proc = subprocess.run(
        [sys.executable, "-m", "msewatch", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("msewatch: error:") and message in lines[0]
