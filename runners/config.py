"""What a run of the pipeline is made of, as plain values: the one place they are assembled.

* :func:`monitor_config` builds the pipeline's :class:`MonitorConfig` from plain values
  (window, label TTL, slices, SLO file, ...): the windows' allowed lateness comes from
  the label TTL (:meth:`WindowConfig.for_label_ttl`), the join's expiry grid from the
  window period, the exact counts and slices an SLO file needs are added. ``msewatch
  run``, ``msewatch gameday`` and the tests' harness (``tests/harness.py``) all call it.
* :class:`Job` is what a launch needs beyond that config: the inputs, the runner, the
  mode (``streaming_replay``), ``force``, ``quiet``, the BigQuery location, ...
* :func:`config_from_args` and :func:`job_from_args` map ``msewatch run``'s parsed
  arguments onto those two; ``runners/launch.py``'s ``run(config, job)`` runs them.

Every mistake raises ``ValueError`` with one line saying what to do (the CLI prints it
and exits 2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from msewatch.pipelines.monitor import MonitorConfig
from msewatch.runners import output, presets
from msewatch.schemas.features import check_features
from msewatch.transforms.io.alerts import DeliveryConfig
from msewatch.transforms.io.delivery import check_http_url
from msewatch.transforms.join.kernel import window_timer_grid_ms
from msewatch.transforms.join.transform import JoinConfig
from msewatch.transforms.metrics.slices import SliceConfig
from msewatch.transforms.metrics.transform import MetricsConfig
from msewatch.transforms.metrics.windowing import WindowConfig
from msewatch.transforms.slo.config import SloFile, load_slo_file

_HOUR_MS = 3600 * 1000


@dataclasses.dataclass(frozen=True)
class Job:
    """How to launch a run: everything ``runners/launch.py`` needs beside the
    :class:`MonitorConfig` (whose ``output`` is where the run writes).

    Attributes:
        predictions: glob of prediction files, or ``pubsub://projects/P/subscriptions/S``
            or ``kafka://HOST:PORT/TOPIC`` (both inputs of one kind).
        labels: glob of label files, or a Pub/Sub or Kafka URL like ``predictions``.
        runner: ``DirectRunner`` (default), ``PortableRunner``, ``FlinkRunner`` or
            ``DataflowRunner`` (``runners/presets.py``).
        streaming_replay: replay the files in arrival order on the streaming DirectRunner.
        replay_chunk_rows: records per replay step (None: 1/20 of the input, clamped).
        pubsub_expansion_service: ``HOST:PORT`` of a Java expansion service for Pub/Sub
            on a portable runner, or None.
        kafka_consumer_group: consumer group of ``kafka://`` inputs.
        bq_location: location of a BigQuery dataset msewatch creates.
        force: write into an output folder that holds other files.
        quiet: print neither the progress bar nor the notes on stderr.
        fail_on_undelivered: exit 1 when an alert could not be delivered.

    Raises:
        ValueError: ``streaming_replay`` with Pub/Sub or Kafka inputs.
    """

    predictions: str
    labels: str
    runner: str = "DirectRunner"
    streaming_replay: bool = False
    replay_chunk_rows: int | None = None
    pubsub_expansion_service: str | None = None
    kafka_consumer_group: str = "msewatch"
    bq_location: str = "US"
    force: bool = False
    quiet: bool = False
    fail_on_undelivered: bool = False

    def __post_init__(self):
        if self.unbounded and self.streaming_replay:
            raise ValueError(
                "--streaming-replay replays files; Pub/Sub and Kafka input is streaming already"
            )

    @property
    def pubsub(self):
        """The two subscriptions of a Pub/Sub run, else None."""
        return presets.pubsub_subscriptions(self.predictions, self.labels)

    @property
    def kafka(self):
        """The two topics of a Kafka run, else None."""
        return presets.kafka_topics(self.predictions, self.labels)

    @property
    def unbounded(self) -> bool:
        """Pub/Sub or Kafka input: a streaming job that reads until stopped."""
        return bool(self.pubsub or self.kafka)

    @property
    def bounded(self) -> bool:
        """Whether the pipeline reads bounded input (files, not replayed): the
        ``bounded`` its :class:`MonitorConfig` must have."""
        return not (self.streaming_replay or self.unbounded)


def monitor_config(
    output_url: str,
    *,
    bounded: bool = True,
    runner: str = "DirectRunner",
    window_seconds: int = 3600,
    every_seconds: int | None = None,
    early_firing_seconds: int = 60,
    label_ttl_ms: int = 7 * 24 * _HOUR_MS,
    orphan_ttl_ms: int = _HOUR_MS,
    slices: Sequence[str] = (),
    max_slice_values: int = 100,
    features: Sequence[str] = (),
    huber_delta: float = 1.0,
    shards: int | None = None,
    expiry_grid_ms: int | None = None,
    slo: SloFile | None = None,
    sink_flush_seconds: int = 60,
    bigquery_api_endpoint: str | None = None,
    alertmanager_url: str | None = None,
    alerts_topic: str | None = None,
    alert_deadline_seconds: float = 30.0,
    error_thresholds: tuple[float, ...] = (),
    freshness_within_s: tuple[int, ...] = (),
    clock: Callable | None = None,
) -> MonitorConfig:
    """The validated pipeline settings of a run writing to ``output_url``.

    The defaults are ``msewatch run``'s. ``bounded`` and ``runner`` are the job's
    (:attr:`Job.bounded`, :attr:`Job.runner`): a cluster runner gets a second more
    lateness (``allowed_lateness_for``) and ``shards=None`` means :func:`default_shards`.
    ``expiry_grid_ms=None`` is the largest divisor of the window period shorter than
    the label TTL. An SLO file adds the exact counts, features and slices it reads
    (its counts replace ``error_thresholds``/``freshness_within_s``). ``clock`` (None:
    the wall clock, UTC) stamps ``emitted_at``.

    Raises:
        ValueError: a setting out of range, or alert delivery without an SLO file.
    """
    slice_config = SliceConfig.parse(list(slices), max_slice_values)
    if slo is not None:  # the comparisons read model_version crossed with their slices
        slice_config = slice_config.with_specs(slo.slice_specs())
    window = WindowConfig.for_label_ttl(
        label_ttl_ms,
        cluster=presets.runner_name(runner) != "DirectRunner",
        window_seconds=window_seconds,
        every_seconds=every_seconds,
        early_firing_seconds=early_firing_seconds,
    )
    needs = metrics_needs(slo)
    read = check_features(
        dict.fromkeys([*features, *needs.pop("features", ())]), slice_config.segment_keys
    )
    if expiry_grid_ms is None:
        expiry_grid_ms = window_timer_grid_ms(window.period_seconds * 1000, label_ttl_ms)
    join = JoinConfig(
        label_ttl_ms=label_ttl_ms,
        orphan_ttl_ms=orphan_ttl_ms,
        segment_keys=slice_config.segment_keys,
        shards=shards if shards is not None else default_shards(runner, not bounded),
        timer_grid_ms=expiry_grid_ms,
        features=read,
    )
    counts = {"error_thresholds": error_thresholds, "freshness_within_s": freshness_within_s}
    metrics = MetricsConfig(
        window=window,
        slices=slice_config,
        huber_delta=huber_delta,
        features=read,
        key_groups=default_metrics_key_groups(runner),
        **({} if clock is None else {"clock": clock}),
        **(counts | needs),
    )
    if bigquery_api_endpoint is not None:
        check_http_url(bigquery_api_endpoint, "--bq-api-endpoint")
    if (alertmanager_url or alerts_topic) and slo is None:
        raise ValueError("--alertmanager and --alerts-topic send SLO alerts: pass --slo FILE too")
    return MonitorConfig(
        join=join,
        metrics=metrics,
        output=output_url,
        bounded=bounded,
        bigquery_api_endpoint=bigquery_api_endpoint,
        sink_flush_seconds=sink_flush_seconds,
        slo=slo,
        delivery=DeliveryConfig(
            alertmanager_url=alertmanager_url,
            topic=alerts_topic,
            deadline_seconds=alert_deadline_seconds,
            slice_keys=tuple(sorted({k for spec in slice_config.all_specs for k in spec})),
        ),
    )


def check_job(job: Job, output_url: str, config: MonitorConfig | None = None) -> None:
    """Raises ValueError when ``job`` cannot write to ``output_url`` as asked, or when
    it and ``config`` do not make one run."""
    if job.fail_on_undelivered and (job.unbounded or not output.is_local(output_url)):
        raise ValueError(
            "--fail-on-undelivered reads the dead_letter table at the end of the run: it "
            "needs files as input (or --streaming-replay) and a local --output folder"
        )
    if config is not None and config.bounded != job.bounded:
        raise ValueError(
            f"the config says bounded={config.bounded} but the job's inputs are "
            f"{'bounded files' if job.bounded else 'streaming'}: build it with "
            "monitor_config(..., bounded=job.bounded)"
        )


def job_from_args(args) -> Job:
    """The :class:`Job` of parsed ``msewatch run`` arguments (raises ValueError)."""
    return Job(
        predictions=args.predictions,
        labels=args.labels,
        runner=args.runner,
        streaming_replay=args.streaming_replay,
        replay_chunk_rows=args.replay_chunk_rows,
        pubsub_expansion_service=args.pubsub_expansion_service,
        kafka_consumer_group=args.kafka_consumer_group,
        bq_location=args.bq_location,
        force=args.force,
        quiet=args.quiet,
        fail_on_undelivered=args.fail_on_undelivered,
    )


def config_from_args(args, job: Job) -> MonitorConfig:
    """Validated pipeline settings from parsed ``msewatch run`` arguments (raises
    ValueError, also when they and ``job`` do not make one run)."""
    check_job(job, args.output)
    return monitor_config(
        args.output,
        bounded=job.bounded,
        runner=job.runner,
        window_seconds=args.window,
        every_seconds=args.every,
        early_firing_seconds=args.early_firing,
        label_ttl_ms=args.label_ttl,
        orphan_ttl_ms=args.orphan_ttl,
        slices=args.slice,
        max_slice_values=args.max_slice_values,
        features=args.feature,
        huber_delta=args.huber_delta,
        shards=args.shards,
        expiry_grid_ms=args.expiry_grid,
        slo=load_slo_file(args.slo) if args.slo else None,
        sink_flush_seconds=args.sink_flush,
        bigquery_api_endpoint=args.bq_api_endpoint,
        alertmanager_url=args.alertmanager,
        alerts_topic=args.alerts_topic,
        alert_deadline_seconds=args.alert_deadline,
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
    """Join shards (hash buckets of ``prediction_id``) when ``--shards`` is not given.

    A cluster runner (Flink, Dataflow, Spark, ...) gets 1024 buckets, so a batch or a
    checkpoint touches a small part of the join's state and the keys spread over
    many workers. The DirectRunner runs every bundle in one Python process, where
    more buckets only mean more bundles, state reads and timer firings for the same
    records: 2 when streaming, 16 bounded.
    """
    if presets.runner_name(runner) == "DirectRunner":
        return 2 if streaming else 16
    return 1024


def default_metrics_key_groups(runner: str) -> int:
    """Keys of the per-window metrics merge (``MetricsConfig.key_groups``): 1 on the
    DirectRunner (one firing per window is cheapest in one process), 16 elsewhere."""
    return 1 if presets.runner_name(runner) == "DirectRunner" else 16
