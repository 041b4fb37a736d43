"""FlinkRunner's defaults for a Flink cluster, checked before anything is submitted.

``msewatch run --runner FlinkRunner --flink-master HOST:PORT`` first asks the
cluster's REST API (``GET /overview``) and stops with one line when nothing answers.
Then :func:`flink_flags` fills what the user left out:

* ``--flink_version``: the cluster's own (``1.20`` for ``1.20.3``); Beam's default is
  its newest supported Flink, which a 1.20 cluster would refuse. A given version that
  differs from the cluster's is refused.
* ``--environment_type=LOOPBACK`` when the JobManager is on this machine (127.0.0.1,
  localhost): the TaskManager calls back into this process for the Python steps, so
  neither Docker nor a staged sdist is needed. A remote cluster keeps Beam's default
  (DOCKER with ``--sdk_container_image``) or the user's ``EXTERNAL`` worker pool.
* ``--flink_job_server_jar``: Beam's job server of the installed SDK's release for
  that Flink version, resolved from Maven Central's published jars into
  ``$MSEWATCH_CACHE/beam-java`` (:mod:`msewatch.runners.java_services`). When it cannot
  be had, one line says so and which Beam release to install. A jar the user passes
  must be of the SDK's Beam release (checked in the jar).
* ``--checkpointing_interval`` (streaming runs): the cluster's own
  ``execution.checkpointing.interval``; Beam's job server builds the job's checkpoint
  settings itself and would otherwise submit it without checkpoints. The state backend
  and checkpoint storage are the cluster's (``state.backend.type``,
  ``state.checkpoints.dir``).
* ``--job_server_jvm_properties``: the ``--add-opens`` flags the job server needs on
  Java 17 and newer (``java.lang``, ``java.nio``, ``java.util``).

``--flink_master=[local]`` (an embedded MiniCluster in the job server) and ``[auto]``
skip the REST check but get the jar and the Java flags.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import time
import urllib.parse
import urllib.request

from apache_beam.options.pipeline_options import FlinkRunnerOptions, PipelineOptions

from msewatch.runners import java_services, presets
from msewatch.runners.cache import DownloadError

MAGIC_MASTERS = ("[local]", "[auto]")
JAVA17_OPENS = tuple(
    f"--add-opens=java.base/{package}=ALL-UNNAMED"
    for package in ("java.lang", "java.nio", "java.util")
)


def overview(rest_url: str, path: str = "/overview", timeout_s: float = 3.0) -> dict:
    """``GET rest_url + path`` of Flink's REST API, as JSON.

    Raises:
        OSError: nothing answers, or not with JSON (``urllib.error.URLError`` is one).
    """
    with urllib.request.urlopen(rest_url.rstrip("/") + path, timeout=timeout_s) as response:
        try:
            return json.load(response)
        except ValueError as err:
            raise OSError(f"{rest_url}{path} did not answer with JSON") from err


def rest_url(master: str) -> str:
    """``http://HOST:PORT`` for a ``--flink_master`` given with or without a scheme."""
    master = master.strip().rstrip("/")
    return master if re.match(r"^https?://", master) else f"http://{master}"


def is_local(master: str) -> bool:
    """Whether the JobManager address is on this machine."""
    host = urllib.parse.urlsplit(rest_url(master)).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cluster_version(master: str) -> str:
    """The cluster's Flink version as ``MAJOR.MINOR``, from ``GET /overview``.

    Raises:
        ValueError: nothing answers there (one line: what to do).
    """
    url = rest_url(master)
    try:
        info = overview(url)
    except OSError as err:
        reason = getattr(err, "reason", None) or err
        raise ValueError(
            f"no Flink cluster answers at {url} (GET /overview: {reason}); start one with "
            "`msewatch local flink start` or check --flink-master"
        ) from None
    full = str(info.get("flink-version", ""))
    match = re.match(r"^(\d+\.\d+)", full)
    if not match:
        raise ValueError(f"{url}/overview does not name a Flink version; is it a JobManager?")
    return match.group(1)


