"""The ``msewatch`` command line: the only module that reads argv.

``msewatch run`` maps its options onto a config and a job (``runners/config.py``)
and launches the pipeline (``runners/launch.py``); the other commands read what a run
wrote: ``generate`` (a sample or a game-day scenario), ``query``, ``report``, ``slo``
(check, status), ``gameday``, ``serve`` (Prometheus, and OTLP with ``--otlp``),
``compare`` and ``local`` (a Flink cluster or Kafka broker on 127.0.0.1). Every
command and option is in the README's "Commands" section; ``msewatch COMMAND --help``
lists them.

User mistakes (bad option values, missing files) print one line to stderr and exit
with status 2; set ``MSEWATCH_DEBUG=1`` to see the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from msewatch.commands.arguments import duration_seconds, whole_seconds

DESCRIPTION = (
    "Continuous MSE/RMSE monitoring of a deployed regression model: join predictions "
    "with late labels on Apache Beam, write windowed error metrics, SLO alerts and "
    "model-version comparisons."
)


class UsageError(Exception):
    """A mistake in the command line or the inputs it names."""


def _millis(text: str) -> int:
    return int(round(duration_seconds(text) * 1000))


def _positive_millis(text: str) -> int:
    millis = _millis(text)
    if millis <= 0:
        raise argparse.ArgumentTypeError(f"duration {text!r} must be at least 1ms")
    return millis


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _add_generate(sub) -> None:
    from msewatch.commands.scenarios import SCENARIOS

    p = sub.add_parser("generate", help="write a realistic sample of predictions and labels")
    p.add_argument("--out", required=True, help="directory to write the sample into")
    p.add_argument("--predictions", type=int, help="predictions (default 20000)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument("--days", type=float, help="days of event time (default 3)")
    p.add_argument(
        "--scenario",
        choices=SCENARIOS,
        help="write a game-day scenario instead: its data, slo.yaml and expected_alerts.json",
    )
    p.add_argument(
        "--format",
        action="append",
        choices=("jsonl", "parquet"),
        help="file formats to write (repeatable; default jsonl)",
    )
    p.add_argument("--no-malformed", action="store_true", help="leave out the malformed lines")


def _add_run(sub) -> None:
    from msewatch.commands import otlp

    p = sub.add_parser(
        "run",
        # Beam options pass through: no prefix matching (--streaming is not --streaming-replay)
        allow_abbrev=False,
        help="join predictions with labels and write windowed error metrics",
        description="Unknown --options are passed to Beam's PipelineOptions "
        "(e.g. --project, --region, --temp_location, --flink_master).",
    )
    p.add_argument(
        "--predictions",
        required=True,
        help="glob of prediction files, or pubsub://projects/P/subscriptions/S or "
        "kafka://HOST:PORT/TOPIC (streaming)",
    )
    p.add_argument(
        "--labels",
        required=True,
        help="glob of label files, or pubsub://... or kafka://... (streaming)",
    )
    p.add_argument(
        "--output",
        required=True,
        help="output directory (Parquet tables) or bq://PROJECT.DATASET (BigQuery)",
    )
    p.add_argument(
        "--bq-location", default="US", help="location of a BigQuery dataset msewatch creates (US)"
    )
    p.add_argument(
        "--bq-api-endpoint", help="BigQuery API root, e.g. an emulator's http://127.0.0.1:PORT"
    )
    p.add_argument("--window", type=whole_seconds, default=3600, help="window length (1h)")
    p.add_argument("--every", type=whole_seconds, help="sliding window period (e.g. 1h)")
    p.add_argument("--label-ttl", type=_millis, default=7 * 86400 * 1000, help="label TTL (7d)")
    p.add_argument("--orphan-ttl", type=_millis, default=3600 * 1000, help="orphan TTL (1h)")
    p.add_argument(
        "--slice",
        action="append",
        default=[],
        help="slice by a segment key or a cross 'a,b' (repeatable)",
    )
    p.add_argument("--max-slice-values", type=_positive_int, default=100, help="per-key cap (100)")
    p.add_argument(
        "--feature",
        action="append",
        default=[],
        metavar="NAME",
        help="sketch this numeric feature of the predictions' features map (repeatable, at"
        " most 32; the SLO file's feature_drift features are added)",
    )
    p.add_argument("--huber-delta", type=float, default=1.0, help="Huber loss delta (1.0)")
    p.add_argument(
        "--shards",
        type=_positive_int,
        help="join shards, hash buckets (1024 on clusters; 16, 2 streaming, on the DirectRunner)",
    )
    p.add_argument(
        "--expiry-grid",
        type=_positive_millis,
        help="expiry timer grid; must divide the window period (default: the largest "
        "divisor of the period shorter than the label TTL; 1ms = exact)",
    )
    p.add_argument("--early-firing", type=whole_seconds, default=60, help="EARLY pane delay (60s)")
    p.add_argument(
        "--sink-flush",
        type=whole_seconds,
        default=60,
        help="streaming runs: processing time between writes of the Parquet tables (60s)",
    )
    p.add_argument(
        "--streaming-replay",
        action="store_true",
        help="replay the files in arrival order through the streaming DirectRunner",
    )
    p.add_argument(
        "--pubsub-expansion-service",
        metavar="HOST:PORT",
        help="Java expansion service for reading Pub/Sub on Flink or another portable runner",
    )
    p.add_argument(
        "--kafka-consumer-group",
        default="msewatch",
        metavar="GROUP",
        help="Kafka consumer group of kafka:// inputs (msewatch); offsets live in Flink's "
        "checkpoints, not in the group",
    )
    p.add_argument(
        "--replay-chunk-rows",
        type=_positive_int,
        help="records per replay step (1/20 of the input, 1000 to 50000)",
    )
    p.add_argument(
        "--runner",
        default="DirectRunner",
        help="DirectRunner (default), PortableRunner, FlinkRunner or DataflowRunner; "
        "see the README for each one's options",
    )
    p.add_argument("--slo", metavar="FILE", help="SLO file (YAML): alerts and slo_status tables")
    p.add_argument(
        "--alertmanager",
        metavar="URL",
        help="Alertmanager to send SLO alert transitions to, e.g. http://127.0.0.1:9093",
    )
    p.add_argument(
        "--alerts-topic",
        metavar="projects/P/topics/T",
        help="Pub/Sub topic for SLO alert transitions (one JSON message each)",
    )
    p.add_argument(
        "--alert-deadline",
        type=duration_seconds,
        default=30.0,
        metavar="DURATION",
        help="deliveries of alerts end within it; what is not delivered by then goes to "
        "dead_letter (30s)",
    )
    p.add_argument(
        "--fail-on-undelivered",
        action="store_true",
        help="exit 1 when an alert could not be delivered (the tables are written all the same)",
    )
    p.add_argument(
        "--pushgateway",
        metavar="URL",
        help="push the run's latest metrics (those of msewatch serve) to this Prometheus "
        "Pushgateway at the end, e.g. http://127.0.0.1:9091",
    )
    p.add_argument(
        "--pushgateway-job",
        default="msewatch",
        metavar="JOB",
        help="the Pushgateway job to push under (msewatch)",
    )
    p.add_argument(
        "--pushgateway-group",
        action="append",
        type=_pushgateway_group,
        metavar="KEY=VALUE",
        help="grouping key of the push (repeatable; default output=<absolute output path>)",
    )
    otlp.add_endpoint_argument(p, "at the end of a bounded run")
    p.add_argument(
        "--force",
        action="store_true",
        help="write into an --output folder that holds other files (only msewatch's "
        "tables are touched)",
    )
    p.add_argument(
        "--quiet", action="store_true", help="print neither the summary nor the progress bar"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="msewatch", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_generate(sub)
    _add_run(sub)
    from msewatch.commands import compare, gameday, local, query, report, serve, slo

    commands = (
        ("query", query),
        ("report", report),
        ("slo", slo),
        ("gameday", gameday),
        ("serve", serve),
        ("compare", compare),
        ("local", local),
    )
    for name, module in commands:
        p = sub.add_parser(name, help=(module.__doc__ or name).strip().split("\n")[0])
        module.add_arguments(p)
        p.set_defaults(handler=module.run)
    return parser


def _generate(args) -> int:
    if args.scenario:
        return _generate_scenario(args)
    from msewatch.commands.generate import generate

    stats = generate(
        args.out,
        predictions=20_000 if args.predictions is None else args.predictions,
        seed=args.seed,
        days=3.0 if args.days is None else args.days,
        malformed=not args.no_malformed,
        formats=tuple(args.format or ("jsonl",)),
    )
    facts = stats.to_dict()
    print(
        f"wrote {args.out}: {facts['predictions']} predictions "
        f"(+{facts['shadow_predictions']} v2 shadow, +{facts['duplicate_predictions']} "
        f"duplicates, {facts['nan_predictions']} NaN), "
        f"{facts['labels']} labels ({facts['labels_never_sent']} never sent, "
        f"{facts['labels_past_ttl']} past the 7d TTL), drift in {facts['drift_segment']}"
    )
    return 0


def _generate_scenario(args) -> int:
    from msewatch.commands.scenarios import generate_scenario

    given = [
        option
        for option, value in (
            ("--predictions", args.predictions),
            ("--days", args.days),
            ("--format", args.format),
            ("--no-malformed", args.no_malformed or None),
        )
        if value is not None
    ]
    if given:
        raise UsageError(f"--scenario sets its own data; leave out {', '.join(given)}")
    facts = generate_scenario(args.scenario, args.out, seed=args.seed)
    fault = facts["fault"]
    what = f"; fault in region={fault['segment']}: {fault['what']}" if fault else "; no fault"
    print(
        f"wrote {args.out}: scenario {args.scenario}, {facts['predictions']} predictions, "
        f"{facts['labels']} labels{what}; slo.yaml, expected_alerts.json"
    )
    return 0


def _pushgateway_group(text: str) -> tuple[str, str]:
    from msewatch.commands.pushgateway import parse_group

    try:
        return parse_group(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _run(args, beam_args) -> int:
    from msewatch.commands import otlp, pushgateway, summary
    from msewatch.runners import config, launch, presets

    unbounded = any(
        find(args.predictions, args.labels)
        for find in (presets.pubsub_subscriptions, presets.kafka_topics)
    )
    group = pushgateway.check(
        args.pushgateway, args.pushgateway_job, args.pushgateway_group, args.output, not unbounded
    )
    otlp.check_run(args.otlp, args.output, not unbounded)
    job = config.job_from_args(args)
    launch.preflight(job, args.output, beam_args)  # option and folder mistakes first
    result = launch.run(config.config_from_args(args, job), job, beam_args)
    if result.outcomes is not None and not args.quiet:
        print(summary.render(args.output, result.outcomes))
    code = result.code
    if code:
        return code
    pushed = otlp.push_after_run(args.otlp, args.output, args.quiet) if args.otlp else 0
    return max(pushed, _push_to_gateway(args, group) if args.pushgateway else 0)


def _push_to_gateway(args, group: dict[str, str]) -> int:
    from msewatch.commands import pushgateway

    try:
        samples = pushgateway.push(args.pushgateway, args.pushgateway_job, group, args.output)
    except OSError as e:
        print(f"msewatch: error: {e}; the tables in {args.output} are written", file=sys.stderr)
        return 1
    if not args.quiet:
        keys = ", ".join(f"{k}={v}" for k, v in group.items())
        job = args.pushgateway_job
        print(f"Pushed {samples} samples to {args.pushgateway} (job={job}, {keys})")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        parser = build_parser()
        args, rest = parser.parse_known_args(argv)
        if args.command != "run" and rest:
            raise UsageError(f"unrecognized arguments: {' '.join(rest)}")
        if args.command == "generate":
            return _generate(args)
        if args.command == "run":
            return _run(args, rest)
        return args.handler(args)
    except (UsageError, ValueError, OSError) as e:
        if os.environ.get("MSEWATCH_DEBUG"):
            raise
        print(f"msewatch: error: {one_line(e)}", file=sys.stderr)
        return 2


def flex_template_main(argv=None) -> int:
    """Entry point of the Flex Template image (``runners/flex_template/Dockerfile``):
    ``msewatch run`` on Dataflow, the template's parameters turned into its options."""
    from msewatch.runners import presets

    return main(presets.flex_template_argv(sys.argv[1:] if argv is None else argv))


def one_line(error: Exception) -> str:
    """A user mistake as one line; a file-system error names the path and what to do."""
    if isinstance(error, OSError) and error.strerror:
        path = f"{error.filename}: " if error.filename else ""
        return f"{path}{error.strerror.lower()}; check the path"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


if __name__ == "__main__":
    raise SystemExit(main())
