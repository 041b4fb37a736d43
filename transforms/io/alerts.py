"""Alert delivery: SLO transitions to Alertmanager and to a Pub/Sub topic.

Input: rows of the ``alerts`` table (one per state transition, see
``schemas/records.py``). Each row is

* POSTed to Alertmanager's ``/api/v2/alerts`` as one alert: labels ``alertname``,
  ``slo`` (an SLO's or a comparison's name), ``sli`` (``comparison`` for a
  comparison), ``severity``, ``slice`` and one label per slice key (``region="eu"``;
  a key that is not a valid label name is renamed by :mod:`msewatch.transforms.labels`,
  ``sku-category`` -> ``sku_category``, and the original kept in the annotation
  ``slice_key_<label>``); annotations ``summary``, ``runbook_url``, the burn rates (a
  comparison: ``value``, the relative difference, and ``threshold``, the margin) and the
  label frontier; ``startsAt`` when it fires and ``endsAt`` when it resolves. Grouping,
  inhibition, silences and routing are Alertmanager's (``docs/examples/alertmanager.yml``).
  Alertmanager resolves an alert it has not heard of for ``resolve_timeout``
  (5 min by default), so a streaming job re-sends every firing alert at each
  evaluation (:class:`DeliverAlerts` gets those rows as ``state = firing`` too);
* published to ``--alerts-topic projects/P/topics/T`` as one JSON message (the row,
  timestamps in RFC 3339), with attributes ``alert``, ``severity`` and ``state``, for
  automation (retrain, rollback).

Delivery never fails the job and never holds it for long. The rows of a bundle (a
bounded run on the DirectRunner: usually all of its alerts; a streaming run: those of an
evaluation) are sent together under one deadline, ``--alert-deadline`` (30 s), that
starts with the bundle's first delivery: Alertmanager gets lists of up to 100 alerts,
4 lists at a time, each try waiting at most 10 s, failed tries retried with exponential
backoff (0.5 s, 1 s, 2 s) while the deadline allows, permanent refusals (HTTP 4xx but
408 and 429) never (:mod:`msewatch.transforms.io.delivery`); Pub/Sub messages are
published at once (the client batches them) and awaited until the deadline. Each
alert or message not delivered becomes a ``dead_letter`` row with reason
``alert_delivery_failed``, the reason in ``detail``, the destination in ``source`` and
the payload in ``raw_payload``; so does every message when the Pub/Sub client cannot
start (no credentials, no emulator).

Time: ``startsAt``/``endsAt`` are the row's ``emitted_at`` (when msewatch saw the
transition, UTC); the event time of the breach is the ``frontier`` annotation.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import json
import math
import urllib.error
import urllib.request

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.utils.windowed_value import WindowedValue

from msewatch.schemas.records import DEAD_LETTER_TAG
from msewatch.transforms.io.delivery import Deadline, check_http_url, deliver, describe
from msewatch.transforms.labels import label_names
from msewatch.transforms.metrics.slices import parse_slice_name

LABEL_KEYS = ("alertname", "slo", "sli", "severity", "slice")
"""The labels every alert has; a slice key of the same name is renamed."""
KEY_ANNOTATION = "slice_key_"
"""Prefix of the annotation that keeps a renamed slice key (``slice_key_sku_category``)."""


@dataclasses.dataclass(frozen=True)
class DeliveryConfig:
    """Where alerts go and how hard to try.

    Attributes:
        alertmanager_url: Alertmanager's root (``http://127.0.0.1:9093``), or None.
        topic: ``projects/P/topics/T``, or None.
        attempts: tries per request (>= 1).
        backoff_seconds: wait before the second try; doubles after each failure.
        timeout_seconds: per request (at most the time left before the deadline).
        deadline_seconds: all deliveries of a bundle end within it (``--alert-deadline``).
        batch_size: alerts per Alertmanager request.
        concurrency: Alertmanager requests at a time.
        slice_keys: every slice key of the run, so that a key gets the same label
            name in every alert (:func:`msewatch.transforms.labels.label_names`).
    """

    alertmanager_url: str | None = None
    topic: str | None = None
    attempts: int = 4
    backoff_seconds: float = 0.5
    timeout_seconds: float = 10.0
    deadline_seconds: float = 30.0
    batch_size: int = 100
    concurrency: int = 4
    slice_keys: tuple[str, ...] = ()

    def __post_init__(self):
        if self.alertmanager_url is not None:
            check_http_url(self.alertmanager_url, "--alertmanager")
        if self.topic is not None and not _is_topic(self.topic):
            raise ValueError(f"--alerts-topic must be projects/P/topics/T, got {self.topic!r}")
        if self.attempts < 1 or self.backoff_seconds < 0 or self.timeout_seconds <= 0:
            raise ValueError("delivery attempts must be >= 1, backoff >= 0 and timeout > 0")
        if not 0 < self.deadline_seconds <= 3600:
            raise ValueError(
                f"--alert-deadline must be more than 0s and at most 1h, got "
                f"{self.deadline_seconds:g}s"
            )
        if self.batch_size < 1 or self.concurrency < 1:
            raise ValueError("delivery batch_size and concurrency must be >= 1")

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


def alertmanager_alert(row: dict, slice_keys: tuple[str, ...] = ()) -> dict:
    """One ``alerts`` row as an Alertmanager API v2 alert (``postableAlert``).

    Each slice key is a label named by :func:`msewatch.transforms.labels.label_names`
    over ``slice_keys`` and the row's own keys; a renamed key is kept in the annotation
    ``slice_key_<label>``.
    """
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
    names = label_names([*slice_keys, *(k for k, _ in pairs)], reserved=LABEL_KEYS)
    renamed = {}
    for key, value in pairs:
        labels[names[key]] = value
        if names[key] != key:
            renamed[KEY_ANNOTATION + names[key]] = key
    annotations = {
        "summary": row.get("summary") or "",
        "runbook_url": row.get("runbook") or "",
        "frontier": _rfc3339(row.get("frontier")) or "",
        "fired_24h": "" if row.get("fired_24h") is None else str(row["fired_24h"]),
        **renamed,
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
    """Collects a bundle's rows and delivers them together under one deadline; yields
    dead-letter rows for what was not delivered (in the rows' windows)."""

    FLUSH_ROWS = 5000  # rows held before delivering in the middle of a bundle

    def __init__(self, config: DeliveryConfig):
        self._config = config
        self._failed = Metrics.counter("msewatch", "alert_delivery_failed")
        self._publisher = None
        self._publisher_error: str | None = None

    def setup(self):
        if self._config.topic:
            try:
                from google.cloud import pubsub_v1

                self._publisher = pubsub_v1.PublisherClient()
            except Exception as e:  # noqa: BLE001 (no credentials, no emulator: dead letters)
                self._publisher_error = f"the Pub/Sub client cannot start: {describe(e)}"

    def start_bundle(self):
        self._rows: list[tuple[dict, WindowedValue]] = []
        self._deadline: Deadline | None = None

    def process(self, row: dict, timestamp=beam.DoFn.TimestampParam, window=beam.DoFn.WindowParam):
        self._rows.append((row, WindowedValue(None, timestamp, [window])))
        if len(self._rows) >= self.FLUSH_ROWS:
            yield from (TaggedOutput(DEAD_LETTER_TAG, d) for d in self._flush())

    def finish_bundle(self):
        yield from (TaggedOutput(DEAD_LETTER_TAG, d) for d in self._flush())

    def _flush(self) -> list[WindowedValue]:
        """Delivers the rows held; the dead letters, each in its row's window."""
        rows, self._rows = self._rows, []
        if not rows:
            return []
        if self._deadline is None:  # one deadline for the whole bundle
            self._deadline = Deadline(self._config.deadline_seconds)
        published = []  # first, so that Pub/Sub and Alertmanager share the deadline
        if self._config.topic:
            published = self._publish([(r, w) for r, w in rows if r.get("transition", True)])
        dead = self._to_alertmanager(rows) if self._config.alertmanager_url else []
        dead += self._published(published)
        return [w.with_value(self._dead(*d)) for w, d in dead]

    def _to_alertmanager(self, rows):
        config = self._config
        alerts = [alertmanager_alert(row, config.slice_keys) for row, _ in rows]
        failed = deliver(
            lambda batch, timeout: post_alerts(config.alertmanager_url, batch, timeout),
            alerts,
            batch_size=config.batch_size,
            concurrency=config.concurrency,
            attempts=config.attempts,
            backoff_seconds=config.backoff_seconds,
            timeout_seconds=config.timeout_seconds,
            deadline=self._deadline,
        )
        url = config.alertmanager_url
        return [(rows[i][1], (url, json.dumps(alerts[i]), error)) for i, error in failed]

    def _publish(self, rows) -> list[tuple[WindowedValue, str, object]]:
        """Publishes every message at once (the client batches them): ``(window, data,
        a future or the error)`` per message."""
        topic = self._config.topic
        published = []
        for row, window in rows:
            data, attributes = pubsub_message(row)
            if self._publisher is None:
                pending = self._publisher_error or "the Pub/Sub client did not start"
            else:
                try:
                    timeout = max(self._deadline.remaining(), 0.001)
                    pending = self._publisher.publish(topic, data, timeout=timeout, **attributes)
                except Exception as e:  # noqa: BLE001 (a refused message is a dead letter)
                    pending = describe(e)
            published.append((window, data.decode(), pending))
        return published

    def _published(self, published):
        """The dead letters of the messages not published before the deadline."""
        dead = []
        for window, data, pending in published:
            error = pending if isinstance(pending, str) else _awaited(pending, self._deadline)
            if error:
                dead.append((window, (self._config.topic, data, error)))
        return dead

    def _dead(self, destination: str, payload: str, error: str) -> dict:
        self._failed.inc()
        return {
            "source": destination,
            "record_type": "alert",
            "reason": "alert_delivery_failed",
            "detail": error[:1000],
            "raw_payload": payload,
            "ingest_position": None,
            "message_id": None,
            "attributes": None,
        }


def _awaited(future, deadline: Deadline) -> str | None:
    """None once ``future`` has succeeded, else why it did not before ``deadline``."""
    try:
        future.result(timeout=deadline.remaining())
        return None
    except concurrent.futures.TimeoutError:
        return f"no answer before the {deadline.seconds:g}s delivery deadline"
    except Exception as e:  # noqa: BLE001 (any failure to publish is a dead letter)
        return describe(e)


class DeliverAlerts(beam.PTransform):
    """Delivers ``alerts`` rows (transitions, and re-sends of firing alerts).

    A row with ``transition = False`` is a re-send of a firing alert: it goes to
    Alertmanager only. A bundle's rows are delivered together, within
    ``config.deadline_seconds`` (see the module docstring). Returns the dead-letter rows
    of failed deliveries, in the windows of their rows (the alerts' timestamps are
    kept; no windowing, trigger or lateness of its own).
    """

    def __init__(self, config: DeliveryConfig):
        super().__init__()
        self._config = config

    def expand(self, rows):
        results = rows | "Send" >> beam.ParDo(_Deliver(self._config)).with_outputs(
            DEAD_LETTER_TAG, main="sent"
        )
        return results[DEAD_LETTER_TAG]
