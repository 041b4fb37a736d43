"""OpenTelemetry export: the metrics of ``msewatch serve``'s ``/metrics`` over OTLP.

``msewatch serve OUTPUT --otlp ENDPOINT`` pushes them every ``--otlp-interval`` (30s)
while it serves, re-reading the tables when they change; ``msewatch run ... --otlp
ENDPOINT`` pushes them once at the end of a bounded run, after the tables are committed.
The transport is OTLP/HTTP with protobuf bodies (``opentelemetry-exporter-otlp-proto-http``);
ENDPOINT is ``http[s]://HOST:PORT`` of an OTLP/HTTP receiver (the collector's port 4318),
to which ``/v1/metrics`` is added unless the URL has a path of its own.

One definition of each metric: the instruments are made from the Prometheus families that
:class:`msewatch.serve.TablesCollector` builds (its ``SLICE_GAUGES``, ``SLO_GAUGES``...),
renamed by :func:`msewatch.commands.otlp_names.instrument_name` in OpenTelemetry's
semantic-convention style (``msewatch_rmse`` -> ``msewatch.slice.rmse``;
``msewatch_label_lag_p90_seconds`` -> ``msewatch.slice.label_lag_p90``, unit ``s``). Each
label becomes an attribute of the ``msewatch.`` namespace (``slice`` ->
``msewatch.slice``), and a data point with a slice also carries that slice's keys as
``msewatch_slice_info`` names them (``msewatch.region``, ``msewatch.model_version``).
Gauges are observable gauges, the read counter an observable counter (cumulative); each
push sends the current value of every series, timestamped with the wall clock of the push
(UTC). The resource is ``service.name=msewatch`` and ``msewatch.output=<absolute output
path>``; ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` add to it or override it,
and the exporter's own variables (``OTEL_EXPORTER_OTLP_HEADERS``, ``..._CERTIFICATE``,
``..._COMPRESSION``) apply as usual.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import socket
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

from msewatch.commands.arguments import duration_seconds
from msewatch.commands.otlp_names import NAMESPACE, series

DEFAULT_INTERVAL_S = 30.0
TIMEOUT_S = 10.0
METRICS_PATH = "/v1/metrics"
_EXPORTER_LOGGERS = ("opentelemetry.exporter.otlp.proto.http",)
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^\"')\]]+)")  # in a requests ConnectionError's text


def parse_endpoint(text: str) -> str:
    """``--otlp``: ``http[s]://HOST[:PORT][/PATH]`` -> the URL metrics are posted to.

    Raises:
        ValueError: not an http(s) URL with a host, a bad port, a query or fragment.
    """
    try:
        parts = urllib.parse.urlsplit(text or "")
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number 0-65535)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or any(c.isspace() for c in text)
    ):
        raise ValueError(
            "--otlp must be the http:// or https:// URL of an OTLP/HTTP receiver, e.g. "
            f"http://127.0.0.1:4318 (the collector's OTLP/HTTP port); got {text[:200]!r}"
        )
    path = parts.path if parts.path not in ("", "/") else METRICS_PATH
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _endpoint_argument(text: str) -> str:
    try:
        return parse_endpoint(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _interval_argument(text: str) -> float:
    seconds = duration_seconds(text)
    if seconds < 0.1:
        raise argparse.ArgumentTypeError(f"--otlp-interval {text!r} must be at least 100ms")
    return seconds


def add_endpoint_argument(parser: argparse.ArgumentParser, when: str) -> None:
    """Adds ``--otlp ENDPOINT`` (``when``: what the help says about when it pushes)."""
    parser.add_argument(
        "--otlp",
        type=_endpoint_argument,
        metavar="ENDPOINT",
        help=f"push the metrics of /metrics over OTLP/HTTP {when} to this receiver, "
        "e.g. http://127.0.0.1:4318 (/v1/metrics is added)",
    )


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--otlp`` and ``--otlp-interval`` to ``msewatch serve``."""
    add_endpoint_argument(parser, "while serving")
    parser.add_argument(
        "--otlp-interval",
        type=_interval_argument,
        default=DEFAULT_INTERVAL_S,
        metavar="DURATION",
        help="time between two OTLP pushes (30s)",
    )


