"""``--otlp``'s naming, endpoints and failures, without a collector (the collector's
test is ``tests/integration/test_otlp.py``).

The expected names are written out by hand from the rule of
``msewatch/commands/otlp_names.py`` (drop ``msewatch_``, move the unit out of the name,
``slo_``/``comparison_``/``serve_`` become a namespace, the rest is a slice's); the expected
attributes from the labels given here.
"""

from __future__ import annotations

import http.server
import os
import re
import threading

import pytest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from msewatch.commands import otlp, otlp_names, serve
from tests.servers import free_port
from tests.unit.test_serve import output  # noqa: F401 (the fixture: metrics, SLO tables, comparisons)

# OpenTelemetry's instrument-name syntax (the API spec: a letter, then up to 254 of
# letters, digits, '_', '.', '-', '/').
INSTRUMENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-/]{0,254}")


@pytest.mark.parametrize(
    ("prometheus", "name", "unit"),
    [
        ("msewatch_rmse", "msewatch.slice.rmse", ""),
        ("msewatch_label_coverage_ratio", "msewatch.slice.label_coverage", "1"),
        ("msewatch_label_lag_p90_seconds", "msewatch.slice.label_lag_p90", "s"),
        ("msewatch_window_end_timestamp_seconds", "msewatch.slice.window_end_timestamp", "s"),
        ("msewatch_rmse_trend_slope_per_second", "msewatch.slice.rmse_trend_slope", "/s"),
        ("msewatch_slo_burn_rate", "msewatch.slo.burn_rate", ""),
        ("msewatch_slo_error_budget_remaining_ratio", "msewatch.slo.error_budget_remaining", "1"),
        ("msewatch_comparison_decision", "msewatch.comparison.decision", ""),
        ("msewatch_comparison_p_value", "msewatch.comparison.p_value", ""),
        ("msewatch_slice_info", "msewatch.slice.info", ""),
        ("msewatch_serve_table_reads", "msewatch.serve.table_reads", ""),
    ],
)
def test_instrument_names(prometheus, name, unit):
    assert otlp_names.instrument_name(prometheus) == (name, unit)


def test_every_family_serve_exposes_has_its_own_valid_instrument_name(output):  # noqa: F811
    """All families of the fixture (slices, SLOs, comparisons, slice info, the read
    counter): 33 Prometheus families, 33 distinct instrument names."""
    collector = serve.TablesCollector(output[0], log=pytest.fail)
    families = [f.name for f in collector.collect()]
    names = [otlp_names.instrument_name(f)[0] for f in families]
    assert len(families) == 33 and len(set(names)) == len(names)
    assert all(INSTRUMENT_NAME.fullmatch(n) for n in names), names
    static = [spec[0] for specs in (serve.SLICE_GAUGES, serve.TREND_GAUGES,
              serve.SLO_GAUGES, serve.COMPARISON_GAUGES) for spec in specs]  # fmt: skip
    assert set(static) <= set(families)


def test_a_name_outside_msewatch_is_refused():
    with pytest.raises(ValueError, match="not an msewatch metric"):
        otlp_names.instrument_name("up")


def _families():
    info = GaugeMetricFamily("msewatch_slice_info", "info", labels=[])
    info.add_sample(
        "msewatch_slice_info",
        {"slice": "model_version=v2,region=apac", "model_version": "v2", "region": "apac"},
        1,
    )
    info.add_sample("msewatch_slice_info", {"slice": "overall"}, 1)
    rmse = GaugeMetricFamily("msewatch_rmse", "RMSE.", labels=["slice"])
    rmse.add_metric(["model_version=v2,region=apac"], 2.5)
    rmse.add_metric(["overall"], 1.25)
    burn = GaugeMetricFamily("msewatch_slo_burn_rate", "Burn.", labels=["slo", "slice", "lookback"])
    burn.add_metric(["fc", "overall", "1h"], 14.5)
    reads = CounterMetricFamily("msewatch_serve_table_reads", "Reads.", labels=["result"])
    reads.add_metric(["ok"], 3)
    return [rmse, burn, reads, info]


