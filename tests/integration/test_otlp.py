"""``--otlp``: the metrics reach a real OpenTelemetry Collector (``tests/otelcol_server.py``:
the OTLP receiver and the file exporter) and the file it writes holds the tables' RMSE.

``msewatch run --otlp`` runs the demo's sample through the pipeline and pushes once at the
end; ``msewatch serve --otlp`` pushes a copy of the demo output every 0.5 s and, after a
later pane is written, the new RMSE. The expected RMSE is read from the Parquet files with
pandas (the latest pane of each slice's newest window that passes the label gate,
``test_prometheus.newest_settled``), not from the collector that built the push.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from tests.integration.test_prometheus import later_pane, newest_settled
from tests.otelcol_server import data_points, running_collector
from tests.prometheus_server import running_serve

pytestmark = pytest.mark.slow
RMSE = "msewatch.slice.rmse"
APAC = "region=apac"


def _latest(exported, metric: str, slice_name: str, wait_s: float = 20) -> dict | None:
    """The newest data point of ``metric`` for ``slice_name`` in the collector's file,
    waiting up to ``wait_s`` for one to be written."""
    deadline = time.monotonic() + wait_s
    while True:
        points = [
            p
            for p in data_points(exported, metric)
            if p["attributes"].get("msewatch.slice") == slice_name
        ]
        if points or time.monotonic() > deadline:
            return max(points, key=lambda p: p["time_ns"]) if points else None
        time.sleep(0.2)


@pytest.fixture(scope="module")
def run_pushed(demo, tmp_path_factory):
    """(OUTPUT, collector file): ``msewatch run --otlp`` on the demo's sample."""
    base = tmp_path_factory.mktemp("otlp-run")
    sample, out = demo[0].parent / "sample", base / "out"
    with running_collector(base) as (endpoint, exported):
        proc = subprocess.run(
            [sys.executable, "-m", "msewatch", "run",
             "--predictions", str(sample / "predictions.jsonl"),
             "--labels", str(sample / "labels.jsonl"), "--output", str(out),
             "--slice", "region", "--slice", "model_version,region", "--otlp", endpoint],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"data points to {endpoint}/v1/metrics over OTLP" in proc.stdout
        assert _latest(exported, RMSE, APAC) is not None, "nothing reached the collector"
        yield out, exported


def test_the_collectors_file_holds_the_rmse_of_region_apac(run_pushed):
    out, exported = run_pushed
    expected = newest_settled(out).set_index("slice").loc[APAC, "rmse"]
    point = _latest(exported, RMSE, APAC)
    assert point["value"] == expected
    assert point["attributes"]["msewatch.region"] == "apac"
    assert point["resource"]["service.name"] == "msewatch"
    assert point["resource"]["msewatch.output"] == os.path.abspath(out)


def test_every_settled_slice_is_pushed_once(run_pushed):
    """One push: one point per settled slice, each with the table's RMSE, and the model
    version as an attribute of the slices that have one."""
    out, exported = run_pushed
    newest = newest_settled(out).set_index("slice")["rmse"]
    points = data_points(exported, RMSE)
    assert sorted(p["attributes"]["msewatch.slice"] for p in points) == sorted(newest.index)
    for p in points:
        attributes = p["attributes"]
        assert p["value"] == newest[attributes["msewatch.slice"]], attributes
        if "model_version=" in attributes["msewatch.slice"]:
            assert attributes["msewatch.model_version"] in attributes["msewatch.slice"]


def test_serve_keeps_pushing_as_the_tables_change(demo, tmp_path):
    """serve pushes the demo's apac RMSE, then the RMSE of a later pane (123.25)."""
    out = shutil.copytree(demo[0], tmp_path / "out")
    newest = newest_settled(out).set_index("slice", drop=False)
    with running_collector(tmp_path) as (endpoint, exported):
        options = ("--otlp", endpoint, "--otlp-interval", "500ms")
        with running_serve(out, tmp_path / "serve.log", options):
            first = _latest(exported, RMSE, APAC)
            assert first is not None, (tmp_path / "serve.log").read_text()[-1000:]
            assert first["value"] == newest.loc[APAC, "rmse"]
            row = newest.loc[APAC]
            folder = out / "metrics" / f"window_date={row['window_start']:%Y-%m-%d}"
            pq.write_table(later_pane(out, row, 123.25), folder / "late-pane.parquet")
            deadline = time.monotonic() + 20
            while (latest := _latest(exported, RMSE, APAC))["value"] != 123.25:
                assert time.monotonic() < deadline, f"still {latest['value']}"
                time.sleep(0.2)
            assert latest["time_ns"] > first["time_ns"]