@contextlib.contextmanager
def _exporter_log() -> Iterator[list[str]]:
    """Collects the OTLP exporter's log lines (its retries and its failure) instead of
    printing them, so a failed push is one line that names the reason; restores the
    loggers' ``propagate`` after."""
    lines: list[str] = []

    class _Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = _Lines(logging.WARNING)
    loggers = [logging.getLogger(name) for name in _EXPORTER_LOGGERS]
    saved = [lg.propagate for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.propagate = False
    try:
        yield lines
    finally:
        for lg, propagate in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.propagate = propagate


def _reason(lines: list[str], endpoint: str) -> str:
    """Why an export failed, in a few words: an OS error the exporter logged (``connection
    refused``), else the HTTP answer it logged (``Failed to export metrics batch code:
    404, reason: Not Found``), else what connecting to the endpoint's host and port says
    (the exporter does not log the cause when no retry fits in its timeout), else its
    last line; at most 300 characters."""
    text = [" ".join(line.split()) for line in lines]
    for line in text:
        if errno := _ERRNO.search(line):
            return errno.group(1).strip().lower()
    answered = [line for line in text if "code: " in line and "code: None" not in line]
    if answered:
        return answered[0][:300]
    parts = urllib.parse.urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=2).close()
    except OSError as e:
        return (e.strerror or str(e) or type(e).__name__).lower()
    return (text[-1] if text else "no reason given")[:300]


class Pusher:
    """Pushes a :class:`msewatch.serve.TablesCollector`'s metrics over OTLP/HTTP.

    The OpenTelemetry SDK's ``MeterProvider`` holds one observable instrument per metric
    (made the first time the metric appears); :meth:`push` takes the collector's families
    (re-read if the tables changed), collects the instruments with an in-memory reader
    and exports the result with ``OTLPMetricExporter``, synchronously, so that a failure
    is seen and reported.

    Args:
        collector: the tables' collector (``serve`` shares its own with ``/metrics``).
        endpoint: the URL of :func:`parse_endpoint`.
        output: the output folder, for the ``msewatch.output`` resource attribute.
        timeout_s: how long one export (with the exporter's retries) may take.
    """

    def __init__(self, collector, endpoint: str, output: str | Path, timeout_s: float = TIMEOUT_S):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource

        own = {"service.name": NAMESPACE, "msewatch.output": os.path.abspath(output)}
        resource = Resource.create({**own, **OTELResourceDetector().detect().attributes})
        self.endpoint = endpoint
        self.resource = resource
        self._collector = collector
        self._reader = InMemoryMetricReader()
        self._provider = MeterProvider(metric_readers=[self._reader], resource=self.resource)
        self._meter = self._provider.get_meter(NAMESPACE)
        self._exporter = OTLPMetricExporter(endpoint=endpoint, timeout=timeout_s)
        self._timeout_ms = timeout_s * 1000
        self._series: dict[str, tuple] = {}
        self._instruments: dict[str, object] = {}
        self._interrupted = False

    def _observe(self, name: str) -> Callable:
        from opentelemetry.metrics import Observation

        def callback(_options):
            points = self._series.get(name, (None, None, None, []))[3]
            return [Observation(value, attributes) for value, attributes in points]

        return callback

    def _instrument(self, name: str, kind: str, unit: str, description: str) -> None:
        if name in self._instruments:
            return
        create = (
            self._meter.create_observable_counter
            if kind == "counter"
            else self._meter.create_observable_gauge
        )
        self._instruments[name] = create(
            name, callbacks=[self._observe(name)], unit=unit, description=description
        )

    def push(self) -> int:
        """Exports the current metrics once; returns the number of data points sent.

        The collector re-reads the tables if they changed (a failed read keeps its last
        good read and says so on its own log).

        Raises:
            OSError: the receiver cannot be reached or refuses the metrics (one line).
        """
        from opentelemetry.sdk.metrics.export import MetricExportResult

        self._series = series(self._collector.collect())
        for name, (kind, unit, description, _points) in self._series.items():
            self._instrument(name, kind, unit, description)
        data = self._reader.get_metrics_data()
        if data is None:
            return 0
        with _exporter_log() as lines:
            result = self._exporter.export(data, timeout_millis=self._timeout_ms)
        if result is not MetricExportResult.SUCCESS:
            reason = _reason(lines, self.endpoint)
            raise OSError(f"cannot push to the OTLP receiver at {self.endpoint}: {reason}")
        return sum(len(p[3]) for p in self._series.values())

    def interrupt(self) -> None:
        """Shuts the exporter down: an export waiting to retry gives up at once."""
        if not self._interrupted:
            self._interrupted = True
            self._exporter.shutdown()

    def close(self) -> None:
        """Shuts the exporter and the meter provider down."""
        self.interrupt()
        self._provider.shutdown()