def test_labels_become_msewatch_attributes_and_slices_carry_their_keys():
    series = otlp_names.series(_families())
    assert series["msewatch.slice.rmse"] == ("gauge", "", "RMSE.", [
        (2.5, {"msewatch.slice": "model_version=v2,region=apac",
               "msewatch.model_version": "v2", "msewatch.region": "apac"}),
        (1.25, {"msewatch.slice": "overall"}),
    ])  # fmt: skip
    assert series["msewatch.slo.burn_rate"][3] == [
        (14.5, {"msewatch.slo": "fc", "msewatch.slice": "overall", "msewatch.lookback": "1h"})
    ]
    assert series["msewatch.serve.table_reads"] == (
        "counter", "", "Reads.", [(3.0, {"msewatch.result": "ok"})]
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/metrics"),
        ("http://127.0.0.1:4318/", "http://127.0.0.1:4318/v1/metrics"),
        ("https://otel.example:443/otlp/v1/metrics", "https://otel.example:443/otlp/v1/metrics"),
        ("http://[::1]:4318", "http://[::1]:4318/v1/metrics"),
    ],
)
def test_endpoints(text, url):
    assert otlp.parse_endpoint(text) == url


@pytest.mark.parametrize(
    "text",
    ["127.0.0.1:4318", "grpc://h:4317", "http://", "http://h:99999", "http://h:4318?x=1",
     "http://h:4318\n", ""],
)  # fmt: skip
def test_bad_endpoints(text):
    with pytest.raises(ValueError, match="--otlp must be the http:// or https:// URL"):
        otlp.parse_endpoint(text)


class _Refuses(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(404)
        self.end_headers()
        self.wfile.write(b"404 page not found")

    def log_message(self, *args):
        pass


def test_a_receiver_that_refuses_is_one_line_naming_it(output):  # noqa: F811
    server = http.server.HTTPServer(("127.0.0.1", 0), _Refuses)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/metrics"
    pusher = otlp.Pusher(serve.TablesCollector(output[0]), endpoint, output[0], timeout_s=2)
    try:
        with pytest.raises(OSError) as raised:
            pusher.push()
    finally:
        pusher.close()
        server.shutdown()
        server.server_close()
    message = str(raised.value)
    assert message.startswith(f"cannot push to the OTLP receiver at {endpoint}: ")
    assert "404" in message and "\n" not in message


def test_nothing_listening_is_one_line_and_no_log_on_stderr(output, capfd):  # noqa: F811
    endpoint = f"http://127.0.0.1:{free_port()}/v1/metrics"
    pusher = otlp.Pusher(serve.TablesCollector(output[0]), endpoint, output[0], timeout_s=1)
    try:
        refused = (
            rf"^cannot push to the OTLP receiver at {re.escape(endpoint)}: connection refused$"
        )
        with pytest.raises(OSError, match=refused):
            pusher.push()
    finally:
        pusher.close()
    assert capfd.readouterr().err == ""  # the exporter's retries are in the message instead


class _Flaky:
    """A pusher whose pushes fail, fail, work, fail, then work once more and stop."""

    endpoint = "http://127.0.0.1:4318/v1/metrics"

    def __init__(self, stop):
        self.stop = stop
        self.outcomes = [OSError("down"), OSError("down"), 7, OSError("again")]

    def push(self) -> int:
        if not self.outcomes:
            self.stop.set()
            return 7
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, OSError):
            raise outcome
        return outcome


def test_serve_says_once_when_pushing_fails_and_once_when_it_works_again(capsys):
    stop = threading.Event()
    otlp.push_every(_Flaky(stop), 0.01, stop).join(timeout=10)
    assert capsys.readouterr().err.splitlines() == [
        "msewatch serve: down; trying again every 0.01s",
        "msewatch serve: pushed 7 data points to http://127.0.0.1:4318/v1/metrics (every 0.01s)",
        "msewatch serve: again; trying again every 0.01s",
        "msewatch serve: pushed 7 data points to http://127.0.0.1:4318/v1/metrics (every 0.01s)",
    ]


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, {"service.name": "msewatch"}),
        (
            {"OTEL_SERVICE_NAME": "forecast", "OTEL_RESOURCE_ATTRIBUTES": "model=demand"},
            {"service.name": "forecast", "model": "demand"},
        ),
    ],
)
def test_the_resource_names_msewatch_and_the_output_unless_the_environment_does(
    tmp_path, monkeypatch, environment, expected
):
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    pusher = otlp.Pusher(
        serve.TablesCollector(tmp_path), "http://127.0.0.1:4318/v1/metrics", tmp_path
    )
    pusher.close()
    attributes = dict(pusher.resource.attributes)
    assert {k: attributes.get(k) for k in expected} == expected
    assert attributes["msewatch.output"] == os.path.abspath(tmp_path)
