"""the Grafana dashboard of msewatch: the report's three views over ``serve``'s metrics

``msewatch report OUTPUT --grafana FILE`` writes it; ``docs/grafana/msewatch.json`` is
the same JSON, kept in the repository for import (a test checks they are equal). The
dashboard has three rows, as the report's views (:mod:`msewatch.commands.report_views`):

* **Executive**: RMSE per model version (the ``model_version=V`` slices) over the
  dashboard's range (30 days by default; 90 days: pick it), its 30- and 90-day average,
  the error budget left and the burn rate per SLO;
* **On-call**: alerts firing, RMSE over the last 24 h, the worst slices relative to
  overall, the model versions seen (first and last window end scraped), label freshness
  (wall clock minus the newest settled window's end), coverage and lag, serve's last read;
* **Debug**: MAE and bias, each SLO's SLI value against its threshold, the RMSE trend
  slope with its 95 % interval, the version deltas with their always-valid bounds and
  the margin, the comparison decisions.

The Prometheus data source is the template variable ``datasource``, so one file imports
into any Grafana. The value distributions are not Prometheus metrics; the debug row's
text panel points to the report's debug page. Averages over time are of the scraped
gauges (each scrape weighs the same), not the pooled RMSE of the report.
"""

from __future__ import annotations

import json
from pathlib import Path

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
VERSIONS = 'slice=~"model_version=[^,]+"'
WIDTH = 24


def _panel(kind: str, title: str, targets: list[tuple[str, str]], unit: str = "", **extra):
    """A panel of ``kind`` with ``(expr, legend)`` targets; ``gridPos`` is set later."""
    return {
        "type": kind,
        "title": title,
        "datasource": DATASOURCE,
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "expr": expr,
                "legendFormat": legend,
                "datasource": DATASOURCE,
            }
            for i, (expr, legend) in enumerate(targets)
        ],  # fmt: skip
        "fieldConfig": {"defaults": {"unit": unit} if unit else {}, "overrides": []},
        "options": {},
        **extra,
    }


def executive_row() -> list[dict]:
    return [
        _panel("timeseries", "RMSE per model version", [(f"msewatch_rmse{{{VERSIONS}}}",
                                                         "{{slice}}")]),
        _panel("stat", "RMSE per model version, 30-day and 90-day average", [
            (f"avg_over_time(msewatch_rmse{{{VERSIONS}}}[30d])", "{{slice}} 30d"),
            (f"avg_over_time(msewatch_rmse{{{VERSIONS}}}[90d])", "{{slice}} 90d"),
        ]),
        _panel("bargauge", "Error budget left per SLO and slice", [
            ("msewatch_slo_error_budget_remaining_ratio", "{{slo}} {{slice}}")], "percentunit"),
        _panel("timeseries", "Burn rate per SLO, slice and lookback", [
            ("msewatch_slo_burn_rate", "{{slo}} {{slice}} {{lookback}}")]),
    ]  # fmt: skip


def oncall_row() -> list[dict]:
    top = ('topk(5, msewatch_rmse{slice!="overall"} / ignoring (slice) group_left '
           'msewatch_rmse{slice="overall"})')  # fmt: skip
    return [
        _panel("stat", "Alerts firing (1) per SLO, slice and severity", [
            ("msewatch_slo_alert_firing", "{{slo}} {{severity}} {{slice}}")]),
        _panel("timeseries", "RMSE, last 24 h", [("msewatch_rmse", "{{slice}}")],
               timeFrom="24h"),
        _panel("bargauge", "Top offending slices: RMSE / overall RMSE", [(top, "{{slice}}")]),
        _panel("table", "Model versions seen: first and last newest-window end", [
            (f"1000 * min_over_time(msewatch_window_end_timestamp_seconds{{{VERSIONS}}}[90d])",
             "first {{slice}}"),
            (f"1000 * msewatch_window_end_timestamp_seconds{{{VERSIONS}}}", "last {{slice}}"),
        ], "dateTimeAsIso"),
        _panel("timeseries", "Label freshness: age of the newest settled window", [
            ("time() - msewatch_window_end_timestamp_seconds", "{{slice}}")], "s"),
        _panel("timeseries", "Label coverage", [("msewatch_label_coverage_ratio", "{{slice}}")],
               "percentunit"),
        _panel("timeseries", "Label lag p90", [("msewatch_label_lag_p90_seconds", "{{slice}}")],
               "s"),
        _panel("stat", "Seconds since serve last read the tables", [
            ("time() - msewatch_serve_last_read_timestamp_seconds", "{{instance}}")], "s"),
    ]  # fmt: skip


