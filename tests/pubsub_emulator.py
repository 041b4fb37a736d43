"""The Google Cloud CLI's Pub/Sub emulator for tests, and the streaming job it feeds.

* :func:`running_emulator` starts ``gcloud beta emulators pubsub start
  --host-port=127.0.0.1:PORT`` on a free loopback port with :func:`tests.servers.running`
  (a process group of its own), waits (bounded) until it listens, yields a
  :class:`PubSubEmulator`, and stops the whole group at exit (gcloud starts a Java child
  that outlives gcloud alone). When it cannot start the test skips with the reason
  (fails under ``MSEWATCH_REQUIRE_SERVERS=1``).
* :class:`PubSubEmulator` creates topics and subscriptions and publishes with the
  ``google-cloud-pubsub`` clients, pointed at the emulator by ``PUBSUB_EMULATOR_HOST``.
* ``python -m tests.pubsub_emulator --predictions SUB --labels SUB --output DIR``
  runs the real ``build(p, config, PubSubSource(...))`` on the streaming
  ``BundleBasedDirectRunner``. Tests start it as a subprocess with
  ``PUBSUB_EMULATOR_HOST`` in its environment (``start_new_session=True``) and stop it
  with :func:`tests.servers.stop` when they are done: an unbounded pipeline never
  finishes by itself. It prints ``PIPELINE STARTED`` once
  the runner is running.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.servers import cannot_start, listening, missing, running

PROJECT = "msewatch-test"
STARTED = "PIPELINE STARTED"


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


@contextlib.contextmanager
def running_emulator(log_path: Path, start_seconds: float = 60.0) -> Iterator[PubSubEmulator]:
    """Starts the emulator on 127.0.0.1:free-port, its output in ``log_path``; stops it
    (and its children) at exit. Skips (fails under ``MSEWATCH_REQUIRE_SERVERS=1``) when
    gcloud or Java is missing or the emulator does not start."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        cannot_start("gcloud (the Google Cloud CLI, with its beta components) is not on PATH")
    if shutil.which("java") is None:
        missing("java (the Pub/Sub emulator needs it)", "apt-get install default-jre-headless")
    start = [gcloud, "beta", "emulators", "pubsub", "start"]
    with running(
        "the Pub/Sub emulator",
        lambda port: [*start, f"--host-port=127.0.0.1:{port}"],
        listening,
        log_path,
        start_seconds,
    ) as server:
        emulator = PubSubEmulator(f"127.0.0.1:{server.port}")
        try:
            yield emulator
        finally:
            emulator.close()


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
