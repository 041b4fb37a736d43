"""the on-call view of ``msewatch report``: what is wrong now, and since when

From the latest pane of each window and slice (``metrics_latest``), UTC:

* the last 24 h of windows (window end after the newest window end minus 24 h): the RMSE
  of the overall slice and of the :data:`TOP_CHARTED` worst slices, and the overall
  slice's windows as a table, newest first;
* the top offending slices: the ``worst`` named query (RMSE pooled over the last day of
  complete windows), with each one's ratio to the overall slice's;
* the alerts firing now (SLO and comparison alerts: fired, not resolved since);
* the model-version changes: per ``model_version=V`` slice, its first window with a
  prediction and its last window end, newest first;
* label freshness and lag: per slice, the newest window end, the newest settled window
  end (labels in: :func:`msewatch.commands.trend.slice_trends`'s gate) and how far it is behind,
  and the newest window's label coverage and lag p50/p90/p99; the overall slice's
  coverage and lag over the last 24 h as charts.

``docs/observability.md`` ("Dashboards") explains each number.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from msewatch.commands import query as q
from msewatch.commands import report_svg as svg
from msewatch.commands import report_views as views
from msewatch.commands.trend import DEFAULT_MIN_COVERAGE as MIN_COVERAGE
from msewatch.commands.trend import DEFAULT_MIN_SCORED as MIN_SCORED
from msewatch.commands.trend import slice_trends

TOP_CHARTED = 3
HOURS_24 = pd.Timedelta(hours=24)


def last_day(latest: pd.DataFrame) -> pd.DataFrame:
    """The rows whose window ends in the 24 h before the newest window end."""
    if latest.empty:
        return latest
    return latest[latest["window_end"] > latest["window_end"].max() - HOURS_24]


def _day_chart(day: pd.DataFrame, worst: pd.DataFrame) -> str:
    names = ["overall", *[s for s in worst["slice"] if s != "overall"][:TOP_CHARTED]]
    series = []
    for i, name in enumerate(n for n in names if n in set(day["slice"])):
        part = day[day["slice"] == name]
        x, y = svg.epoch_s(part["window_start"]), part["rmse"].to_numpy(float)
        series.append(svg.Series(name, svg.PALETTE[i], x, y, ~part["complete"].to_numpy(bool)))
    axis = svg.LinearAxis(0.0, svg.nice_top(svg.finite(day["rmse"]).max(initial=0)))
    chart = svg.line_chart(series, axis, "RMSE over the last 24 hours")
    return svg.figure(f"RMSE, last 24 h: {svg.keys(series)}", chart)


def _window_table(day: pd.DataFrame) -> str:
    overall = day[day["slice"] == "overall"].sort_values("window_start", ascending=False)
    rows = [
        [svg.utc(s), svg.num(r.rmse), svg.num(r.scored), svg.pct(r.label_coverage),
         svg.seconds_text(r.label_lag_p90_s), "complete" if r.complete else "<b>provisional</b>"]
        for r, s in zip(overall.itertuples(), svg.epoch_s(overall["window_start"]), strict=True)
    ]  # fmt: skip
    header = ["window start (UTC)", "RMSE", "scored", "coverage", "lag p90", "state"]
    return "<h3>Overall slice, window by window</h3>" + svg.table(header, rows)


def last_24h(day: pd.DataFrame, worst: pd.DataFrame) -> str:
    head = "<h2>The last 24 hours of windows</h2>"
    if day.empty:
        return head + f'<p class="note">{html.escape(q.NO_WINDOWS)}</p>'
    return head + f'<div class="grid">{_day_chart(day, worst)}</div>' + _window_table(day)


def top_slices(worst: pd.DataFrame) -> str:
    """The worst slices, with their RMSE relative to the overall slice's."""
    head = "<h2>Top offending slices (RMSE over the last day of complete windows)</h2>"
    if worst.empty:
        return head + '<p class="note">No complete window with scored pairs yet.</p>'
    overall = worst.loc[worst["slice"] == "overall", "rmse"]
    base = float(overall.iloc[0]) if len(overall) else float("nan")
    rows = [
        [html.escape(r.slice), svg.num(r.rmse), f"{r.rmse / base:.2f}x" if base > 0 else "",
         f"[{svg.num(r.rmse_ci_low)}, {svg.num(r.rmse_ci_high)}]", svg.num(r.scored),
         svg.pct(r.label_coverage)]
        for r in worst[worst["slice"] != "overall"].head(views.MAX_ROWS).itertuples()
    ]  # fmt: skip
    header = ["slice", "RMSE", "vs overall", "95% CI", "scored", "coverage"]
    return head + svg.table(header, rows)