def debug_row() -> list[dict]:
    return [
        _panel("timeseries", "MAE and bias", [("msewatch_mae", "MAE {{slice}}"),
                                              ("msewatch_bias", "bias {{slice}}")]),
        _panel("timeseries", "SLI value and threshold per SLO", [
            ("msewatch_slo_sli_value", "{{slo}} {{slice}}"),
            ("msewatch_slo_threshold", "threshold {{slo}} {{slice}}")]),
        _panel("timeseries", "RMSE trend: slope per day and its 95% interval", [
            ("86400 * msewatch_rmse_trend_slope_per_second", "{{slice}}"),
            ("86400 * msewatch_rmse_trend_slope_low_per_second", "low {{slice}}"),
            ("86400 * msewatch_rmse_trend_slope_high_per_second", "high {{slice}}")]),
        _panel("timeseries", "Version delta C / B - 1 with its always-valid bounds", [
            ("msewatch_comparison_relative_difference_ratio", "{{comparison}} {{slice}}"),
            ("msewatch_comparison_relative_difference_ci_low_ratio",
             "low {{comparison}} {{slice}}"),
            ("msewatch_comparison_relative_difference_ci_high_ratio",
             "high {{comparison}} {{slice}}"),
            ("msewatch_comparison_margin_ratio", "margin {{comparison}} {{slice}}")],
            "percentunit"),
        _panel("table", "Comparison decisions", [
            ("msewatch_comparison_decision == 1", "{{comparison}} {{slice}} {{decision}}")]),
        {"type": "text", "title": "Distributions", "options": {"mode": "markdown", "content": (
            "The squared-error histogram and the y_pred / y_true distributions are in the "
            "report's debug page: `msewatch report OUTPUT --view debug`.")}},
    ]  # fmt: skip


ROWS = (("Executive", executive_row), ("On-call", oncall_row), ("Debug", debug_row))


def dashboard() -> dict:
    """The dashboard as a dict (Grafana's JSON model, schema version 39)."""
    panels, y, next_id = [], 0, 1
    for title, row in ROWS:
        panels.append({"type": "row", "title": title, "collapsed": False, "panels": [],
                       "id": next_id, "gridPos": {"h": 1, "w": WIDTH, "x": 0, "y": y}})  # fmt: skip
        next_id, y = next_id + 1, y + 1
        for i, panel in enumerate(row()):
            place = {"h": 8, "w": WIDTH // 2, "x": (i % 2) * WIDTH // 2, "y": y + 8 * (i // 2)}
            panels.append({**panel, "id": next_id, "gridPos": place})
            next_id += 1
        y += 8 * ((len(row()) + 1) // 2)
    source = {"name": "datasource", "label": "Prometheus", "type": "datasource",
              "query": "prometheus", "current": {}, "hide": 0}  # fmt: skip
    return {
        "title": "msewatch",
        "uid": "msewatch",
        "description": "msewatch: RMSE per slice and model version, SLOs, comparisons "
        "(the Prometheus metrics of `msewatch serve`).",
        "tags": ["msewatch"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-30d", "to": "now"},
        "refresh": "1m",
        "templating": {"list": [source]},
        "panels": panels,
    }


def dashboard_json() -> str:
    """The dashboard's JSON text (indented, keys in a stable order, final newline)."""
    return json.dumps(dashboard(), indent=2) + "\n"


def write_dashboard(path: str | Path) -> Path:
    """Writes the dashboard JSON to ``path`` (as :func:`msewatch.commands.report.write_whole`)."""
    from msewatch.commands.report import write_whole

    return write_whole(Path(path), dashboard_json())


def expressions(board: dict) -> list[tuple[str, str]]:
    """``(panel title, PromQL)`` of every target of every panel of ``board``."""
    return [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]
