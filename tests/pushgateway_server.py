"""A real Prometheus Pushgateway (Debian's ``prometheus-pushgateway``) on 127.0.0.1, for
tests: :func:`running_pushgateway` starts it on a free port with its persistence in a
temporary file, waits until ``/-/ready`` answers, yields its URL and stops it. Not
installed or not starting: the test skips, or fails under ``MSEWATCH_REQUIRE_SERVERS=1``
(``.ci/run`` sets it and installs the package)."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from tests.servers import answers, missing, running

BINARY = shutil.which("prometheus-pushgateway")


@contextlib.contextmanager
def running_pushgateway(tmp_path: Path):
    """Yields ``http://127.0.0.1:PORT`` of a Pushgateway that runs until the block ends."""
    if BINARY is None:
        missing("prometheus-pushgateway", "apt-get install prometheus-pushgateway")
    persistence = f"--persistence.file={tmp_path / 'pushgateway.data'}"
    with running(
        "prometheus-pushgateway",
        lambda port: [BINARY, f"--web.listen-address=127.0.0.1:{port}", persistence],
        answers("/-/ready"),
        tmp_path / "pushgateway.log",
    ) as server:
        yield server.url
