"""A real Prometheus Pushgateway (Debian's ``prometheus-pushgateway``) on 127.0.0.1, for
tests: :func:`running_pushgateway` starts it on a free port with its persistence in a
temporary file, waits until ``/-/ready`` answers, yields its URL and stops it. Not
installed or not starting: the test skips, or fails under ``MSEWATCH_REQUIRE_SERVERS=1``
(``.ci/run`` sets it and installs the package)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.servers import cannot_start, free_port, missing, stop

BINARY = shutil.which("prometheus-pushgateway")
START_SECONDS = 30


@contextlib.contextmanager
def running_pushgateway(tmp_path: Path):
    """Yields ``http://127.0.0.1:PORT`` of a Pushgateway that runs until the block ends."""
    if BINARY is None:
        missing("prometheus-pushgateway", "apt-get install prometheus-pushgateway")
    port = free_port()
    log_path = tmp_path / "pushgateway.log"
    log = open(log_path, "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [
            BINARY,
            f"--web.listen-address=127.0.0.1:{port}",
            f"--persistence.file={tmp_path / 'pushgateway.data'}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while not _ready(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                text = log_path.read_text(errors="replace")[-800:]
                cannot_start(f"prometheus-pushgateway did not start (see its log): {text}")
            time.sleep(0.2)
        yield url
    finally:
        stop(proc)
        log.close()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
