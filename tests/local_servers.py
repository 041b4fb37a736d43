"""`msewatch local flink|kafka` for tests: started as a user starts them, on free ports.

A cluster that cannot start skips its tests with the reason, except under
``MSEWATCH_REQUIRE_SERVERS=1`` (CI), where the test fails.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from msewatch.local.flink import FlinkSettings
from msewatch.local.kafka import KafkaSettings
from tests.servers import cannot_start, free_port


def local(service: str, action: str, *options: str, timeout_s: float = 600):
    """``python -m msewatch local SERVICE ACTION OPTIONS``, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "msewatch", "local", service, action, *options],
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
    cluster = FlinkSettings(state_dir, rest_port=free_port(), rpc_port=free_port(), **settings)
    options = flink_options(cluster)
    try:
        started = local("flink", "start", *options)
        if started.returncode != 0:
            cannot_start(f"local Flink did not start: {started.stderr.strip()[-500:]}")
        yield cluster
    finally:
        local("flink", "stop", *options, timeout_s=120)


@contextlib.contextmanager
def running_kafka(state_dir: Path) -> Iterator[KafkaSettings]:
    """A local Kafka broker for the block; stopped after it."""
    broker = KafkaSettings(state_dir, port=free_port(), controller_port=free_port())
    options = kafka_options(broker)
    try:
        started = local("kafka", "start", *options)
        if started.returncode != 0:
            cannot_start(f"local Kafka did not start: {started.stderr.strip()[-500:]}")
        yield broker
    finally:
        local("kafka", "stop", *options, timeout_s=120)
