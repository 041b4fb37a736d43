"""Alert delivery that fails: a refused port, a server that never answers, permanent and
transient refusals, a Pub/Sub client that cannot start. Delivery returns by its deadline,
retries only what a retry can change, and dead-letters every alert it did not deliver.

Servers are sockets on 127.0.0.1 made here: one that refuses (a free port nobody
listens on), one that accepts and never answers, and a small HTTP server that answers a
chosen status and counts the requests.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import socket
import threading
import time

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from msewatch.transforms.io.alerts import DeliverAlerts, DeliveryConfig, post_alerts
from msewatch.transforms.io.delivery import Deadline, deliver
from tests.integration.test_alert_delivery import _row
from tests.servers import QuietHandler, free_port, http_on_loopback

T = datetime.datetime(2026, 11, 2, 9, 0, tzinfo=datetime.UTC)
SLACK_S = 0.6  # beyond the deadline: delivery.GRACE_SECONDS (0.25 s) and thread hand-off


def _rows(n: int) -> list[dict]:
    return [_row("firing", T) | {"alert": f"a{i}", "slice": f"region=r{i}"} for i in range(n)]


@contextlib.contextmanager
def silent_server():
    """A server on 127.0.0.1 that accepts connections and never answers; yields
    ``(url, accepted)`` where ``accepted`` lists the connections it took."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    accepted = []

    def accept():
        with contextlib.suppress(OSError):  # closed at the end
            while True:
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        listener.close()
        for conn in accepted:
            conn.close()


@contextlib.contextmanager
def answering_server(answer):
    """An HTTP server on 127.0.0.1; ``answer(alerts, n)`` -> status for the ``n``-th
    POST (from 1) with its JSON list. Yields ``(url, posts)``: the lists received."""
    posts = []

    class Handler(QuietHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            alerts = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            posts.append(alerts)
            status = answer(alerts, len(posts))
            body = b"invalid label set" if status == 400 else b""
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with http_on_loopback(Handler) as port:
        yield f"http://127.0.0.1:{port}", posts


def _deliver(url: str, n: int, deadline_s: float, calls: list | None = None, **settings):
    """:func:`deliver` of ``n`` alerts to ``url`` with the default settings but the
    deadline; returns ``(failed, seconds taken)``; ``calls`` gets each try's batch size."""
    config = DeliveryConfig(alertmanager_url=url, deadline_seconds=deadline_s, **settings)

    def post(batch, timeout):
        if calls is not None:
            calls.append(len(batch))
        post_alerts(url, batch, timeout)

    start = time.monotonic()
    failed = deliver(
        post,
        [{"labels": {"alertname": f"a{i}"}} for i in range(n)],
        batch_size=config.batch_size,
        concurrency=config.concurrency,
        attempts=config.attempts,
        backoff_seconds=config.backoff_seconds,
        timeout_seconds=config.timeout_seconds,
        deadline=Deadline(config.deadline_seconds),
    )
    return failed, time.monotonic() - start


def test_a_refused_port_is_tried_as_one_batch_until_the_deadline():
    """59 alerts (the issue's run: 214 s before, 4 tries of each alert, one after the
    other) are one batch of at most 100. Deadline 1 s, backoff 0.5 s then 1 s: tries at
    0 s and 0.5 s, then a 1 s wait would pass the deadline: 2 tries in all."""
    calls = []
    failed, seconds = _deliver(f"http://127.0.0.1:{free_port()}", 59, 1.0, calls)
    assert calls == [59, 59]
    assert [i for i, _ in failed] == list(range(59))
    assert all("Connection refused" in reason and "deadline" in reason for _, reason in failed)
    assert seconds < 1.0 + SLACK_S


def test_a_server_that_never_answers_costs_the_deadline_once():
    """250 alerts: 3 batches (100, 100, 50), sent at once (4 at a time); each waits for
    the deadline (1.5 s) and is not retried after it. Before: 4 tries of 10 s per alert."""
    with silent_server() as (url, accepted):
        failed, seconds = _deliver(url, 250, 1.5)
        assert len(accepted) == 3
    assert [i for i, _ in failed] == list(range(250))
    assert all("timed out" in reason for _, reason in failed), failed[0]
    assert seconds < 1.5 + SLACK_S


def test_batches_still_queued_at_the_deadline_are_dead_lettered_then():
    """One request at a time to a silent server: the first of 3 batches holds the only
    thread until the deadline, the other two never start; delivery returns at the deadline."""
    with silent_server() as (url, accepted):
        failed, seconds = _deliver(url, 250, 1.0, concurrency=1)
        assert len(accepted) == 1
    assert len(failed) == 250
    # not started before the deadline: either never started, or started after it
    assert all("before the 1s delivery deadline" in reason for i, reason in failed if i >= 100)
    assert seconds < 1.0 + SLACK_S


def test_a_400_answer_is_not_retried():
    with answering_server(lambda alerts, n: 400) as (url, posts):
        failed, _ = _deliver(url, 1, 10.0)
    assert len(posts) == 1  # before: 4 tries
    ((index, reason),) = failed
    assert index == 0 and "HTTP Error 400" in reason and "invalid label set" in reason
    assert "not retried" in reason


def test_a_refused_batch_is_split_until_only_the_refused_alert_is_left():
    """Alerts 0-4, alert 3 invalid; the server refuses any list holding it (as
    Alertmanager does, storing the rest). Halves: [0-4] 400 -> [0,1] ok, [2,3,4] 400 ->
    [2] ok, [3,4] 400 -> [3] 400, [4] ok: 7 requests, and only alert 3 is dead-lettered."""

    def answer(alerts, n):
        return 400 if any(a["labels"]["alertname"] == "a3" for a in alerts) else 200

    with answering_server(answer) as (url, posts):
        failed, _ = _deliver(url, 5, 10.0)
    assert [len(p) for p in posts] == [5, 2, 3, 1, 2, 1, 1]
    assert [i for i, _ in failed] == [3]


def test_transient_answers_are_retried():
    """503, then 429, then 200: delivered at the third try (backoff 0.01 s, 0.02 s)."""
    statuses = {1: 503, 2: 429}
    with answering_server(lambda alerts, n: statuses.get(n, 200)) as (url, posts):
        failed, _ = _deliver(url, 2, 10.0, backoff_seconds=0.01)
    assert failed == [] and len(posts) == 3


def test_the_pipeline_dead_letters_each_alert_a_silent_server_did_not_take():
    rows = _rows(6)
    with silent_server() as (url, _):
        config = DeliveryConfig(alertmanager_url=url, deadline_seconds=1.0)
        start = time.monotonic()
        with beam.Pipeline() as p:
            dead = p | beam.Create(rows) | DeliverAlerts(config)
            alerts = dead | beam.Map(lambda r: json.loads(r["raw_payload"])["labels"]["alertname"])
            assert_that(alerts, equal_to([r["alert"] for r in rows]))
        seconds = time.monotonic() - start
    assert seconds < 30  # before: 6 alerts x (4 tries x 10 s + 3.5 s of backoff) = 261 s
