"""start, stop and check a local Flink cluster or Kafka broker on 127.0.0.1

``msewatch local flink start|stop|status`` and ``msewatch local kafka
start|stop|status``. The software is downloaded once into ``$MSEWATCH_CACHE``
(``~/.cache/msewatch``; see :mod:`msewatch.commands.local.downloads`); each cluster keeps its
configuration, pid files, logs and data in ``--state-dir`` (default
``$MSEWATCH_CACHE/local/flink`` or ``.../kafka``). Exit status: 0 when the command
did what it says (``status``: running), 3 when ``status`` finds it stopped, 1 when it
could not start (one ``msewatch: error:`` line naming the log to read).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from msewatch.commands.arguments import whole_seconds
from msewatch.commands.local import downloads
from msewatch.runners import java_services

EXIT_FAILED = 1
EXIT_STOPPED = 3  # as an LSB init script's `status`
ACTIONS = ("start", "stop", "status")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``flink`` and ``kafka``, each with ``start|stop|status`` and its options."""
    sub = parser.add_subparsers(dest="service", required=True, metavar="SERVICE")
    f = sub.add_parser(
        "flink",
        help="a standalone Flink cluster (JobManager + TaskManager) of the release the "
        "installed Beam's Flink runner was built for",
    )
    f.add_argument("action", choices=ACTIONS)
    f.add_argument("--port", type=int, default=8081, help="REST API and web UI port (8081)")
    f.add_argument("--rpc-port", type=int, default=6123, help="JobManager RPC port (6123)")
    f.add_argument("--slots", type=int, default=2, help="TaskManager slots = parallelism (2)")
    f.add_argument(
        "--checkpoint-interval",
        type=whole_seconds,
        default=10,
        help="checkpoint interval of streaming jobs (10s)",
    )
    f.add_argument("--state-dir", type=Path, help="config, pid files, logs, checkpoints")
    f.add_argument(
        "--flink-version",
        choices=sorted(java_services.FLINK_RELEASES.values()),
        help="the Flink release (default: the one the installed Beam runs on)",
    )
    k = sub.add_parser("kafka", help="a single-node Kafka broker (KRaft)")
    k.add_argument("action", choices=ACTIONS)
    k.add_argument("--port", type=int, default=9092, help="client port (9092)")
    k.add_argument("--controller-port", type=int, default=9093, help="KRaft controller (9093)")
    k.add_argument("--state-dir", type=Path, help="config, data, pid file, log")


def flink_settings(args: argparse.Namespace):
    """The local Flink cluster's settings (:class:`msewatch.commands.local.flink.FlinkSettings`)."""
    from msewatch.commands.local import flink  # it imports Beam's Flink runner: only when used

    return flink.FlinkSettings(
        state_dir=args.state_dir or downloads.cache_dir() / "local" / "flink",
        rest_port=args.port,
        rpc_port=args.rpc_port,
        slots=args.slots,
        checkpoint_interval_s=args.checkpoint_interval,
        **({"flink_version": args.flink_version} if args.flink_version else {}),
    )


def kafka_settings(args: argparse.Namespace):
    """The local Kafka broker's settings (:class:`msewatch.commands.local.kafka.KafkaSettings`)."""
    from msewatch.commands.local import kafka

    return kafka.KafkaSettings(
        state_dir=args.state_dir or downloads.cache_dir() / "local" / "kafka",
        port=args.port,
        controller_port=args.controller_port,
    )


def run(args: argparse.Namespace) -> int:
    """Runs ``msewatch local SERVICE ACTION``; returns the exit status."""
    from msewatch.commands.local import flink, kafka

    service = flink if args.service == "flink" else kafka
    settings = flink_settings(args) if service is flink else kafka_settings(args)
    try:
        if args.action == "start":
            service.start(settings)
        elif args.action == "stop":
            service.stop(settings)
    except (downloads.DownloadError, flink.FlinkError, kafka.KafkaError) as err:
        print(f"msewatch: error: {err}", file=sys.stderr)
        return EXIT_FAILED
    line = service.describe(settings)
    print(line)
    if args.action == "status" and not line.split(": ", 1)[1].startswith("running"):
        return EXIT_STOPPED
    return 0
