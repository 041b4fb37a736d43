"""A real OpenTelemetry Collector on 127.0.0.1, for tests of ``--otlp``.

The collector is the one ``tools/otelcol/build.sh`` builds from
``tools/otelcol/builder-config.yaml`` (the OTLP receiver and the file exporter) into
``tools/otelcol/dist/otelcol-msewatch`` (``$MSEWATCH_OTELCOL`` names another binary);
``.ci/run`` builds it. :func:`running_collector` starts it with its OTLP/HTTP receiver on a
free port (no gRPC receiver, no internal telemetry port) and the file exporter writing
OTLP JSON, one export a line, into a temporary file; it waits until the collector logs
that it is ready, yields ``(endpoint, file)`` and stops it. No binary, or one that does
not start: the test skips with the reason, or fails under ``MSEWATCH_REQUIRE_SERVERS=1``.
:func:`data_points` reads that file back.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from tests.servers import cannot_start, running

BINARY_ENV = "MSEWATCH_OTELCOL"
BINARY = Path(__file__).resolve().parent.parent / "tools" / "otelcol" / "dist" / "otelcol-msewatch"
READY = "Everything is ready"


def binary() -> Path:
    """The collector binary (``$MSEWATCH_OTELCOL`` or the one build.sh makes)."""
    return Path(os.environ.get(BINARY_ENV) or BINARY)


@contextlib.contextmanager
def running_collector(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Yields ``("http://127.0.0.1:PORT", the JSON-lines file of the file exporter)``."""
    path = binary()
    if not os.access(path, os.X_OK):
        cannot_start(
            f"no OpenTelemetry Collector at {path}: `bash tools/otelcol/build.sh` builds it "
            f"(.ci/run does), or set {BINARY_ENV}"
        )
    exported = tmp_path / "otlp.jsonl"
    config = tmp_path / "otelcol.yaml"

    def command(port: int) -> list[str]:
        config.write_text(
            "receivers:\n"
            f"  otlp: {{protocols: {{http: {{endpoint: '127.0.0.1:{port}'}}}}}}\n"
            "exporters:\n"
            f"  file: {{path: '{exported}', format: json, flush_interval: 100ms}}\n"
            "service:\n"
            "  telemetry: {metrics: {level: none}}\n"
            "  pipelines: {metrics: {receivers: [otlp], exporters: [file]}}\n"
        )
        return [str(path), f"--config={config}"]

    with running(
        "the OpenTelemetry Collector",
        command,
        lambda server: READY in server.log(),
        tmp_path / "otelcol.log",
    ) as server:
        yield server.url, exported


def _value(attribute_value: dict):
    """An OTLP JSON ``AnyValue``: its one field's value."""
    return next(iter(attribute_value.values()))


def data_points(exported: Path, metric: str) -> list[dict]:
    """Every data point of ``metric`` the collector wrote, oldest first, as
    ``{"attributes": {...}, "resource": {...}, "value": float, "time_ns": int}``."""
    if not exported.exists():
        return []
    points = []
    lines = [line for line in exported.read_text().splitlines() if line.strip()]
    for i, line in enumerate(lines):
        try:
            export = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # being written
                break
            raise
        for resource_metrics in export["resourceMetrics"]:
            attrs = resource_metrics["resource"].get("attributes", [])
            resource = {a["key"]: _value(a["value"]) for a in attrs}
            for scope in resource_metrics["scopeMetrics"]:
                for m in scope["metrics"]:
                    if m["name"] != metric:
                        continue
                    body = m.get("gauge") or m.get("sum")
                    for p in body["dataPoints"]:
                        points.append({
                            "attributes": {
                                a["key"]: _value(a["value"]) for a in p.get("attributes", [])
                            },
                            "resource": resource,
                            "value": float(p.get("asDouble", p.get("asInt"))),
                            "time_ns": int(p["timeUnixNano"]),
                        })  # fmt: skip
    return points
