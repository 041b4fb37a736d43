"""Alert delivery: SLO transitions to Alertmanager and to a Pub/Sub topic.

Input: rows of the ``alerts`` table (one per state transition, see
``schemas/records.py``). Each row is

* POSTed to Alertmanager's ``/api/v2/alerts`` as one alert: labels ``alertname``,
  ``slo`` (an SLO's or a comparison's name), ``sli`` (``comparison`` for a
  comparison), ``severity``, ``slice`` and one label per slice key (``region="eu"``);
  annotations ``summary``, ``runbook_url``, the burn rates (a comparison: ``value``,
  the relative difference, and ``threshold``, the margin) and the label frontier;
  ``startsAt`` when it fires and ``endsAt`` when it resolves. Grouping, inhibition,
  silences and routing are Alertmanager's (``docs/examples/alertmanager.yml``).
  Alertmanager resolves an alert it has not heard of for ``resolve_timeout``
  (5 min by default), so a streaming job re-sends every firing alert at each
  evaluation (:class:`DeliverAlerts` gets those rows as ``state = firing`` too);
* published to ``--alerts-topic projects/P/topics/T`` as one JSON message (the row,
  timestamps in RFC 3339), with attributes ``alert``, ``severity`` and ``state``, for
  automation (retrain, rollback).

Delivery never fails the job: a request that still fails after the retries (with
exponential backoff) becomes a ``dead_letter`` row with reason
``alert_delivery_failed``, the destination in ``source`` and the payload in
``raw_payload``.

Time: ``startsAt``/``endsAt`` are the row's ``emitted_at`` (when msewatch saw the
transition, UTC); the event time of the breach is the ``frontier`` annotation.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from msewatch.schemas.records import DEAD_LETTER_TAG
from msewatch.transforms.metrics.slices import parse_slice_name

_LABEL_KEYS = ("alertname", "slo", "sli", "severity", "slice")


@dataclasses.dataclass(frozen=True)
class DeliveryConfig:
    """Where alerts go and how hard to try.

    Attributes:
        alertmanager_url: Alertmanager's root (``http://127.0.0.1:9093``), or None.
        topic: ``projects/P/topics/T``, or None.
        attempts: tries per request (>= 1).
        backoff_seconds: wait before the second try; doubles after each failure.
        timeout_seconds: per request.
    """

    alertmanager_url: str | None = None
    topic: str | None = None
    attempts: int = 4
    backoff_seconds: float = 0.5
    timeout_seconds: float = 10.0

    def __post_init__(self):
        if self.alertmanager_url is not None and not self.alertmanager_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError(
                f"--alertmanager must be an http(s):// URL, got {self.alertmanager_url!r}"
            )
        if self.topic is not None and not _is_topic(self.topic):
            raise ValueError(f"--alerts-topic must be projects/P/topics/T, got {self.topic!r}")
        if self.attempts < 1 or self.backoff_seconds < 0 or self.timeout_seconds <= 0:
            raise ValueError("delivery attempts must be >= 1, backoff >= 0 and timeout > 0")

    @property
    def enabled(self) -> bool:
        return bool(self.alertmanager_url or self.topic)


def _is_topic(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 4 and parts[0] == "projects" and parts[2] == "topics" and all(parts)


def _rfc3339(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        value = datetime.datetime.fromtimestamp(value / 1000, datetime.UTC)
    return value.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def alertmanager_alert(row: dict) -> dict:
    """One ``alerts`` row as an Alertmanager API v2 alert (``postableAlert``)."""
    labels = {
        "alertname": row["alert"],
        "slo": row["slo"],
        "sli": row["sli"],
        "severity": row["severity"],
        "slice": row["slice"],
    }
    try:
        pairs = parse_slice_name(row["slice"])
    except ValueError:
        pairs = ()
    for key, value in pairs:
        if key not in _LABEL_KEYS:
            labels[key] = value
    annotations = {
        "summary": row.get("summary") or "",
        "runbook_url": row.get("runbook") or "",
        "frontier": _rfc3339(row.get("frontier")) or "",
    }
    numbers = ("burn_rate_long", "burn_rate_short", "burn_rate_threshold", "budget_remaining")
    if row.get("sli") == "comparison":  # the relative difference C / B - 1 and the margin
        numbers = ("value", "threshold")
    for name in numbers:
        value = row.get(name)
        if value is not None and not math.isnan(value):
            annotations[name] = f"{value:.4g}"
    alert = {"labels": labels, "annotations": {k: v for k, v in annotations.items() if v}}
    emitted = _rfc3339(row.get("emitted_at"))
    if row["state"] == "resolved":
        alert["endsAt"] = emitted
    else:
        alert["startsAt"] = emitted  # on a re-send Alertmanager keeps the earliest
    return alert


def pubsub_message(row: dict) -> tuple[bytes, dict[str, str]]:
    """One ``alerts`` row as a Pub/Sub message: JSON data and routing attributes."""
    data = {k: (_rfc3339(v) if isinstance(v, datetime.datetime) else v) for k, v in row.items()}
    attributes = {k: str(row[k]) for k in ("alert", "severity", "state") if row.get(k)}
    return json.dumps(data, sort_keys=True, allow_nan=False, default=str).encode(), attributes


def with_retries(send: Callable[[], None], config: DeliveryConfig, sleep=time.sleep) -> str | None:
    """Calls ``send`` up to ``config.attempts`` times; returns the last error, or None."""
    wait = config.backoff_seconds
    error = None
    for attempt in range(config.attempts):
        try:
            send()
            return None
        except Exception as e:  # noqa: BLE001 (any failure is retried, then dead-lettered)
            error = f"{type(e).__name__}: {e}"
        if attempt + 1 < config.attempts:
            sleep(wait)
            wait *= 2
    return error


def post_alerts(url: str, alerts: list[dict], timeout_seconds: float) -> None:
    """POSTs alerts to ``url/api/v2/alerts``; raises on a non-2xx answer."""
    request = urllib.request.Request(
        url.rstrip("/") + "/api/v2/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout_seconds) as response:
        if response.status // 100 != 2:
            raise urllib.error.HTTPError(url, response.status, "not accepted", None, None)


class _Deliver(beam.DoFn):
    """Sends each row; yields nothing, or dead-letter rows for failed deliveries."""

    def __init__(self, config: DeliveryConfig):
        self._config = config
        self._failed = Metrics.counter("msewatch", "alert_delivery_failed")
        self._publisher = None

    def setup(self):
        if self._config.topic:
            from google.cloud import pubsub_v1

            self._publisher = pubsub_v1.PublisherClient()

    def process(self, row: dict):
        config = self._config
        if config.alertmanager_url:
            alert = alertmanager_alert(row)
            error = with_retries(
                lambda: post_alerts(config.alertmanager_url, [alert], config.timeout_seconds),
                config,
            )
            if error:
                yield self._dead(config.alertmanager_url, json.dumps(alert), error)
        if config.topic and row.get("transition", True):
            data, attributes = pubsub_message(row)
            error = with_retries(
                lambda: self._publisher.publish(config.topic, data, **attributes).result(
                    timeout=config.timeout_seconds
                ),
                config,
            )
            if error:
                yield self._dead(config.topic, data.decode(), error)

    def _dead(self, destination: str, payload: str, error: str) -> TaggedOutput:
        self._failed.inc()
        return TaggedOutput(
            DEAD_LETTER_TAG,
            {
                "source": destination,
                "record_type": "alert",
                "reason": "alert_delivery_failed",
                "detail": error[:1000],
                "raw_payload": payload,
                "ingest_position": None,
                "message_id": None,
                "attributes": None,
            },
        )


class DeliverAlerts(beam.PTransform):
    """Delivers ``alerts`` rows (transitions, and re-sends of firing alerts).

    A row with ``transition = False`` is a re-send of a firing alert: it goes to
    Alertmanager only. Returns the dead-letter rows of failed deliveries.
    """

    def __init__(self, config: DeliveryConfig):
        super().__init__()
        self._config = config

    def expand(self, rows):
        results = rows | "Send" >> beam.ParDo(_Deliver(self._config)).with_outputs(
            DEAD_LETTER_TAG, main="sent"
        )
        return results[DEAD_LETTER_TAG]
