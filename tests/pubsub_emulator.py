"""The Google Cloud CLI's Pub/Sub emulator for tests, and the streaming job it feeds.

* :func:`running_emulator` starts ``gcloud beta emulators pubsub start
  --host-port=127.0.0.1:PORT`` on a free loopback port in a process group of its own,
  waits (bounded) until it answers, yields a :class:`PubSubEmulator`, and stops the
  whole group at exit (gcloud starts a Java child that outlives gcloud alone).
  It raises :class:`EmulatorUnavailable` with the reason when it cannot start.
* :class:`PubSubEmulator` creates topics and subscriptions and publishes with the
  ``google-cloud-pubsub`` clients, pointed at the emulator by ``PUBSUB_EMULATOR_HOST``.
* ``python -m tests.pubsub_emulator --predictions SUB --labels SUB --output DIR``
  runs the real ``build(p, config, PubSubSource(...))`` on the streaming
  ``BundleBasedDirectRunner``. Tests start it as a subprocess with
  ``PUBSUB_EMULATOR_HOST`` in its environment and kill it when they are done: an
  unbounded pipeline never finishes by itself. It prints ``PIPELINE STARTED`` once
  the runner is running.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

from tests.servers import free_port

PROJECT = "msewatch-test"
STARTED = "PIPELINE STARTED"


class EmulatorUnavailable(RuntimeError):
    """The emulator could not be started here; the message says why."""


def emulator_env(host: str) -> dict[str, str]:
    """Environment of a process that talks to the emulator at ``host``."""
    env = dict(os.environ, PUBSUB_EMULATOR_HOST=host, PUBSUB_PROJECT_ID=PROJECT)
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    return env


class PubSubEmulator:
    """A running emulator at ``host`` (``127.0.0.1:PORT``)."""

    def __init__(self, host: str):
        self.host = host
        self._saved_host = os.environ.get("PUBSUB_EMULATOR_HOST")
        os.environ["PUBSUB_EMULATOR_HOST"] = host  # the clients read it when created
        from google.cloud import pubsub_v1

        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()

    def create_subscription(self, name: str) -> str:
        """Creates topic ``name`` and subscription ``name-sub``; returns the latter's path."""
        topic = self.publisher.topic_path(PROJECT, name)
        self.publisher.create_topic(name=topic, timeout=30)
        sub = self.subscriber.subscription_path(PROJECT, f"{name}-sub")
        self.subscriber.create_subscription(
            name=sub, topic=topic, ack_deadline_seconds=60, timeout=30
        )
        return sub

    def publish(self, name: str, payload: bytes, **attributes: str) -> str:
        """Publishes one message to topic ``name``; returns its message id."""
        topic = self.publisher.topic_path(PROJECT, name)
        return self.publisher.publish(topic, payload, **attributes).result(timeout=30)

    def close(self) -> None:
        self.publisher.stop()
        self.subscriber.close()
        if self._saved_host is None:
            os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        else:
            os.environ["PUBSUB_EMULATOR_HOST"] = self._saved_host


def _wait_for_port(host: str, port: int, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmulatorUnavailable(f"the emulator exited with status {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.2)
    raise EmulatorUnavailable(f"the emulator did not listen on {host}:{port} in {timeout_s:.0f} s")


def _stop_group(proc: subprocess.Popen) -> None:
    """Stops the process group led by ``proc`` (a process this module started)."""
    if proc.poll() is None or _group_alive(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 10
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def running_emulator(start_timeout_s: float = 60.0) -> Iterator[PubSubEmulator]:
    """Starts the emulator on 127.0.0.1:free-port; stops it (and its children) at exit.

    Raises:
        EmulatorUnavailable: gcloud or Java is missing, or the emulator did not start.
    """
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise EmulatorUnavailable("gcloud (the Google Cloud CLI) is not on PATH")
    if shutil.which("java") is None:
        raise EmulatorUnavailable("java is not on PATH (the Pub/Sub emulator needs it)")
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="pubsub-emulator-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [gcloud, "beta", "emulators", "pubsub", "start", f"--host-port=127.0.0.1:{port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    emulator = None
    try:
        try:
            _wait_for_port("127.0.0.1", port, proc, start_timeout_s)
        except EmulatorUnavailable as err:
            with open(log.name, errors="replace") as f:
                tail = f.read()[-2000:]
            raise EmulatorUnavailable(f"{err}; its output:\n{tail}") from None
        emulator = PubSubEmulator(f"127.0.0.1:{port}")
        yield emulator
    finally:
        if emulator is not None:
            emulator.close()
        _stop_group(proc)
        log.close()
        os.unlink(log.name)


def stop_process(proc: subprocess.Popen) -> None:
    """Stops a pipeline subprocess started with ``start_new_session=True``."""
    _stop_group(proc)


def _run_pipeline(argv: list[str]) -> None:
    """Runs the streaming pipeline until killed (the body of ``python -m``)."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from msewatch.pipelines.monitor import build
    from msewatch.runners.config import monitor_config
    from msewatch.transforms.io.pubsub import PubSubSource

    parser = argparse.ArgumentParser()
    parser.add_argument("--predictions", required=True)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--window-seconds", type=int, default=10)
    parser.add_argument("--label-ttl-seconds", type=int, default=120)
    parser.add_argument("--early-firing-seconds", type=int, default=1)
    parser.add_argument("--slice", action="append", default=[])
    parser.add_argument("--feature", action="append", default=[])
    args = parser.parse_args(argv)
    features = tuple(args.feature)

    ttl_ms = args.label_ttl_seconds * 1000
    config = monitor_config(
        args.output,
        bounded=False,
        label_ttl_ms=ttl_ms,
        orphan_ttl_ms=ttl_ms,
        window_seconds=args.window_seconds,
        early_firing_seconds=args.early_firing_seconds,
        slices=args.slice,
        features=features,
        shards=2,
        expiry_grid_ms=1,  # exact expiry times
        sink_flush_seconds=5,
    )
    source = PubSubSource(
        args.predictions,
        args.labels,
        config.join.segment_keys,
        max_buffering_seconds=0.5,
        shards=2,
        features=features,
    )
    options = PipelineOptions(["--runner=BundleBasedDirectRunner", "--streaming"])
    p = beam.Pipeline(options=options)
    build(p, config, source)
    result = p.run()
    print(STARTED, flush=True)
    result.wait_until_finish()


if __name__ == "__main__":
    _run_pipeline(sys.argv[1:])
