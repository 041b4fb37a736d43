"""Unbounded source: predictions and labels from Pub/Sub, :class:`PubSubSource`.

Each Pub/Sub message carries one JSON record (the fields of a JSON Lines line, see
the README, "Input records"). Messages are read with their attributes, grouped into
batches per shard and parsed, a batch at a time, into Arrow tables by
:func:`msewatch.transforms.parse.pubsub_messages.parse_json_messages`, the same rules
as files.

Data flow of each side (``ReadPredictions`` / ``ReadLabels``; labels are API):

    "Read" ReadFromPubSub(subscription, with_attributes=True)
    "ToMessages"  -> (shard, Message): payload, message id, attributes, publish time
    "Batch"       GroupIntoBatches(max_batch, max_buffering_seconds) per shard
    "Parse"       -> records (pa.Table) + dead letters (pa.Table, with message id and
                     attributes as JSON)

Time (all UTC):

* **Element timestamps from Pub/Sub.** The read stamps each message with its
  *publish time* (or with the ``timestamp_attribute`` value when one is configured).
  That timestamp is used only for grouping; the record's own time is what counts.
* **Record time.** A prediction's time is its ``event_time``; a label's is its
  ``label_time`` or, when absent, the message's publish time (docs/semantics.md). Parsed
  batches are re-stamped with the earliest record time they hold (dead-letter batches
  with the earliest publish time); the join keys on the times inside the batch.
* **Watermark.** On Dataflow the Pub/Sub watermark estimates the oldest unacknowledged
  *publish time* (or ``timestamp_attribute``) of the subscription's backlog. On the
  Python DirectRunner it is simply the wall clock at each pull: the read reports
  ``time.time()`` as its watermark (``_PubSubReadEvaluator`` in Beam 2.77), so records
  whose event time is older than "now" arrive behind the watermark.
* **What is late.** The join runs in the global window, so nothing is dropped there:
  a record behind the watermark is still joined. A label that arrives after the
  watermark has passed the end of its *prediction's* metrics window yields a LATE
  pane of that window (allowed lateness is ``label_ttl`` plus a slack,
  ``transforms/metrics/windowing.py``); a label whose ``label_time - event_time``
  exceeds ``label_ttl`` is a ``late_label`` outcome; a prediction expires when the
  watermark passes ``event_time + label_ttl`` (rounded up to the join's expiry grid). Because
  the watermark follows publish time, records published long after their event
  time (backfills) count as late data for their windows.
* **Batching delay.** A batch is emitted when it holds ``max_batch`` messages or
  ``max_buffering_seconds`` of processing time after its first message, whichever
  comes first; the batching adds at most that delay.

Runners: Beam's Python Pub/Sub read runs only on Dataflow (which swaps in its native
source) and the Python DirectRunner (apache/beam#27443). On Flink or another portable
runner, pass ``expansion_service`` (``HOST:PORT`` of a Java expansion service with
Beam's GCP IO, e.g. ``beam-sdks-java-io-google-cloud-platform-expansion-service``): the
read becomes Java's ``PubsubIO`` as a cross-language transform. That path is not
exercised offline (the Java service cannot be fetched here); the rest is the same.

Subscriptions: :class:`PubSubSource` takes ``projects/P/subscriptions/S`` paths and
``msewatch run`` takes ``pubsub://projects/P/subscriptions/S`` URLs; both are checked by
one rule here (:func:`parse_subscription_path`, :func:`parse_subscription_url`): ``P`` a
GCP project id and ``S`` a Pub/Sub subscription name, as GCP documents them.

Delivery: Pub/Sub is at-least-once. Redelivered messages are duplicates of a
prediction_id and the join counts them as ``duplicate_*`` outcomes (first wins).
``id_label`` (Dataflow only; the DirectRunner rejects it) lets the runner drop
redeliveries by a publisher-set attribute.
"""

from __future__ import annotations

import re

import apache_beam as beam
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.pvalue import PBegin
from apache_beam.utils.timestamp import Timestamp

from msewatch.schemas.features import check_features
from msewatch.schemas.records import DEAD_LETTER_TAG, LABEL, PREDICTION
from msewatch.transforms.io.messages import (
    Message,
    ParseMessageBatch,
    batch_and_parse,
    check_batching,
    shard_of,
)

