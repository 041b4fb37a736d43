"""Launches a run: ``run(config, job)`` builds the PipelineOptions and picks the runner.

The pipeline's settings are a :class:`MonitorConfig` and the launch's a :class:`Job`,
both assembled in ``runners/config.py`` (``msewatch run`` maps its arguments onto
them; ``msewatch gameday`` and the tests build them from plain values).

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
import uuid
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (
    DirectOptions,
    FlinkRunnerOptions,
    GoogleCloudOptions,
    PortableOptions,
    StandardOptions,
)

from msewatch.pipelines.monitor import MonitorConfig, build
from msewatch.runners import (
    direct_clock,
    direct_speedups,
    flink,
    flink_progress,
    java_services,
    output,
    presets,
    progress,
)
from msewatch.runners import outcomes as run_outcomes
from msewatch.runners.cache import DownloadError
from msewatch.runners.config import Job, check_job
from msewatch.schemas.bigquery_files import parse_output_url
from msewatch.transforms.io.files import FileSource, check_files, input_bytes
from msewatch.transforms.io.kafka import KafkaSource
from msewatch.transforms.io.pubsub import PubSubSource
from msewatch.transforms.io.replay import ReplaySpool
from msewatch.transforms.join import spill


def _run_unbounded(runner: str, options, result, quiet: bool = False) -> int:
    """A streaming job never finishes: wait for Ctrl-C while its Python workers run in
    this process (the DirectRunner, LOOPBACK on Flink), else leave the job running."""
    runner = presets.runner_name(runner)
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
        _watched_wait(runner, options, result, quiet)
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


def _watched_wait(runner: str, options, result, quiet: bool) -> None:
    """``_wait(result)`` with the Flink job's progress line (runners/flink_progress.py)."""
    master = options.view_as(FlinkRunnerOptions).flink_master
    shown = flink_progress.wanted(quiet, presets.runner_name(runner), master)
    with flink_progress.watching(master, _job_id(result), shown):
        _wait(result)


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


def preflight(job: Job, output_url: str, beam_args: Sequence[str] = ()) -> None:
    """Checks the Beam options and the output folder (raises ValueError); :func:`run`
    does it first, and ``msewatch run`` before it assembles the config, so that these
    mistakes are said before any in the settings."""
    presets.check_known_options(list(beam_args))
    output.check(output_url, force=job.force)


def run(config: MonitorConfig, job: Job, beam_args: Sequence[str] = ()) -> RunResult:
    """Runs the pipeline ``config`` describes as ``job`` says; the caller prints the
    summary (``RunResult.outcomes``).

    ``config`` comes from :func:`msewatch.runners.config.monitor_config` (its ``bounded``
    must be ``job.bounded``); ``beam_args`` are extra Beam pipeline options
    (``--flink_master=...``). Everything a user can get wrong is checked before the
    pipeline runs (options, the output folder, the input files), as a ValueError of
    one line; see ``runners/output.py`` for reruns.
    """
    preflight(job, config.output, beam_args)
    check_job(job, config.output, config)
    pubsub, kafka = job.pubsub, job.kafka
    if pubsub:
        presets.check_pubsub_runner(job.runner, job.pubsub_expansion_service)
    elif kafka:
        presets.check_kafka_runner(job.runner)
    else:
        for pattern in (job.predictions, job.labels):
            check_files(pattern)
    beam_args = list(beam_args)
    if presets.runner_name(job.runner) == "FlinkRunner":
        # asks the cluster first
        beam_args = [*beam_args, *flink.flink_flags(beam_args, streaming=not config.bounded)]
    options = presets.pipeline_options(job.runner, beam_args, streaming=not config.bounded)
    speedups = (
        direct_speedups.installed()
        if options.view_as(StandardOptions).runner == "BundleBasedDirectRunner"
        else contextlib.nullcontext()
    )
    plan = output.prepare(config.output, staged=not job.unbounded)  # holds the folder's lock
    try:
        return _run_and_commit(job, options, config, plan, speedups)
    finally:
        output.release(plan)


def _run_and_commit(job: Job, options, config, plan, speedups) -> RunResult:
    """Runs the pipeline into ``plan`` and commits a finished run whose outcomes balance."""
    out = config.output
    if plan.previous and not job.quiet:
        print(
            f"msewatch: this run replaces the previous results in {out} "
            f"({', '.join(plan.previous)})",
            file=sys.stderr,
        )
    try:
        with speedups, output.disk_full_said_once():  # until the end (Pub/Sub: Ctrl-C)
            staged = dataclasses.replace(config, output=plan.write_to)
            result = _run_pipeline(job, options, staged, out)
            if job.unbounded:
                return RunResult(_run_unbounded(job.runner, options, result, job.quiet))
        if not output.is_local(out):
            return RunResult(_report_remote(out, job.quiet))
        outcomes = run_outcomes.outcome_counts(plan.write_to)
        details = run_outcomes.outcome_details(plan.write_to)
        run_outcomes.write(config, outcomes, os.path.join(plan.write_to, "summary.json"), details)
        if not run_outcomes.balanced(outcomes):  # never commit a broken run
            output.abandon(plan)
            code = run_outcomes.check_conservation(outcomes)
            kept = f"msewatch: error: not committed; {out} keeps the previous results"
            print(kept, file=sys.stderr)
            return RunResult(code)
        output.commit(plan)
    except BaseException as error:
        output.abandon(plan)
        full = output.disk_full(error)
        if full is not None:  # one line, not the runner's traceback
            raise ValueError(
                f"{full.filename or plan.write_to}: {full.strerror.lower()}; the previous "
                f"results in {out} are kept: free space and run again"
            ) from None
        raise
    code = run_outcomes.check_conservation(outcomes)
    if job.fail_on_undelivered and not code:
        code = run_outcomes.check_delivered(out)
    return RunResult(code, outcomes)


