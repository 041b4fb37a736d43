"""A real Prometheus (Debian's ``prometheus``) scraping a real ``msewatch serve``, for tests.

:func:`running_serve` starts ``python -m msewatch serve OUTPUT --listen 127.0.0.1:0`` and
yields the address it printed; :func:`running_prometheus` starts Prometheus with a
temporary config that scrapes those targets every second and a temporary TSDB, waits
until every target is up and yields its URL; :func:`instant_query` asks its HTTP API.
Both are stopped after. When Prometheus is not installed or cannot start the test skips
with the reason, unless ``MSEWATCH_REQUIRE_SERVERS=1`` (``.ci/run`` sets it and installs
the package), where it fails instead. The helpers of :mod:`tests.servers`
pick the port, decide between skip and fail, and stop the processes.
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.servers import cannot_start, free_port, missing, stop

BINARY = shutil.which("prometheus")
START_SECONDS = 60


@contextlib.contextmanager
def running_serve(output: Path, log_path: Path, args: tuple[str, ...] = ()):
    """``msewatch serve OUTPUT [args]`` on a free port of 127.0.0.1; yields
    ``"127.0.0.1:PORT"``."""
    log = open(log_path, "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "msewatch", "serve", str(output), "--listen", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        stderr=log,
        bufsize=0,  # unbuffered: select() sees every line readline() has not read
    )
    try:
        line, deadline = b"", time.monotonic() + START_SECONDS
        while b"serving http://" not in line:
            ready, _, _ = select.select([proc.stdout], [], [], 1)
            if ready:
                line = proc.stdout.readline()
            if (not ready and proc.poll() is not None) or time.monotonic() > deadline:
                pytest.fail(f"msewatch serve did not start: {log_path.read_text()[-500:]}")
        yield re.search(rb"http://([^/]+)/metrics", line).group(1).decode()
    finally:
        stop(proc)
        proc.stdout.close()
        log.close()


@contextlib.contextmanager
def running_prometheus(
    tmp_path: Path, targets: list[str], honor_labels: bool = False, rule_files: tuple = ()
):
    """Prometheus on a free port of 127.0.0.1 scraping ``targets`` (job ``msewatch``)
    every second, evaluating ``rule_files`` every second; yields its URL once every
    target is up. ``honor_labels``: keep the scraped ``job`` and ``instance`` labels (how
    a Pushgateway is scraped)."""
    if BINARY is None:
        missing("prometheus", "apt-get install prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: msewatch\n"
        f"    honor_labels: {str(honor_labels).lower()}\n"
        f"    static_configs: [{{targets: {json.dumps(targets)}}}]\n"
        f"rule_files: {json.dumps([str(f) for f in rule_files])}\n"
    )
    storage = tmp_path / "prometheus-data"
    log_path = tmp_path / "prometheus.log"
    log = open(log_path, "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [
            BINARY,
            f"--config.file={config}",
            f"--storage.tsdb.path={storage}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while not _targets_up(url, len(targets)):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                text = log_path.read_text(errors="replace")[-800:]
                cannot_start(f"prometheus did not start or scrape (see its log): {text}")
            time.sleep(0.3)
        yield url
    finally:
        stop(proc)
        log.close()


def _targets_up(url: str, count: int) -> bool:
    try:
        result = instant_query(url, 'up{job="msewatch"} == 1')
    except OSError:
        return False
    return len(result) == count


def instant_query(url: str, promql: str) -> list[dict]:
    """The result vector of ``/api/v1/query``: ``[{"metric": {...}, "value": [t, "v"]}]``."""
    query = urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=5) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def api(url: str, path: str) -> dict:
    """The ``data`` of a Prometheus HTTP API answer, e.g. ``api(url, "/api/v1/alerts")``."""
    with urllib.request.urlopen(f"{url}{path}", timeout=5) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]
