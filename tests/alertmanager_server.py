"""A real Alertmanager (Debian's ``prometheus-alertmanager``) on 127.0.0.1 for tests.

:func:`running_alertmanager` starts it with a temporary config and storage path on a
free port, waits until its API answers, yields its URL and stops it. Without the
binary, or when it does not start, the test skips with the reason, unless
``MSEWATCH_REQUIRE_SERVERS=1`` (``.ci/run`` sets it and installs the package), where it
fails instead.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from tests.servers import answers, missing, running

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
CONFIG = Path(__file__).parent.parent / "docs" / "examples" / "alertmanager.yml"


@contextlib.contextmanager
def running_alertmanager(tmp_path: Path):
    """Yields ``http://127.0.0.1:PORT`` of an Alertmanager that runs until the block ends."""
    if BINARY is None:
        missing("prometheus-alertmanager", "apt-get install prometheus-alertmanager")
    storage = tmp_path / "alertmanager-data"
    storage.mkdir()
    command = [
        BINARY,
        f"--config.file={CONFIG}",
        f"--storage.path={storage}",
        "--cluster.listen-address=",
    ]
    with running(
        "prometheus-alertmanager",
        lambda port: [*command, f"--web.listen-address=127.0.0.1:{port}"],
        answers("/api/v2/status"),
        tmp_path / "alertmanager.log",
    ) as server:
        yield server.url
