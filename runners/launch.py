"""Launches ``msewatch run``: builds the config and PipelineOptions, picks the runner.

* Bounded (default): files are read whole; ``DirectRunner`` means Beam's
  FnApiRunner (batch). Other runners (PortableRunner, FlinkRunner, DataflowRunner)
  are passed through with every unknown ``--option`` as a Beam pipeline option.
* ``--streaming-replay``: the files are spooled in arrival order and replayed through
  a TestStream on the ``BundleBasedDirectRunner`` with ``--streaming``.
* ``pubsub://projects/P/subscriptions/S`` or ``kafka://HOST:PORT/TOPIC`` inputs (both
  of one kind): unbounded, ``--streaming``. A run whose Python workers are this process
  (the DirectRunner; LOOPBACK on a local Flink) reads until Ctrl-C; a job submitted to
  a remote Flink or Dataflow is left running (stop it with the runner's own tools). No
  summary is printed. Kafka needs a runner that runs Java (``presets.check_kafka_runner``).

Runner options come from ``runners/presets.py`` (required options, staging, flags);
FlinkRunner's cluster check and defaults from ``runners/flink.py``.

At the end the outcome counts (the conservation table) are read back from the
``outcomes`` table (``runners/outcomes.py``), written to ``OUTPUT/summary.json`` and
returned in a :class:`RunResult`, from which ``msewatch run`` prints its summary with the
latest complete RMSE per slice (``msewatch/commands/summary.py``). A local run holds its folder's
lock throughout and is committed only when its outcomes balance (``runners/output.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import tempfile
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    DirectOptions,
    FlinkRunnerOptions,
    PipelineOptions,
    PortableOptions,
    StandardOptions,
)

from msewatch.pipelines.monitor import MonitorConfig, build
from msewatch.runners import (
    direct_clock,
    direct_speedups,
    flink,
    java_services,
    output,
    presets,
    progress,
)
from msewatch.runners import outcomes as run_outcomes
from msewatch.runners.cache import DownloadError
from msewatch.schemas.bigquery_files import parse_output_url
from msewatch.schemas.features import check_features
from msewatch.transforms.io.alerts import DeliveryConfig
from msewatch.transforms.io.delivery import check_http_url
from msewatch.transforms.io.files import FileSource, check_files
from msewatch.transforms.io.kafka import KafkaSource
from msewatch.transforms.io.pubsub import PubSubSource
from msewatch.transforms.io.replay import ReplaySpool
from msewatch.transforms.join.kernel import window_timer_grid_ms
from msewatch.transforms.join.transform import JoinConfig
from msewatch.transforms.metrics.slices import SliceConfig
from msewatch.transforms.metrics.transform import MetricsConfig
from msewatch.transforms.metrics.windowing import WindowConfig
from msewatch.transforms.slo.config import load_slo_file


def config_from_args(args) -> MonitorConfig:
    """Validated pipeline settings from parsed ``run`` arguments (raises ValueError)."""
    slo_file = load_slo_file(args.slo) if args.slo else None
    slices = SliceConfig.parse(args.slice, args.max_slice_values)
    if slo_file is not None:  # the comparisons read model_version crossed with their slices
        slices = slices.with_specs(slo_file.slice_specs())
    window = WindowConfig.for_label_ttl(
        args.label_ttl,
        cluster=presets.runner_name(args.runner) != "DirectRunner",
        window_seconds=args.window,
        every_seconds=args.every,
        early_firing_seconds=args.early_firing,
    )
    unbounded = presets.pubsub_subscriptions(args.predictions, args.labels)
    unbounded = unbounded or presets.kafka_topics(args.predictions, args.labels)
    if unbounded and args.streaming_replay:
        raise ValueError(
            "--streaming-replay replays files; Pub/Sub and Kafka input is streaming already"
        )
    needs = metrics_needs(slo_file)
    features = check_features(
        dict.fromkeys([*args.feature, *needs.pop("features", ())]), slices.segment_keys
    )
    grid = args.expiry_grid
    if grid is None:
        grid = window_timer_grid_ms(window.period_seconds * 1000, args.label_ttl)
    join = JoinConfig(
        label_ttl_ms=args.label_ttl,
        orphan_ttl_ms=args.orphan_ttl,
        segment_keys=slices.segment_keys,
        shards=args.shards
        if args.shards is not None
        else default_shards(args.runner, bool(args.streaming_replay or unbounded)),
        timer_grid_ms=grid,
        features=features,
    )
    metrics = MetricsConfig(
        window=window,
        slices=slices,
        huber_delta=args.huber_delta,
        features=features,
        **needs,
    )
    if args.bq_api_endpoint is not None:
        check_http_url(args.bq_api_endpoint, "--bq-api-endpoint")
    if args.fail_on_undelivered and (unbounded or not output.is_local(args.output)):
        raise ValueError(
            "--fail-on-undelivered reads the dead_letter table at the end of the run: it "
            "needs files as input (or --streaming-replay) and a local --output folder"
        )
    if (args.alertmanager or args.alerts_topic) and slo_file is None:
        raise ValueError("--alertmanager and --alerts-topic send SLO alerts: pass --slo FILE too")
    return MonitorConfig(
        join=join,
        metrics=metrics,
        output=args.output,
        bounded=not (args.streaming_replay or unbounded),
        bigquery_api_endpoint=args.bq_api_endpoint,
        sink_flush_seconds=args.sink_flush,
        slo=slo_file,
        delivery=DeliveryConfig(
            alertmanager_url=args.alertmanager,
            topic=args.alerts_topic,
            deadline_seconds=args.alert_deadline,
            slice_keys=tuple(sorted({k for spec in slices.all_specs for k in spec})),
        ),
    )


def metrics_needs(slo_file) -> dict:
    """The exact counts ``slo_file`` needs (:meth:`SloFile.metrics_needs`), as the
    ``MetricsConfig`` arguments it takes: a need whose field is not in this release's
    ``MetricsConfig`` (``valid_ranges``, the ``label_range`` column) is left out."""
    if slo_file is None:
        return {}
    known = {f.name for f in dataclasses.fields(MetricsConfig)}
    return {k: v for k, v in slo_file.metrics_needs().items() if k in known}


def default_shards(runner: str, streaming: bool) -> int:
    """Join shards when ``--shards`` is not given.

    16 spread the join over a cluster's workers. The streaming DirectRunner runs
    every bundle in one Python process, where more shards only mean more bundles,
    state reads and timer firings for the same records: 2 there.
    """
    return 2 if streaming and presets.runner_name(runner) == "DirectRunner" else 16


def _options(args, beam_args, streaming: bool) -> PipelineOptions:
    return presets.pipeline_options(args.runner, beam_args, streaming=streaming)


def _run_unbounded(args, options, result) -> int:
    """A streaming job never finishes: wait for Ctrl-C while its Python workers run in
    this process (the DirectRunner, LOOPBACK on Flink), else leave the job running."""
    runner = presets.runner_name(args.runner)
    environment = options.view_as(PortableOptions).environment_type or ""
    if runner != "DirectRunner" and environment.upper() != "LOOPBACK":
        print(
            f"submitted streaming job {_job_id(result)} ({result.state}); "
            "stop it with the runner's tools"
        )
        return 0
    print(f"msewatch: streaming on the {runner} until Ctrl-C", file=sys.stderr, flush=True)
    # Beam's job server for Flink installs a SIGINT handler that takes no arguments
    # (Ctrl-C raised a TypeError there and left the job running without its workers):
    # Ctrl-C is Python's KeyboardInterrupt again while msewatch waits, and cancels the job.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _wait(result)
    except KeyboardInterrupt:
        print("msewatch: Ctrl-C: cancelling the job", file=sys.stderr, flush=True)
        _cancel(result)
        if runner == "FlinkRunner":
            master = options.view_as(FlinkRunnerOptions).flink_master
            try:
                state = flink.cancel_job(master, _job_id(result))
            except OSError as error:  # Beam cancelled it; Flink's REST API did not confirm
                state = f"not confirmed: Flink's REST API at {master} said {error}; check it"
            if state is not None:
                print(f"msewatch: the Flink job is {state}", file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    return 0


def _job_id(result) -> str:
    """The runner's id of the job (Beam 2.62's portable result keeps it private)."""
    if hasattr(result, "job_id"):
        return result.job_id()
    return getattr(result, "_job_id", "") or ""


def _cancel(result, timeout_s: float = 60) -> None:
    """Cancels a running job and waits (at most ``timeout_s``) until its runner says it
    has stopped."""
    from apache_beam.runners.runner import PipelineState

    result.cancel()
    deadline = time.monotonic() + timeout_s
    while not PipelineState.is_terminal(result.state) and time.monotonic() < deadline:
        time.sleep(0.5)
    print(f"msewatch: the job is {result.state}", file=sys.stderr, flush=True)


def _wait(result) -> None:
    """``result.wait_until_finish()``; a job that fails on its runner is one line.

    Raises:
        JobFailed: the runner says the job failed (its message, without the traceback).
    """
    try:
        result.wait_until_finish()
    except RuntimeError as err:  # PortableRunner: "Pipeline ... failed in state FAILED: ..."
        text = str(err)
        if "failed in state" not in text:
            raise
        line = text.splitlines()[0][-600:]
        hint = next((h for cause, h in _FAILURE_HINTS if cause in line), "")
        raise JobFailed(f"the job failed on its runner: {line}{hint}") from None


# what to do about failures a user can cause, by a phrase of the runner's message
_FAILURE_HINTS = (
    (
        "Could not find any partitions",  # KafkaIO lists a topic's partitions at start
        "; the Kafka topics must exist before the job starts: create them (kafka-topics.sh "
        "--create) or let their producer write first",
    ),
)


class JobFailed(ValueError):
    """The runner ran the job and it failed (a ValueError: the CLI prints one line)."""


def _kafka_expansion_service(options):
    """Beam's expansion service with KafkaIO, of the SDK's release, for this runner.

    Flink and other job services: started from the resolved Maven jars
    (:mod:`msewatch.runners.java_services`) with the EMBEDDED Java environment, so the
    Kafka read runs inside Flink's TaskManager on the jars the job server staged.
    Dataflow: Beam's own default (its published expansion service jar).
    """
    if options.view_as(StandardOptions).runner == "DataflowRunner":
        return None
    from apache_beam.transforms.external import JavaJarExpansionService

    flink = options.view_as(FlinkRunnerOptions).flink_version
    try:
        jar = java_services.expansion_service_jar(flink)
    except DownloadError as err:
        raise ValueError(str(err)) from None
    return JavaJarExpansionService(
        jar,
        extra_args=[
            "{{PORT}}",
            "--defaultEnvironmentType=EMBEDDED",
            # KafkaIO as an UnboundedSource (Flink's source wrapper), not the SDF read,
            # whose watermark Beam 2.62's Flink runner never advances (stays at -inf)
            "--experiments=use_deprecated_read",
        ],
    )


@dataclasses.dataclass(frozen=True)
class RunResult:
    """How a run ended: its exit status and, for a committed local run, the outcome
    table (``runners/outcomes.py``) that ``msewatch run`` prints its summary from."""

    code: int
    outcomes: dict[str, dict[str, int]] | None = None


def run(args, beam_args) -> RunResult:
    """Runs the pipeline described by ``args``; the caller prints the summary.

    Everything a user can get wrong is checked before the pipeline runs (options, the
    output folder, the input files); see ``runners/output.py`` for reruns.
    """
    presets.check_known_options(beam_args)
    output.check(args.output, force=args.force)
    config = config_from_args(args)
    pubsub = presets.pubsub_subscriptions(args.predictions, args.labels)
    kafka = presets.kafka_topics(args.predictions, args.labels)
    if pubsub:
        presets.check_pubsub_runner(args.runner, args.pubsub_expansion_service)
    elif kafka:
        presets.check_kafka_runner(args.runner)
    else:
        for pattern in (args.predictions, args.labels):
            check_files(pattern)
    if presets.runner_name(args.runner) == "FlinkRunner":
        # asks the cluster first
        beam_args = [*beam_args, *flink.flink_flags(beam_args, streaming=not config.bounded)]
    options = _options(args, beam_args, streaming=not config.bounded)
    speedups = (
        direct_speedups.installed()
        if options.view_as(StandardOptions).runner == "BundleBasedDirectRunner"
        else contextlib.nullcontext()
    )
    unbounded = pubsub or kafka
    plan = output.prepare(args.output, staged=not unbounded)  # holds the folder's lock
    try:
        return _run_and_commit(args, options, config, plan, speedups, pubsub, kafka)
    finally:
        output.release(plan)


def _run_and_commit(args, options, config, plan, speedups, pubsub, kafka) -> RunResult:
    """Runs the pipeline into ``plan`` and commits a finished run whose outcomes balance."""
    unbounded = pubsub or kafka
    if plan.previous and not args.quiet:
        print(
            f"msewatch: this run replaces the previous results in {args.output} "
            f"({', '.join(plan.previous)})",
            file=sys.stderr,
        )
    try:
        with speedups, output.disk_full_said_once():  # until the end (Pub/Sub: Ctrl-C)
            staged = dataclasses.replace(config, output=plan.write_to)
            result = _run_pipeline(args, options, staged, pubsub, kafka)
            if unbounded:
                return RunResult(_run_unbounded(args, options, result))
        if not output.is_local(args.output):
            return RunResult(_report_remote(args))
        outcomes = run_outcomes.outcome_counts(plan.write_to)
        details = run_outcomes.outcome_details(plan.write_to)
        run_outcomes.write(config, outcomes, os.path.join(plan.write_to, "summary.json"), details)
        if not run_outcomes.balanced(outcomes):  # never commit a broken run
            output.abandon(plan)
            code = run_outcomes.check_conservation(outcomes)
            kept = f"msewatch: error: not committed; {args.output} keeps the previous results"
            print(kept, file=sys.stderr)
            return RunResult(code)
        output.commit(plan)
    except BaseException as error:
        output.abandon(plan)
        full = output.disk_full(error)
        if full is not None:  # one line, not the runner's traceback
            raise ValueError(
                f"{full.filename or plan.write_to}: {full.strerror.lower()}; the previous "
                f"results in {args.output} are kept: free space and run again"
            ) from None
        raise
    code = run_outcomes.check_conservation(outcomes)
    if args.fail_on_undelivered and not code:
        code = run_outcomes.check_delivered(args.output)
    return RunResult(code, outcomes)


def _run_pipeline(args, options, config: MonitorConfig, pubsub, kafka):
    """Builds the pipeline for the chosen source and runs it (bounded runs: to the end).

    ``pubsub``: the two subscriptions of a Pub/Sub run; ``kafka``: the two topics of a
    Kafka run; both None for files.
    """
    with contextlib.ExitStack() as stack:
        spool = stack.enter_context(tempfile.TemporaryDirectory(prefix="msewatch-spool-"))
        if pubsub:
            source = PubSubSource(
                *pubsub,
                config.join.segment_keys,
                expansion_service=args.pubsub_expansion_service,
                features=config.join.features,
            )
        elif kafka:
            source = KafkaSource(
                *kafka,
                expansion_service=_kafka_expansion_service(options),
                segment_keys=config.join.segment_keys,
                group_id=args.kafka_consumer_group,
                features=config.join.features,
            )
        elif args.streaming_replay:
            from msewatch.transforms.io.replay_spool import plan_events, prepare_spool

            arrivals = prepare_spool(
                args.predictions,
                args.labels,
                spool,
                config.join.segment_keys,
                features=config.join.features,
            )
            events = plan_events(
                arrivals, config.metrics.window, config.join, args.replay_chunk_rows
            )
            source = ReplaySpool(spool, events, config.metrics.window.early_firing_seconds)
        else:
            shown = progress.wanted(
                args.quiet,
                presets.runner_name(args.runner),
                options.view_as(DirectOptions).direct_running_mode,
            )
            token = stack.enter_context(progress.progress_bar(args.predictions, args.labels, shown))
            source = FileSource(
                args.predictions,
                args.labels,
                config.join.segment_keys,
                progress_token=token,
                features=config.join.features,
            )
        bigquery = parse_output_url(args.output)
        if bigquery is not None:
            from msewatch.transforms.io.bigquery import ensure_tables

            ensure_tables(*bigquery, location=args.bq_location, api_endpoint=args.bq_api_endpoint)
        p = beam.Pipeline(options=options)
        build(p, config, source)
        with direct_clock.early_test_clock():  # replays: see runners/direct_clock.py
            result = p.run()
        if not (pubsub or kafka):
            _wait(result)
        return result


def _report_remote(args) -> int:
    """The summary reads local tables only: say where a remote run wrote."""
    if args.quiet:
        return 0
    bigquery = parse_output_url(args.output)
    if bigquery is not None:
        project, dataset = bigquery
        print(f"Wrote BigQuery tables {project}.{dataset}.metrics, dead_letter, outcomes;")
        print(f"read the current rows from the view {project}.{dataset}.metrics_latest.")
    else:
        print(f"Wrote tables under {args.output}; read them with DuckDB or pandas.")
    return 0