def push_every(pusher: Pusher, interval_s: float, stop: threading.Event) -> threading.Thread:
    """Starts a daemon thread that pushes now and then every ``interval_s`` until ``stop``
    is set, printing one line on stderr when pushing starts failing and when it works again
    (not once per failed push)."""

    def loop() -> None:
        failing = None
        while True:
            try:
                points = pusher.push()
            except OSError as e:
                if stop.is_set():  # serve is stopping: the exporter was shut down
                    return
                if failing is not True:
                    print(f"msewatch serve: {e}; trying again every {interval_s:g}s",
                          file=sys.stderr, flush=True)  # fmt: skip
                failing = True
            else:
                if failing is not False:
                    print(f"msewatch serve: pushed {points} data points to {pusher.endpoint} "
                          f"(every {interval_s:g}s)", file=sys.stderr, flush=True)  # fmt: skip
                failing = False
            if stop.wait(interval_s):
                return

    thread = threading.Thread(target=loop, name="msewatch-otlp", daemon=True)
    thread.start()
    return thread


def check_run(endpoint: str | None, output: str, bounded: bool) -> None:
    """Checks ``msewatch run --otlp`` before the run.

    Raises:
        ValueError: a streaming run, or an output that is not a local folder.
    """
    if endpoint is None:
        return
    if not bounded:
        raise ValueError(
            "--otlp pushes at the end of a bounded run; for a stream, run "
            "`msewatch serve OUTPUT --otlp ENDPOINT`"
        )
    if "://" in output:
        raise ValueError(
            "--otlp reads the tables of a local --output folder; "
            f"{output} is not one (run msewatch serve --otlp where the tables are)"
        )


def push_once(endpoint: str, output: str) -> int:
    """Pushes the metrics of the tables in ``output`` once; returns the data points sent.

    Raises:
        OSError: the tables cannot be read, or the receiver cannot be reached or refuses
            the metrics (one line).
    """
    from msewatch.commands.serve import TablesCollector

    failures: list[str] = []
    collector = TablesCollector(output, log=failures.append)
    collector.refresh()
    if failures:
        raise OSError(failures[0].removeprefix("msewatch serve: "))
    pusher = Pusher(collector, endpoint, output)
    try:
        return pusher.push()
    finally:
        pusher.close()


def push_after_run(endpoint: str, output: str, quiet: bool) -> int:
    """``msewatch run --otlp``'s push: 0, or 1 with one line on stderr when it fails."""
    try:
        points = push_once(endpoint, output)
    except OSError as e:
        print(f"msewatch: error: {e}; the tables in {output} are written", file=sys.stderr)
        return 1
    if not quiet:
        print(f"Pushed {points} data points to {endpoint} over OTLP")
    return 0
