"""A real Prometheus (Debian's ``prometheus``) scraping a real ``msewatch serve``, for tests.

:func:`running_serve` starts ``python -m msewatch serve OUTPUT --listen 127.0.0.1:0`` and
yields the address it printed; :func:`running_prometheus` starts Prometheus with a
temporary config that scrapes those targets every second and a temporary TSDB, waits
until every target is up and yields its URL; :func:`instant_query` asks its HTTP API.
Both are stopped after. When Prometheus is not installed or cannot start the test skips
with the reason, unless ``MSEWATCH_REQUIRE_SERVERS=1`` (``.ci/run`` sets it and installs
the package), where it fails instead. :func:`tests.servers.running` picks the port,
waits, decides between skip and fail, and stops the processes.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.servers import missing, running

BINARY = shutil.which("prometheus")
START_SECONDS = 60
_SERVING = re.compile(r"serving http://([^/]+)/metrics")


@contextlib.contextmanager
def running_serve(output: Path, log_path: Path, args: tuple[str, ...] = ()):
    """``msewatch serve OUTPUT [args]`` on a port of 127.0.0.1 it picks itself
    (``--listen 127.0.0.1:0``); yields ``"127.0.0.1:PORT"``, the address it printed. Not
    starting is a bug here: the test fails."""
    command = [sys.executable, "-m", "msewatch", "serve", str(output), "--listen", "127.0.0.1:0"]
    with running(
        "msewatch serve",
        lambda _port: [*command, *args],
        lambda server: _SERVING.search(server.log()) is not None,
        log_path,
        START_SECONDS,
        unavailable=pytest.fail,
    ) as server:
        yield _SERVING.search(server.log()).group(1)


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
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: msewatch\n"
        f"    honor_labels: {str(honor_labels).lower()}\n"
        f"    static_configs: [{{targets: {json.dumps(targets)}}}]\n"
        f"rule_files: {json.dumps([str(f) for f in rule_files])}\n"
    )
    command = [
        BINARY,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
    ]
    with running(
        "prometheus (or its scrape of every target)",
        lambda port: [*command, f"--web.listen-address=127.0.0.1:{port}"],
        lambda server: _targets_up(server.url, len(targets)),
        tmp_path / "prometheus.log",
        START_SECONDS,
    ) as server:
        yield server.url


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