def java_major() -> int | None:
    """The major version of ``java`` on PATH (17 for 17.0.15), None when absent."""
    try:
        done = subprocess.run(
            ["java", "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


_FLINK_DURATION = re.compile(r"^\s*(\d+)\s*(ms|milli|millis|s|sec|secs|min|m|h)?\s*$")
_DURATION_MS = {None: 1, "ms": 1, "milli": 1, "millis": 1, "s": 1000, "sec": 1000, "secs": 1000}
_DURATION_MS.update({"min": 60_000, "m": 60_000, "h": 3_600_000})


def checkpoint_interval_ms(master: str) -> int | None:
    """The cluster's ``execution.checkpointing.interval`` in ms (None: not set or unread)."""
    try:
        entries = overview(rest_url(master), "/jobmanager/config")
    except OSError:
        return None
    config = {e.get("key"): e.get("value") for e in entries if isinstance(e, dict)}
    match = _FLINK_DURATION.match(str(config.get("execution.checkpointing.interval", "")))
    return int(match.group(1)) * _DURATION_MS[match.group(2)] if match else None


def cancel_job(master: str, beam_job_id: str, timeout_s: float = 60) -> str | None:
    """Cancels, through Flink's REST API, the running job that Beam submitted as
    ``beam_job_id``; returns its last state (None: no such job is running).

    Beam 2.62's Flink job server "cancels" a job by interrupting the thread that
    submitted it: the job goes on running on a remote or standalone cluster (its
    LOOPBACK workers gone with msewatch). Flink names the job after Beam's job id
    without its ``_<uuid>`` tail.
    """
    base = rest_url(master)
    name = beam_job_id.split("_", 1)[0]
    deadline = time.monotonic() + timeout_s
    jobs = _patient(lambda: overview(base, "/jobs/overview", _REST_TIMEOUT_S), deadline)
    running = [
        job["jid"]
        for job in jobs.get("jobs", [])
        if job.get("name") == name and job.get("state") not in _FLINK_TERMINAL
    ]
    if not running:
        return None
    for jid in running:
        request = urllib.request.Request(f"{base}/jobs/{jid}?mode=cancel", method="PATCH")
        _patient(lambda r=request: urllib.request.urlopen(r, timeout=_REST_TIMEOUT_S).close(),
                 deadline)  # fmt: skip
    while True:
        states = {
            _patient(lambda j=jid: overview(base, f"/jobs/{j}", _REST_TIMEOUT_S), deadline)["state"]
            for jid in running
        }
        if states <= _FLINK_TERMINAL or time.monotonic() > deadline:
            return ", ".join(sorted(states))
        time.sleep(0.5)


_REST_TIMEOUT_S = 15.0  # a JobManager busy cancelling answers slowly on a loaded machine


def _patient(call, deadline: float):
    """``call()``, tried again on OSError (a timeout, a refused connection) until
    ``deadline`` (monotonic); the last error is raised then."""
    while True:
        try:
            return call()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


_FLINK_TERMINAL = {"CANCELED", "FAILED", "FINISHED"}


def flink_flags(beam_args: list[str], streaming: bool = False) -> list[str]:
    """The FlinkRunner options to add to ``beam_args`` (never one the user gave).

    Raises:
        ValueError: the cluster does not answer, runs a Flink version Beam has no job
            server for, differs from ``--flink_version``, or the jar cannot be had.
    """
    args = presets.normalize_beam_args(beam_args)
    given = presets.given_options(args)
    if "flink_master" not in given:
        return []  # the preset says it is required
    options = PipelineOptions(args).view_as(FlinkRunnerOptions)
    master = (options.flink_master or "[auto]").strip()
    version = options.flink_version
    flags = []
    if master not in MAGIC_MASTERS:
        version = cluster_version(master)
        supported = FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS
        if version not in supported:
            raise ValueError(
                f"the cluster at {rest_url(master)} runs Flink {version}; Beam's FlinkRunner "
                f"supports {', '.join(supported)}"
            )
        if "flink_version" in given and options.flink_version != version:
            raise ValueError(
                f"--flink_version {options.flink_version} differs from the cluster's Flink "
                f"{version}: leave it out or pass --flink_version {version}"
            )
        if "flink_version" not in given:
            flags.append(f"--flink_version={version}")
        if "environment_type" not in given and is_local(master):
            flags.append("--environment_type=LOOPBACK")
        if streaming and "checkpointing_interval" not in given:
            # a job submitted through Beam's job server does not take the cluster's
            # interval by itself; without checkpoints a crash loses the join's state
            interval = checkpoint_interval_ms(master)
            if interval:
                flags.append(f"--checkpointing_interval={interval}")
    if "flink_job_server_jar" in given:
        java_services.check_same_release(options.flink_job_server_jar, "--flink_job_server_jar")
    else:
        try:
            flags.append(f"--flink_job_server_jar={java_services.job_server_jar(version)}")
        except DownloadError as err:
            raise ValueError(str(err)) from None
    if "job_server_jvm_properties" not in given and (java_major() or 0) >= 17:
        flags += [f"--job_server_jvm_properties={flag}" for flag in JAVA17_OPENS]
    return flags