def _with_spill(job: Job, options, config: MonitorConfig, output_url: str) -> MonitorConfig:
    """``config`` with the bounded join's spill folder and bucket count
    (``transforms/join/spill.py``): a new folder inside the run's output folder (its
    staged snapshot; ``gs://`` too), or under ``--temp_location`` for a BigQuery output
    (this machine's temp directory without one), and one bucket per 32 MiB of input, at
    least 16 (fewer with a smaller ``--shards``)."""
    name = f".msewatch-spill-{uuid.uuid4().hex}"
    if parse_output_url(output_url) is None:
        folder = FileSystems.join(config.output, name)
    elif options.view_as(GoogleCloudOptions).temp_location:
        folder = FileSystems.join(options.view_as(GoogleCloudOptions).temp_location, name)
    else:
        folder = spill.local_folder()
    if "://" not in folder:
        os.makedirs(folder, exist_ok=True)
    size = input_bytes(job.predictions) + input_bytes(job.labels)
    # the streaming shard count (1024 on clusters) would mean 2,048 files per bundle
    buckets = spill.buckets_for(size, at_least=min(config.join.shards, 16))
    return dataclasses.replace(config, spill_folder=folder, spill_buckets=buckets)


def _run_pipeline(job: Job, options, config: MonitorConfig, output_url: str):
    """Builds the pipeline for the job's source and runs it (bounded runs: to the end).

    ``config`` writes to the staged folder; ``output_url`` is the run's ``--output``.
    """
    pubsub, kafka = job.pubsub, job.kafka
    with contextlib.ExitStack() as stack:
        spool = stack.enter_context(tempfile.TemporaryDirectory(prefix="msewatch-spool-"))
        if pubsub:
            source = PubSubSource(
                *pubsub,
                config.join.segment_keys,
                expansion_service=job.pubsub_expansion_service,
                features=config.join.features,
            )
        elif kafka:
            source = KafkaSource(
                *kafka,
                expansion_service=_kafka_expansion_service(options),
                segment_keys=config.join.segment_keys,
                group_id=job.kafka_consumer_group,
                features=config.join.features,
            )
        elif job.streaming_replay:
            from msewatch.transforms.io.replay_spool import plan_events, prepare_spool

            arrivals = prepare_spool(
                job.predictions,
                job.labels,
                spool,
                config.join.segment_keys,
                features=config.join.features,
            )
            events = plan_events(
                arrivals, config.metrics.window, config.join, job.replay_chunk_rows
            )
            source = ReplaySpool(spool, events, config.metrics.window.early_firing_seconds)
        else:
            shown = progress.wanted(
                job.quiet,
                presets.runner_name(job.runner),
                options.view_as(DirectOptions).direct_running_mode,
            )
            token = stack.enter_context(progress.progress_bar(job.predictions, job.labels, shown))
            source = FileSource(
                job.predictions,
                job.labels,
                config.join.segment_keys,
                progress_token=token,
                features=config.join.features,
            )
            config = _with_spill(job, options, config, output_url)
            stack.callback(spill.remove_folder, config.spill_folder)
        bigquery = parse_output_url(output_url)
        if bigquery is not None:
            from msewatch.transforms.io.bigquery import ensure_tables

            endpoint = config.bigquery_api_endpoint
            ensure_tables(*bigquery, location=job.bq_location, api_endpoint=endpoint)
        p = beam.Pipeline(options=options)
        build(p, config, source)
        with direct_clock.early_test_clock():  # replays: see runners/direct_clock.py
            result = p.run()
        if not (pubsub or kafka):
            _watched_wait(job.runner, options, result, job.quiet)
        return result


def _report_remote(output_url: str, quiet: bool) -> int:
    """The summary reads local tables only: say where a remote run wrote."""
    if quiet:
        return 0
    bigquery = parse_output_url(output_url)
    if bigquery is not None:
        project, dataset = bigquery
        print(f"Wrote BigQuery tables {project}.{dataset}.metrics, dead_letter, outcomes;")
        print(f"read the current rows from the view {project}.{dataset}.metrics_latest.")
    else:
        print(f"Wrote tables under {output_url}; read them with DuckDB or pandas.")
    return 0
