"""A single-node Kafka broker in KRaft mode (broker and controller in one JVM) on 127.0.0.1.

``msewatch local kafka start`` writes ``STATE/server.properties`` (clients on
127.0.0.1:``port``, 9092; the controller on 127.0.0.1:``controller_port``, 9093;
one partition per new topic, replication factor 1, no time-based retention), formats
``STATE/data`` with ``kafka.tools.StorageTool format`` the first time, then runs ``kafka.Kafka``
detached with the jars of ``org.apache.kafka:kafka_2.13`` from the cache, and waits
until the broker answers a Kafka ``ApiVersions`` request. Topics are created when first
written to. ``STATE`` is ``--state-dir`` (default ``$MSEWATCH_CACHE/local/kafka``).
"""

from __future__ import annotations

import base64
import dataclasses
import socket
import struct
import subprocess
import uuid
from pathlib import Path

from msewatch.commands.local import downloads, processes

LOCALHOST = "127.0.0.1"
_API_VERSIONS = 18  # Kafka protocol api key


class KafkaError(RuntimeError):
    """The broker did not start; the message says where to look."""


@dataclasses.dataclass(frozen=True)
class KafkaSettings:
    """One local broker.

    Attributes:
        state_dir: its configuration, data, pid file and log.
        port: the client listener (``bootstrap.servers`` = 127.0.0.1:port).
        controller_port: the KRaft controller listener.
    """

    state_dir: Path
    port: int = 9092
    controller_port: int = 9093

    def __post_init__(self):
        processes.check_ports(self, ("port", "controller_port"), "the client and controller ports")
        object.__setattr__(self, "state_dir", Path(self.state_dir).absolute())

    @property
    def bootstrap(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "kafka.out"

    @property
    def config_file(self) -> Path:
        return self.state_dir / "server.properties"


def write_config(settings: KafkaSettings) -> Path:
    """``STATE/server.properties`` for a one-node KRaft cluster on 127.0.0.1."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{LOCALHOST}:{settings.controller_port}",
        "listeners": (
            f"PLAINTEXT://{LOCALHOST}:{settings.port},CONTROLLER://{LOCALHOST}:"
            f"{settings.controller_port}"
        ),
        "advertised.listeners": f"PLAINTEXT://{settings.bootstrap}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(settings.state_dir / "data"),
        "num.partitions": "1",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # keep records whatever their timestamps: time-based retention (7 days by
        # default) deletes a replay of last month's predictions as soon as it is written
        "log.retention.ms": "-1",
    }
    settings.config_file.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    return settings.config_file


def _java_cmd(libs: Path, main: str, *args: str) -> list[str]:
    return ["java", "-Xmx512m", "-cp", str(libs / "*"), main, *args]


def start(settings: KafkaSettings, timeout_s: float = 60.0) -> int:
    """Starts the broker (or finds it running) and waits until it answers.

    Returns:
        The broker's pid.

    Raises:
        KafkaError: it did not answer in ``timeout_s``; the log's last lines say why.
        downloads.DownloadError: Java or Maven missing, or the download failed.
    """
    pid = processes.running_pid(settings.pid_file)
    if pid is None:
        libs = downloads.kafka_libs()
        downloads.require_tool("java", "the Kafka broker runs on Java 17")
        write_config(settings)
        if not (settings.state_dir / "data" / "meta.properties").exists():
            cluster_id = _cluster_id()
            done = subprocess.run(
                _java_cmd(libs, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c")
                + [str(settings.config_file)],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise KafkaError(f"formatting {settings.state_dir / 'data'} failed: {done.stderr}")
        pid = processes.start(
            _java_cmd(libs, "kafka.Kafka", str(settings.config_file)),
            pid_file=settings.pid_file,
            log_file=settings.log_file,
            marker=str(settings.config_file),
        )
    if not processes.wait_for(lambda: _ready(settings), timeout_s):
        raise KafkaError(
            f"the Kafka broker did not answer at {settings.bootstrap} in {timeout_s:.0f} s: "
            f"{processes.log_tail(settings.log_file)} (log: {settings.log_file})"
        )
    return pid


def _ready(settings: KafkaSettings) -> bool:
    if processes.running_pid(settings.pid_file) is None:
        raise KafkaError(f"the Kafka broker exited: {processes.log_tail(settings.log_file)}")
    return api_versions_ok(LOCALHOST, settings.port)


def _cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding, not
    starting with ``-`` (which Kafka's tools would read as an option)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def api_versions_ok(host: str, port: int, timeout_s: float = 2.0) -> bool:
    """Whether a Kafka broker answers an ``ApiVersions`` (v0) request without error.

    The request is the protocol's smallest: size, api key 18, version 0, correlation
    id, client id; the response starts with size, correlation id and an error code.
    """
    client = b"msewatch"
    body = struct.pack(">hhih", _API_VERSIONS, 0, 7, len(client)) + client
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            head = b""
            while len(head) < 10:
                chunk = sock.recv(10 - len(head))
                if not chunk:
                    return False
                head += chunk
    except OSError:
        return False
    _, correlation, error = struct.unpack(">iih", head)
    return correlation == 7 and error == 0


def status(settings: KafkaSettings) -> tuple[int | None, bool]:
    """The broker's pid (None: not running) and whether it answers."""
    return processes.running_pid(settings.pid_file), api_versions_ok(LOCALHOST, settings.port)


def stop(settings: KafkaSettings) -> int | None:
    """Stops the broker (a controlled shutdown on SIGTERM); returns its pid."""
    return processes.stop(settings.pid_file, timeout_s=60.0)


def describe(settings: KafkaSettings) -> str:
    """One line for ``msewatch local kafka status``."""
    pid, answers = status(settings)
    if answers:
        who = f"pid {pid}" if pid else "not started by msewatch"
        return f"kafka: running at {settings.bootstrap} ({who})"
    if pid:
        return f"kafka: starting or broken (pid {pid}); no answer at {settings.bootstrap}"
    return f"kafka: stopped (state in {settings.state_dir})"
