"""A standalone Flink cluster on 127.0.0.1: one JobManager and one TaskManager process.

It runs the Flink release the installed Beam's Flink runner was built for (1.19.3 for
apache-beam 2.62; ``--flink-version`` to choose another).

``msewatch local flink start`` writes ``STATE/conf/config.yaml`` from the
distribution's own (Java 17 ``--add-opens`` flags included) with every address on
127.0.0.1, the REST port (8081), the JobManager's RPC port (6123), the TaskManager's
slots (2, also the default parallelism), and the job settings a streaming msewatch
run needs: the RocksDB state backend, checkpoints every ``checkpoint_interval_s``
(10 s) into ``STATE/checkpoints`` (kept when a job is cancelled), exactly once.
Then it starts ``bin/jobmanager.sh start-foreground`` and ``bin/taskmanager.sh
start-foreground`` detached (the scripts ``exec`` the JVM, so the pid files hold the
JVMs' pids), and waits until the REST API lists the TaskManager.

``STATE`` is ``--state-dir`` (default ``$MSEWATCH_CACHE/local/flink``); logs go to
``STATE/log``. Flink's REST API answers ``GET /overview`` and ``GET /jobs/overview``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import yaml

from msewatch.commands.local import downloads, processes
from msewatch.runners import java_services
from msewatch.runners.flink import overview  # noqa: F401 (this module's API too)

LOCALHOST = "127.0.0.1"
ROLES = ("jobmanager", "taskmanager")


class FlinkError(RuntimeError):
    """The cluster did not start or does not answer; the message says where to look."""


@dataclasses.dataclass(frozen=True)
class FlinkSettings:
    """One local cluster.

    Attributes:
        state_dir: its configuration, pid files, logs and checkpoints.
        rest_port: the JobManager's REST API (and web UI) port.
        rpc_port: the JobManager's RPC port (TaskManagers connect to it).
        slots: task slots of the TaskManager, and the default parallelism.
        checkpoint_interval_s: seconds between checkpoints of streaming jobs.
        flink_version: the Flink release to run (default: the one the installed Beam's
            Flink runner was built for, :func:`java_services.flink_release`).
    """

    state_dir: Path
    rest_port: int = 8081
    rpc_port: int = 6123
    slots: int = 2
    checkpoint_interval_s: int = 10
    flink_version: str = dataclasses.field(default_factory=java_services.flink_release)

    def __post_init__(self):
        processes.check_ports(self, ("rest_port", "rpc_port"), "the REST and RPC ports")
        if self.slots < 1 or self.checkpoint_interval_s < 1:
            raise ValueError("slots and checkpoint_interval_s must be 1 or more")
        object.__setattr__(self, "state_dir", Path(self.state_dir).absolute())

    @property
    def rest_url(self) -> str:
        return f"http://{LOCALHOST}:{self.rest_port}"

    def pid_file(self, role: str) -> Path:
        return self.state_dir / f"{role}.pid"

    def log_file(self, role: str) -> Path:
        return self.state_dir / "log" / f"{role}.out"


def _set(conf: dict, dotted: str, value) -> None:
    node = conf
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def write_config(settings: FlinkSettings, home: Path) -> Path:
    """``STATE/conf`` from the distribution's configuration and ``settings``."""
    conf_dir = settings.state_dir / "conf"
    conf_dir.mkdir(parents=True, exist_ok=True)
    conf = yaml.safe_load((home / "conf" / "config.yaml").read_text()) or {}
    for dotted, value in {
        "jobmanager.bind-host": LOCALHOST,
        "jobmanager.rpc.address": LOCALHOST,
        "jobmanager.rpc.port": settings.rpc_port,
        "jobmanager.memory.process.size": "1024m",
        "taskmanager.bind-host": LOCALHOST,
        "taskmanager.host": LOCALHOST,
        "taskmanager.numberOfTaskSlots": settings.slots,
        "taskmanager.memory.process.size": "2560m",
        # each Beam job loads its ~190 staged jars in a class loader of its own:
        # Flink's 256 MiB of metaspace ran out after a few jobs
        "taskmanager.memory.jvm-metaspace.size": "768m",
        # msewatch's Beam graph has many exchanges: with Flink's default fraction
        # (~150 MiB) --parallelism 2 ran out of buffers; 256 MiB is 8192 of 32 KiB
        "taskmanager.memory.network.min": "256m",
        "taskmanager.memory.network.max": "256m",
        "rest.address": LOCALHOST,
        "rest.bind-address": LOCALHOST,
        "rest.port": settings.rest_port,
        "parallelism.default": settings.slots,
        "state.backend.type": "rocksdb",
        "state.checkpoints.dir": (settings.state_dir / "checkpoints").as_uri(),
        "execution.checkpointing.interval": f"{settings.checkpoint_interval_s} s",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
    }.items():
        _set(conf, dotted, value)
    (conf_dir / "config.yaml").write_text(yaml.safe_dump(conf, sort_keys=False))
    for name in ("log4j-console.properties", "log4j.properties"):
        (conf_dir / name).write_bytes((home / "conf" / name).read_bytes())
    return conf_dir


