"""A real single-node Kafka broker (KRaft) on 127.0.0.1 from `msewatch local kafka`."""

from __future__ import annotations

import socket

from msewatch.commands.local import kafka, processes
from tests.local_servers import kafka_options, local, running_kafka


def test_the_broker_answers_kafka_requests_on_loopback_until_stopped(tmp_path):
    with running_kafka(tmp_path / "kafka") as broker:
        pid = processes.running_pid(broker.pid_file)
        assert pid is not None
        assert kafka.api_versions_ok("127.0.0.1", broker.port)
        props = dict(
            line.split("=", 1) for line in broker.config_file.read_text().splitlines() if line
        )
        assert props["listeners"].startswith(f"PLAINTEXT://127.0.0.1:{broker.port},")
        status = local("kafka", "status", *kafka_options(broker))
        assert (status.returncode, status.stdout.strip()) == (
            0,
            f"kafka: running at 127.0.0.1:{broker.port} (pid {pid})",
        )

        stopped = local("kafka", "stop", *kafka_options(broker))
        assert stopped.returncode == 0, stopped.stderr
        assert not processes.alive(pid)
        assert not kafka.api_versions_ok("127.0.0.1", broker.port)
        status = local("kafka", "status", *kafka_options(broker))
        assert status.returncode == 3 and status.stdout.startswith("kafka: stopped")


def test_something_that_is_not_kafka_does_not_pass_for_a_broker():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        # the listener accepts but never answers: no ApiVersions response
        assert not kafka.api_versions_ok("127.0.0.1", port, timeout_s=0.5)
