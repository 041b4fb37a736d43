"""The msewatch pipeline: ``build(p, config, source) -> outputs``.

Data flow (each arrow is one labelled step; labels are API, see docs/architecture.md):

    source ──► {predictions, labels, dead_letter}      (Arrow batches)
    {predictions, labels} ─"Join"──► examples, outcomes (global window, state + timers)
    examples ─"Metrics"──► metrics rows                 (windows by prediction event time,
                                                         early / on-time / late panes)
    outcomes + dead_letter ─"CountOutcomes"─► outcome counts (the conservation table)
    metrics ─"Slos"──► alerts, slo_status               (with an SLO file: burn rates at
                                                         the label frontier, alert states)
    metrics ─"Compare"──► comparisons, alerts           (the SLO file's comparisons: is a
                                                         candidate version worse?)
    alerts ─"DeliverAlerts"──► Alertmanager, Pub/Sub    (failures to dead_letter)
    metrics, dead_letter, outcomes, alerts, slo_status, comparisons ─"Write*"─►
        Parquet tables (metrics partitioned by window date), or ─"WriteBigQuery"─►
        BigQuery tables when the output is bq://PROJECT.DATASET

The source is any transform giving the three PCollections: files (bounded), a replay
spool (streaming TestStream) or Pub/Sub (streaming); ``runners/`` chooses it.
"""

from __future__ import annotations

import dataclasses

import apache_beam as beam

from msewatch.schemas.bigquery_files import parse_output_url
from msewatch.schemas.records import DEAD_LETTER, METRICS, OUTCOMES, arrow_schema
from msewatch.schemas.slo import ALERTS_FIELDS, COMPARISONS_FIELDS, SLO_STATUS_FIELDS
from msewatch.transforms.compare.transform import COMPARISONS, CompareVersions
from msewatch.transforms.io.alerts import DeliverAlerts, DeliveryConfig
from msewatch.transforms.io.bigquery import WriteBigQueryTables
from msewatch.transforms.io.parquet_sink import WriteParquetTable
from msewatch.transforms.join.transform import JoinConfig, JoinPredictionsAndLabels
from msewatch.transforms.metrics.transform import ComputeMetrics, MetricsConfig
from msewatch.transforms.metrics.windowing import allowed_lateness_for
from msewatch.transforms.outcomes import CountOutcomes
from msewatch.transforms.slo.spec import SloFile
from msewatch.transforms.slo.transform import ALERTS, RESEND, STATUS, EvaluateSlos


@dataclasses.dataclass(frozen=True)
class MonitorConfig:
    """Everything the pipeline needs, as plain validated values.

    Attributes:
        join: join settings (TTLs, shards, segment keys, features).
        metrics: windows, slices, Huber delta, clock.
        output: output root directory (Parquet) or ``bq://PROJECT.DATASET``.
        bounded: bounded input (files) or unbounded (replay, Pub/Sub).
        bigquery_api_endpoint: BigQuery API root (an emulator's), None for Google's.
        sink_flush_seconds: unbounded runs: processing time between Parquet flushes.
        slo: the SLO file (``--slo``), or None: no alerts or slo_status tables.
        delivery: where alert transitions go (Alertmanager, Pub/Sub).
        spill_folder: bounded runs: where the join spills records by bucket, a folder
            every worker can read (None: this machine's temp directory).
        spill_buckets: bounded runs: the join's buckets (None: ``join.shards``).
    """

    join: JoinConfig
    metrics: MetricsConfig
    output: str
    bounded: bool = True
    bigquery_api_endpoint: str | None = None
    sink_flush_seconds: int = 60
    slo: SloFile | None = None
    delivery: DeliveryConfig = DeliveryConfig()
    spill_folder: str | None = None
    spill_buckets: int | None = None

    def __post_init__(self):
        if not self.output:
            raise ValueError("output must be a directory, a gs:// URL or bq://PROJECT.DATASET")
        parse_output_url(self.output)  # raises on a malformed bq:// URL
        if self.sink_flush_seconds <= 0:
            raise ValueError(f"sink flush must be > 0 s, got {self.sink_flush_seconds}")
        if self.join.segment_keys != self.metrics.slices.segment_keys:
            raise ValueError("join.segment_keys must equal the segment keys of the slices")
        lateness_s = self.metrics.window.allowed_lateness_seconds
        needed_s = allowed_lateness_for(self.join.label_ttl_ms, cluster=False)
        if lateness_s < needed_s:  # an expiry at window end + TTL must still be accepted
            raise ValueError(
                f"the windows' allowed lateness ({lateness_s} s) must be at least the label "
                f"TTL rounded up to the second + 1 s ({needed_s} s): build them with "
                "WindowConfig.for_label_ttl"
            )
        if self.join.features != self.metrics.features:
            raise ValueError("join.features must equal metrics.features (the sketched ones)")
        period_ms = self.metrics.window.period_seconds * 1000
        if period_ms % self.join.timer_grid_ms:
            raise ValueError(
                f"the expiry grid ({self.join.timer_grid_ms} ms) must divide the window "
                f"period ({period_ms} ms), so that expiries reach a window before it closes"
            )