def start_role(settings: FlinkSettings, role: str, home: Path | None = None) -> int:
    """Starts the JobManager or the TaskManager (its pid); no-op if it runs already."""
    pid = processes.running_pid(settings.pid_file(role))
    if pid is not None:
        return pid
    home = home or downloads.flink_home(settings.flink_version)
    downloads.require_tool("java", "Flink runs on Java 11 or 17")
    env = {
        **os.environ,
        "FLINK_CONF_DIR": str(settings.state_dir / "conf"),
        "FLINK_LOG_DIR": str(settings.state_dir / "log"),
    }
    return processes.start(
        ["bash", str(home / "bin" / f"{role}.sh"), "start-foreground"],
        pid_file=settings.pid_file(role),
        log_file=settings.log_file(role),
        marker=str(settings.state_dir / "log"),  # in the JVM's -Dlog.file=...
        env=env,
    )


def start(settings: FlinkSettings, timeout_s: float = 120.0) -> dict:
    """Starts the cluster (or finds it running) and waits for a registered TaskManager.

    Returns:
        Flink's ``/overview``.

    Raises:
        FlinkError: it did not come up in ``timeout_s``; the logs' last lines say why.
        downloads.DownloadError: Flink could not be installed.
    """
    home = downloads.flink_home(settings.flink_version)
    if not any(processes.running_pid(settings.pid_file(r)) for r in ROLES):
        write_config(settings, home)
    for role in ROLES:
        start_role(settings, role, home)
    return wait_ready(settings, timeout_s)


def wait_ready(settings: FlinkSettings, timeout_s: float = 120.0, taskmanagers: int = 1) -> dict:
    """Waits until ``/overview`` lists ``taskmanagers`` TaskManagers; returns it.

    Raises:
        FlinkError: not in ``timeout_s``, or a process died.
    """
    seen: dict = {}

    def ready() -> bool:
        for role in ROLES:
            if processes.running_pid(settings.pid_file(role)) is None:
                tail = processes.log_tail(settings.log_file(role))
                raise FlinkError(f"the Flink {role} exited: {tail}")
        try:
            seen.update(overview(settings.rest_url))
        except OSError:
            return False
        return seen.get("taskmanagers", 0) >= taskmanagers

    if not processes.wait_for(ready, timeout_s):
        raise FlinkError(
            f"no Flink TaskManager registered at {settings.rest_url} in {timeout_s:.0f} s; "
            f"see {settings.state_dir / 'log'}"
        )
    return seen


def status(settings: FlinkSettings) -> tuple[dict[str, int | None], dict | None]:
    """The pid of each role (None: not running) and ``/overview`` (None: no answer)."""
    pids = {role: processes.running_pid(settings.pid_file(role)) for role in ROLES}
    try:
        return pids, overview(settings.rest_url)
    except OSError:
        return pids, None


def stop(settings: FlinkSettings) -> dict[str, int | None]:
    """Stops the TaskManager, then the JobManager; returns the pids stopped."""
    return {role: processes.stop(settings.pid_file(role)) for role in reversed(ROLES)}


def jobs(settings: FlinkSettings) -> list[dict]:
    """Flink's ``/jobs/overview``: one dict per job (``jid``, ``name``, ``state``, ...)."""
    return overview(settings.rest_url, "/jobs/overview").get("jobs", [])


def describe(settings: FlinkSettings) -> str:
    """One line for ``msewatch local flink status``."""
    pids, info = status(settings)
    procs = ", ".join(f"{role} pid {pid}" for role, pid in pids.items() if pid)
    if info is None:
        if procs:
            return f"flink: starting or broken ({procs}); no answer at {settings.rest_url}"
        return f"flink: stopped (state in {settings.state_dir})"
    return (
        f"flink: running at {settings.rest_url} (Flink {info.get('flink-version')}, "
        f"{info.get('taskmanagers')} TaskManager, {info.get('slots-total')} slots, "
        f"{info.get('jobs-running')} jobs running; {procs or 'not started by msewatch'})"
    )
