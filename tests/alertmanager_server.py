"""A real Alertmanager (Debian's ``prometheus-alertmanager``) on 127.0.0.1 for tests.

:func:`running_alertmanager` starts it with a temporary config and storage path on a
free port, waits until its API answers, yields its URL and stops it. Without the
binary the test skips, saying how to install it, unless ``MSEWATCH_REQUIRE_SERVERS=1``
(``.ci/run`` sets it and installs the package), where it fails instead.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.servers import free_port, missing, stop

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
CONFIG = Path(__file__).parent.parent / "docs" / "examples" / "alertmanager.yml"


@contextlib.contextmanager
def running_alertmanager(tmp_path: Path):
    if BINARY is None:
        missing("prometheus-alertmanager", "apt-get install prometheus-alertmanager")
    port = free_port()
    storage = tmp_path / "alertmanager-data"
    storage.mkdir()
    log = open(tmp_path / "alertmanager.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [
            BINARY,
            f"--config.file={CONFIG}",
            f"--storage.path={storage}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/api/v2/status", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    text = (tmp_path / "alertmanager.log").read_text(errors="replace")[-500:]
                    pytest.fail(f"alertmanager did not start: {text}")
                time.sleep(0.2)
        yield url
    finally:
        stop(proc)
        log.close()