def build(p: beam.Pipeline, config: MonitorConfig, source: beam.PTransform) -> dict:
    """Adds the whole monitoring pipeline to ``p``.

    Args:
        p: the pipeline.
        config: validated settings.
        source: a PTransform from PBegin to a dict with ``predictions``, ``labels``
            and ``dead_letter`` PCollections of Arrow tables.

    Returns:
        The PCollections ``records`` (dict), ``examples``, ``metrics`` and ``outcomes``.
    """
    records = p | "Read" >> source
    joined = {
        "predictions": records["predictions"],
        "labels": records["labels"],
    } | "Join" >> JoinPredictionsAndLabels(
        config.join, config.bounded, config.spill_folder, config.spill_buckets
    )
    examples = joined["examples"]
    metrics = examples | "Metrics" >> ComputeMetrics(config.metrics, bounded=config.bounded)
    streaming = not config.bounded
    outcomes = (joined["outcomes"], records["dead_letter"]) | "CountOutcomes" >> CountOutcomes(
        streaming, flush_seconds=config.sink_flush_seconds
    )
    dead_letter, slo_tables = records["dead_letter"], {}
    if config.slo is not None:
        slo_tables, failed = _slos(metrics, config)
        dead_letter = (dead_letter, failed) | "AllDeadLetters" >> beam.Flatten()
    bigquery = parse_output_url(config.output)
    if bigquery is not None:
        project, dataset = bigquery
        tables = {"metrics": metrics, "dead_letter": records["dead_letter"], "outcomes": outcomes}
        if config.slo is not None:
            tables.update(slo_tables, dead_letter_rows=failed)
        tables | "WriteBigQuery" >> WriteBigQueryTables(
            project, dataset, streaming=streaming, api_endpoint=config.bigquery_api_endpoint
        )
    else:
        flush = {"streaming": streaming, "flush_seconds": config.sink_flush_seconds}
        outcomes | "WriteOutcomes" >> WriteParquetTable(
            config.output, "outcomes", OUTCOMES, **flush
        )
        metrics | "WriteMetrics" >> WriteParquetTable(
            config.output, "metrics", METRICS, partition_by_window_date=True, **flush
        )
        dead_letter | "WriteDeadLetter" >> WriteParquetTable(
            config.output, "dead_letter", DEAD_LETTER, **flush
        )
        for name, fields in (
            (ALERTS, ALERTS_FIELDS),
            (STATUS, SLO_STATUS_FIELDS),
            (COMPARISONS, COMPARISONS_FIELDS),
        ):
            if name in slo_tables:
                slo_tables[name] | f"Write_{name}" >> WriteParquetTable(
                    config.output, name, arrow_schema(fields), **flush
                )
    return {
        "records": records,
        "examples": examples,
        "metrics": metrics,
        "outcomes": outcomes,
        **slo_tables,
    }


def _slos(metrics, config: MonitorConfig):
    """SLO evaluation, comparisons and alert delivery:
    ``({alerts, slo_status, comparisons}, delivery dead letters)``."""
    clock = config.metrics.clock
    window = config.metrics.window  # the window grid: traffic SLOs fill silent windows
    slos = metrics | "Slos" >> EvaluateSlos(
        config.slo, config.bounded, clock, window.window_seconds, window.every_seconds
    )
    tables = {ALERTS: slos[ALERTS], STATUS: slos[STATUS]}
    resend = slos[RESEND]
    if config.slo.comparisons:
        compared = metrics | "Compare" >> CompareVersions(
            config.slo.comparisons, config.bounded, clock
        )
        tables[COMPARISONS] = compared[COMPARISONS]
        tables[ALERTS] = (slos[ALERTS], compared[ALERTS]) | "AllAlerts" >> beam.Flatten()
        resend = (resend, compared[RESEND]) | "AllResends" >> beam.Flatten()
    if not config.delivery.enabled:
        return tables, tables[ALERTS] | "NoDeliveries" >> beam.Filter(lambda _: False)
    to_send = (tables[ALERTS], resend) | "AlertsToSend" >> beam.Flatten()
    return tables, to_send | "DeliverAlerts" >> DeliverAlerts(config.delivery)
