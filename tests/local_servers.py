"""`msewatch local flink|kafka` for tests: started as a user starts them, on free ports.

A cluster that cannot start skips its tests with the reason, except under
``MSEWATCH_REQUIRE_SERVERS=1`` (CI), where the test fails.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from msewatch.commands.local.flink import FlinkSettings
from msewatch.commands.local.kafka import KafkaSettings
from tests.servers import cannot_start, free_port

FLINK_PYTHON_ENV = "MSEWATCH_FLINK_PYTHON"


def flink_python() -> str:
    """The Python whose apache-beam matches the Flink stack Maven Central serves (2.62).

    ``make test`` builds it (``.venv-flink``, runners/flink-constraints.txt) and names it
    in ``$MSEWATCH_FLINK_PYTHON``; the Flink tests run ``msewatch`` with it. Without it
    they skip (fail under ``MSEWATCH_REQUIRE_SERVERS=1``).
    """
    path = os.environ.get(FLINK_PYTHON_ENV) or str(
        Path(__file__).resolve().parent.parent / ".venv-flink" / "bin" / "python"
    )
    if not os.path.isfile(path):
        cannot_start(
            f"no Python with the Flink stack's Beam release at {path}: `make flink-env` "
            f"builds it (or set {FLINK_PYTHON_ENV})"
        )
    return path


@functools.cache
def flink_release() -> str:
    """The Flink release ``msewatch local flink start`` runs under :func:`flink_python`."""
    done = subprocess.run(
        [
            flink_python(),
            "-c",
            "from msewatch.runners import java_services as j; print(j.flink_release())",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def local(service: str, action: str, *options: str, timeout_s: float = 600):
    """``msewatch local SERVICE ACTION OPTIONS`` (Flink: with :func:`flink_python`, so
    the cluster is the release its Beam runs on), its output captured."""
    python = flink_python() if service == "flink" else sys.executable
    return subprocess.run(
        [python, "-m", "msewatch", "local", service, action, *options],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def flink_options(settings: FlinkSettings) -> list[str]:
    return [
        f"--port={settings.rest_port}",
        f"--rpc-port={settings.rpc_port}",
        f"--slots={settings.slots}",
        f"--checkpoint-interval={settings.checkpoint_interval_s}s",
        f"--state-dir={settings.state_dir}",
        f"--flink-version={settings.flink_version}",
    ]


def kafka_options(settings: KafkaSettings) -> list[str]:
    return [
        f"--port={settings.port}",
        f"--controller-port={settings.controller_port}",
        f"--state-dir={settings.state_dir}",
    ]


@contextlib.contextmanager
def running_flink(state_dir: Path, **settings) -> Iterator[FlinkSettings]:
    """A local Flink cluster for the block; stopped after it."""
    settings.setdefault("flink_version", flink_release())
    cluster = FlinkSettings(state_dir, rest_port=free_port(), rpc_port=free_port(), **settings)
    with _running_local("flink", "Flink", flink_options(cluster)):
        yield cluster


@contextlib.contextmanager
def running_kafka(state_dir: Path) -> Iterator[KafkaSettings]:
    """A local Kafka broker for the block; stopped after it."""
    broker = KafkaSettings(state_dir, port=free_port(), controller_port=free_port())
    with _running_local("kafka", "Kafka", kafka_options(broker)):
        yield broker


@contextlib.contextmanager
def _running_local(service: str, name: str, options: list[str]) -> Iterator[None]:
    """``msewatch local SERVICE start OPTIONS`` (it returns once the service is up) for
    the block, ``... stop OPTIONS`` after it, even when it did not start. Not like
    :func:`tests.servers.running`: the command starts the service's own daemons and
    stops them, so there is no process of ours to wait on or stop."""
    try:
        started = local(service, "start", *options)
        if started.returncode != 0:
            cannot_start(f"local {name} did not start: {started.stderr.strip()[-500:]}")
        yield
    finally:
        local(service, "stop", *options, timeout_s=120)