SUBSCRIPTION_URL_SCHEME = "pubsub://"
SUBSCRIPTION_FORM = "projects/PROJECT/subscriptions/NAME"
_RESOURCE_PATH = re.compile(
    r"projects/(?P<project>[^/]+)/(?P<kind>subscriptions|topics)/(?P<name>[^/]+)"
)
# GCP project id: 6 to 30 lowercase letters, digits and hyphens, a letter first and no
# hyphen last; a legacy domain-scoped project puts its domain and ':' before it.
_PROJECT_ID = re.compile(r"(?:[a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]")
# Pub/Sub subscription name: 3 to 255 letters, digits and - _ . ~ + %, a letter first,
# not starting with "goog".
_SUBSCRIPTION_NAME = re.compile(r"(?!goog)[A-Za-z][A-Za-z0-9._~+%-]{2,254}")


def is_subscription_url(text: str | None) -> bool:
    """Whether ``text`` names a Pub/Sub input (``pubsub://...``) rather than files."""
    return (text or "").startswith(SUBSCRIPTION_URL_SCHEME)


def parse_subscription_url(url: str) -> str:
    """``pubsub://projects/P/subscriptions/S`` -> ``projects/P/subscriptions/S``.

    Raises:
        ValueError: not a ``pubsub://`` URL, or its path breaks
            :func:`parse_subscription_path`'s rules.
    """
    if not is_subscription_url(url):
        raise ValueError(f"not a Pub/Sub URL (expected {SUBSCRIPTION_URL_SCHEME}...): {url!r}")
    path = url[len(SUBSCRIPTION_URL_SCHEME) :].strip("/")
    return _checked_subscription(path, url, SUBSCRIPTION_URL_SCHEME + SUBSCRIPTION_FORM)


def parse_subscription_path(path: str) -> str:
    """Checks a subscription path ``projects/P/subscriptions/S`` and returns it.

    ``P`` must be a GCP project id (6 to 30 lowercase letters, digits and hyphens, a
    letter first and no hyphen last; ``DOMAIN:ID`` for a legacy domain-scoped project)
    and ``S`` a Pub/Sub subscription name (3 to 255 letters, digits and ``-_.~+%``, a
    letter first, not starting with ``goog``).

    Raises:
        ValueError: another shape, a topic (reading a topic would create a temporary
            subscription and lose messages across restarts), or a project id or
            subscription name outside those rules.
    """
    return _checked_subscription(path, path, SUBSCRIPTION_FORM)


def _checked_subscription(path: str, given: str, form: str) -> str:
    """:func:`parse_subscription_path` of ``path``; errors quote ``given`` and ``form``."""
    match = _RESOURCE_PATH.fullmatch(path or "")
    if not match:
        raise ValueError(f"expected {form}; got {given!r}")
    if match["kind"] == "topics":
        raise ValueError(
            f"{given!r} is a topic: create a subscription (gcloud pubsub subscriptions "
            f"create NAME --topic=TOPIC) and pass {form}"
        )
    if not _PROJECT_ID.fullmatch(match["project"]):
        raise ValueError(
            f"{match['project']!r} in {given!r} is not a GCP project id: 6 to 30 lowercase "
            "letters, digits or hyphens, a letter first and no hyphen last"
        )
    if not _SUBSCRIPTION_NAME.fullmatch(match["name"]):
        raise ValueError(
            f"{match['name']!r} in {given!r} is not a Pub/Sub subscription name: 3 to 255 "
            "letters, digits or - _ . ~ + %, a letter first, not starting with 'goog'"
        )
    return path


def _publish_time_ms(message: PubsubMessage, timestamp: Timestamp) -> int:
    published = message.publish_time
    if published is not None:
        ms = int(round(published.timestamp() * 1000))
        if ms > 0:  # an unset proto timestamp decodes as the epoch
            return ms
    return timestamp.micros // 1000


class _ToMessages(beam.DoFn):
    """``PubsubMessage`` -> ``(shard, Message)``; the shard is a hash of the message id."""

    def __init__(self, shards: int):
        self._shards = shards

    def process(self, message: PubsubMessage, timestamp=beam.DoFn.TimestampParam):
        message_id = message.message_id or ""
        payload = message.data or b""
        yield (
            shard_of(message_id.encode() if message_id else payload, self._shards),
            Message(
                payload=payload,
                message_id=message_id,
                attributes=dict(message.attributes or {}),
                publish_time_ms=_publish_time_ms(message, timestamp),
            ),
        )


