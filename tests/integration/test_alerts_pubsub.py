"""Alert transitions reach a Pub/Sub topic (the emulator), one JSON message each."""

from __future__ import annotations

import datetime
import json

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from msewatch.transforms.io.alerts import DeliverAlerts, DeliveryConfig
from tests import pubsub_emulator as emu
from tests.integration.test_alert_delivery import _row

T = datetime.datetime(2026, 11, 2, 9, 0, tzinfo=datetime.UTC)


def test_each_transition_is_one_json_message_with_routing_attributes(emulator):
    subscription = emulator.create_subscription("alerts")
    topic = emulator.publisher.topic_path(emu.PROJECT, "alerts")
    rows = [_row("firing", T), _row("resolved", T + datetime.timedelta(hours=2))]
    resend = {**_row("firing", T), "transition": False}  # a re-send: Alertmanager only
    with beam.Pipeline() as p:
        dead = p | beam.Create([*rows, resend]) | DeliverAlerts(DeliveryConfig(topic=topic))
        assert_that(dead, equal_to([]))
    pulled = emulator.subscriber.pull(subscription=subscription, max_messages=10, timeout=30)
    messages = [m.message for m in pulled.received_messages]
    got = sorted(
        ((json.loads(m.data), dict(m.attributes)) for m in messages),
        key=lambda message: message[1]["state"],
    )
    assert len(got) == 2  # the re-send was not published
    states = sorted(attributes["state"] for _, attributes in got)
    assert states == ["firing", "resolved"]
    data, attributes = got[0]
    assert attributes["alert"] == "forecast-rmse:page" and attributes["severity"] == "page"
    assert data["slice"] == "model_version=v2,region=eu%2Cnorth"
    assert data["frontier"] == "2026-11-02T09:00:00Z" and data["watermark"] is None


def test_a_hanging_alertmanager_does_not_take_the_deadline_from_pubsub(emulator):
    """Both destinations share one deadline (1.5 s): messages are published before the
    alerts are sent, so the silent Alertmanager's wait does not leave Pub/Sub without
    time. The alert is dead-lettered; the message arrives."""
    from tests.integration.test_alert_delivery_failures import silent_server

    subscription = emulator.create_subscription("shared-deadline")
    topic = emulator.publisher.topic_path(emu.PROJECT, "shared-deadline")
    with silent_server() as (url, _):
        config = DeliveryConfig(alertmanager_url=url, topic=topic, deadline_seconds=1.5)
        with beam.Pipeline() as p:
            dead = p | beam.Create([_row("firing", T)]) | DeliverAlerts(config)
            assert_that(dead | beam.Map(lambda r: r["source"]), equal_to([url]))
    pulled = emulator.subscriber.pull(subscription=subscription, max_messages=10, timeout=30)
    assert [dict(m.message.attributes)["state"] for m in pulled.received_messages] == ["firing"]