def firing_now(tables) -> str:
    """The alerts still firing at the end (SLO and comparison alerts alike): a ``firing``
    transition without a later ``resolved`` one
    (:func:`msewatch.commands.report_slo.firing_periods`)."""
    if tables is None:
        return ""
    periods = tables.periods
    firing = periods[np.isinf(periods["end"])] if len(periods) else periods
    head = "<h2>Alerts firing now</h2>"
    if firing.empty:
        return head + '<p class="note">None: every alert that fired has resolved.</p>'
    last = tables.alerts.groupby("alert").tail(1).set_index("alert")["summary"]
    rows = [
        [html.escape(r.alert), html.escape(r.severity), svg.utc(r.start),
         html.escape(str(last.get(r.alert) or ""))]
        for r in firing.sort_values(["severity", "start"]).itertuples()
    ]  # fmt: skip
    header = ["alert", "severity", "firing since (label frontier, UTC)", "summary"]
    return head + svg.table(header, rows, "text")


def version_changes(latest: pd.DataFrame) -> str:
    """First and last window of each model version, the newest first."""
    head = "<h2>Model-version changes</h2>"
    rows = views.versions(latest)
    rows = rows[rows["predictions"] > 0]
    if rows.empty:
        return head + '<p class="note">No <code>model_version=V</code> slice in the metrics.</p>'
    seen = (
        views.aligned(rows)
        .groupby("version")
        .agg(
            first=("window_start", "min"),
            last=("window_end", "max"),
            predictions=("predictions", "sum"),
        )
    )
    seen = seen.sort_values(["first", "last"], ascending=False)
    table = [
        [html.escape(f"model_version={v}"), svg.utc(svg.epoch_s(pd.Series([r.first])).max()),
         svg.utc(svg.epoch_s(pd.Series([r.last])).max()), svg.num(int(r.predictions))]
        for v, r in zip(seen.index, seen.itertuples(), strict=True)
    ]  # fmt: skip
    header = ["model version", "first seen (window start, UTC)", "last seen (window end, UTC)",
              "predictions"]  # fmt: skip
    return head + svg.table(header, table)


def freshness(out, latest: pd.DataFrame, worst: pd.DataFrame) -> str:
    """Per slice: newest window, newest settled window and the gap; coverage and lags."""
    from msewatch.commands import report

    head = "<h2>Label freshness and lag</h2>"
    if latest.empty:
        return head + '<p class="note">No windows yet.</p>'
    trends = slice_trends(out).set_index("slice")
    newest = latest.sort_values("window_start").groupby("slice").tail(1).set_index("slice")
    order = list(dict.fromkeys(["overall", *worst["slice"], *newest.index]))[: views.MAX_ROWS]
    rows = []
    for name in (n for n in order if n in newest.index):
        r, end = newest.loc[name], newest.loc[name, "window_end"]
        settled = trends["last_window_end"].get(name, pd.NaT)
        behind = (
            "no settled window"
            if pd.isna(settled)
            else svg.seconds_text((end - settled) / pd.Timedelta(seconds=1))
        )
        lags = [r[f"label_lag_p{p}_s"] for p in (50, 90, 99)]
        rows.append([html.escape(name), svg.utc(svg.epoch_s(pd.Series([end])).max()),
                     "" if pd.isna(settled) else svg.utc(settled.timestamp()), behind,
                     svg.pct(r["label_coverage"]),
                     " / ".join(map(svg.seconds_text, lags))])  # fmt: skip
    header = ["slice", "newest window end", "newest settled window end", "labels behind by",
              "coverage (newest window)", "lag p50 / p90 / p99"]  # fmt: skip
    overall = last_day(latest)
    overall = overall[overall["slice"] == "overall"]
    charts = report.label_charts(overall) if len(overall) else ""
    note = (f'<p class="note">Settled: complete, or label coverage &ge; {MIN_COVERAGE:g}, and '
            f"&ge; {MIN_SCORED} scored (the SLOs' label gate). Charts: overall slice, "
            "last 24 h.</p>")  # fmt: skip
    return head + note + svg.table(header, rows) + f'<div class="grid">{charts}</div>'


def oncall(out, latest: pd.DataFrame, tables) -> str:
    """The on-call view's body."""
    worst = q.query(out, "worst")
    day = last_day(latest)
    return (
        firing_now(tables)
        + last_24h(day, worst)
        + top_slices(worst)
        + version_changes(latest)
        + freshness(out, latest, worst)
    )