class _ReadSubscription(beam.PTransform):
    """One subscription -> ``{"records", "dead_letter"}`` Arrow batches."""

    def __init__(self, subscription, record_type, segment_keys, options: dict):
        super().__init__()
        self._subscription = subscription
        self._record_type = record_type
        self._segment_keys = segment_keys
        self._options = options

    def expand(self, pbegin):
        opt = self._options
        read_args = {
            "subscription": self._subscription,
            "with_attributes": True,
            "id_label": opt["id_label"],
            "timestamp_attribute": opt["timestamp_attribute"],
        }
        if opt["expansion_service"]:
            from apache_beam.io.external.gcp.pubsub import ReadFromPubSub as ReadViaJava

            read = ReadViaJava(**read_args, expansion_service=opt["expansion_service"])
        else:
            read = beam.io.ReadFromPubSub(**read_args)
        parse = ParseMessageBatch(
            self._record_type, self._subscription, self._segment_keys, features=opt["features"]
        )
        messages = (
            pbegin
            | "Read" >> read
            | "ToMessages"
            >> beam.ParDo(_ToMessages(opt["shards"])).with_output_types(tuple[str, Message])
        )
        return batch_and_parse(messages, parse, opt["max_batch"], opt["max_buffering_seconds"])


class PubSubSource(beam.PTransform):
    """PBegin -> ``{"predictions", "labels", "dead_letter"}`` PCollections of Arrow batches.

    Unbounded: build the pipeline with ``MonitorConfig(bounded=False)`` and run it with
    ``--streaming``. See the module docstring for time semantics.

    Args:
        predictions_subscription: ``projects/P/subscriptions/S`` of prediction messages.
        labels_subscription: ``projects/P/subscriptions/S`` of label messages.
        segment_keys: segment attributes of predictions to keep for slicing.
        max_batch: most messages per parsed batch (1 to 2**20).
        max_buffering_seconds: longest processing-time wait for a batch to fill (> 0).
        shards: batching keys per side; more shards batch in parallel.
        id_label: attribute with a publisher-assigned unique id (runner dedup; not
            supported by the DirectRunner).
        timestamp_attribute: attribute holding each message's time (RFC 3339 or
            epoch ms) for the element timestamp and the Dataflow watermark, instead
            of the publish time.
        expansion_service: ``HOST:PORT`` of a Java expansion service to read through
            Java's PubsubIO (needed on Flink and other portable runners).
        features: feature names of predictions to keep (their value sketches).

    Raises:
        ValueError: a subscription is not ``projects/P/subscriptions/S`` with a valid
            project id and name (:func:`parse_subscription_path`), or a number is out
            of range.
    """

    def __init__(
        self,
        predictions_subscription: str,
        labels_subscription: str,
        segment_keys: tuple[str, ...] = (),
        max_batch: int = 2000,
        max_buffering_seconds: float = 1.0,
        shards: int = 16,
        id_label: str | None = None,
        timestamp_attribute: str | None = None,
        expansion_service: str | None = None,
        features: tuple[str, ...] = (),
    ):
        super().__init__()
        for name, sub in (
            ("predictions_subscription", predictions_subscription),
            ("labels_subscription", labels_subscription),
        ):
            try:
                parse_subscription_path(sub)
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from None
        check_batching(max_batch, max_buffering_seconds)
        if shards < 1:
            raise ValueError(f"shards must be >= 1; got {shards}")
        self._predictions = predictions_subscription
        self._labels = labels_subscription
        self._segment_keys = tuple(segment_keys)
        self._options = {
            "max_batch": max_batch,
            "max_buffering_seconds": max_buffering_seconds,
            "shards": shards,
            "id_label": id_label,
            "timestamp_attribute": timestamp_attribute,
            "expansion_service": expansion_service,
            "features": check_features(features, segment_keys),
        }

    def expand(self, pbegin: PBegin):
        preds = pbegin | "ReadPredictions" >> _ReadSubscription(
            self._predictions, PREDICTION.name, self._segment_keys, self._options
        )
        labels = pbegin | "ReadLabels" >> _ReadSubscription(
            self._labels, LABEL.name, (), self._options
        )
        both = (preds[DEAD_LETTER_TAG], labels[DEAD_LETTER_TAG])
        dead = both | "FlattenDeadLetter" >> beam.Flatten()
        return {
            PREDICTION.tag: preds["records"],
            LABEL.tag: labels["records"],
            DEAD_LETTER_TAG: dead,
        }
