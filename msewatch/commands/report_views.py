"""the three dashboards of ``msewatch report``: executive, on-call and debug pages

``msewatch report OUTPUT --out FILE`` writes FILE (the full report of
:mod:`msewatch.commands.report`) and, beside it, one page per view (``--view``, all three by
default): ``report.html`` -> ``report-executive.html``, ``report-oncall.html``,
``report-debug.html``. Every page starts with the same links to the others. Each view
is self-contained and offline like the report (the same Content-Security-Policy; the
links are relative file names, not fetches).

* **executive** (this module): the RMSE per model version over the last
  :data:`TREND_DAYS` days (the ``model_version=V`` slices), pooled over the last 30 and
  90 days; the error budget left and the burn rates of every SLO and slice.
* **oncall** (this module): the last 24 h of windows, the worst slices (the ``worst``
  named query), the alerts firing now, the model-version changes (first and last window
  of each version), label freshness and lag.
* **debug** (:mod:`msewatch.commands.report_debug`): squared errors per window, y_pred / y_true
  distributions from the value sketches, the version deltas with their bounds.

Every number comes from the latest pane of each window and slice (``metrics_latest``),
times are window starts or label frontiers, UTC. Pooled RMSE is sqrt(sum of w*e^2 / sum
of w) over complete windows aligned on their length (sliding windows counted once).
``docs/observability.md`` ("Dashboards") explains each page.
"""

from __future__ import annotations

import argparse
import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from msewatch.commands import query as q
from msewatch.commands import report_slo
from msewatch.commands import report_svg as svg
from msewatch.commands.trend import DEFAULT_K, direction, slice_trends
from msewatch.transforms.durations import format_duration
from msewatch.transforms.metrics.slices import parse_slice_name

VIEWS = ("executive", "oncall", "debug")
TITLES = {"executive": "Executive", "oncall": "On-call", "debug": "Debug"}
TREND_DAYS = 90
POOLED_DAYS = (30, 90)
DAY = pd.Timedelta(days=1)
MAX_ROWS = 10
LATEST_SQL = "SELECT * FROM metrics_latest ORDER BY slice, window_start"
PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}"><title>msewatch {title}: {name}</title>
<style>{css}</style></head><body>{nav}<h1>msewatch {title} view</h1><p class="note">Output
<code>{path}</code>; newest window end {newest} UTC.</p>{body}</body></html>
"""


def parse_views(text: str) -> tuple[str, ...]:
    """``executive``, ``oncall``, ``debug`` or a comma list of them (argparse ``type``).

    Raises:
        argparse.ArgumentTypeError: an unknown or empty name; the message lists the views.
    """
    names = tuple(name.strip() for name in text.split(","))
    bad = [name for name in names if name not in VIEWS]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown view {bad[0]!r}: use executive, oncall or debug (repeat --view or "
            "give a comma list, e.g. --view oncall,debug)"
        )
    return names


def view_path(out_path: Path, view: str) -> Path:
    """The file of ``view`` beside the report: ``report.html`` -> ``report-oncall.html``."""
    return out_path.with_name(f"{out_path.stem}-{view}{out_path.suffix or '.html'}")


def nav(out_path: Path, views: tuple[str, ...], current: str | None) -> str:
    """The links between the report (``current`` None) and its view pages."""
    pages = [(None, out_path.name, "Full report")]
    pages += [(v, view_path(out_path, v).name, TITLES[v]) for v in views]
    links = [
        f"<b>{html.escape(title)}</b>" if key == current else svg.el("a", html.escape(title),
                                                                       href=name)
        for key, name, title in pages
    ]  # fmt: skip
    return f'<nav class="note">{"".join(links)}</nav>'


def page(view: str, out: Path, latest: pd.DataFrame, body: str, nav_html: str) -> str:
    """A view page around ``body``."""
    from msewatch.commands import report

    newest = svg.utc(svg.epoch_s(latest["window_end"]).max()) if len(latest) else "none"
    return PAGE.format(
        csp=report.CSP, css=report.CSS, title=TITLES[view], name=html.escape(out.name),
        path=html.escape(str(out)), newest=newest, nav=nav_html, body=body,
    )  # fmt: skip


def version_of(slice_name: str) -> str | None:
    """The model version of a ``model_version=V`` slice (one key); None for others."""
    try:
        pairs = parse_slice_name(slice_name)
    except ValueError:
        return None
    return pairs[0][1] if len(pairs) == 1 and pairs[0][0] == "model_version" else None


def versions(latest: pd.DataFrame) -> pd.DataFrame:
    """The rows of the ``model_version=V`` slices, with a ``version`` column."""
    found = latest["slice"].map(version_of)
    return latest[found.notna()].assign(version=found[found.notna()])


def aligned(rows: pd.DataFrame) -> pd.DataFrame:
    """The windows whose start is a multiple of their length (as Beam aligns them): each
    prediction counted once under sliding windows."""
    start, end = svg.epoch_s(rows["window_start"]), svg.epoch_s(rows["window_end"])
    return rows[np.mod(start, end - start) == 0]


def pooled_rmse(rows: pd.DataFrame, days: int, newest_end: pd.Timestamp) -> pd.Series:
    """Per ``version``: RMSE pooled over the complete aligned windows ending in the last
    ``days`` days before ``newest_end`` (NaN without a scored pair)."""
    done = aligned(rows[rows["complete"]])
    done = done[done["window_end"] > newest_end - days * DAY]
    sums = done.groupby("version")[["sum_se", "sum_w"]].sum()
    return np.sqrt(sums["sum_se"] / sums["sum_w"].where(sums["sum_w"] > 0))


def _version_chart(rows: pd.DataFrame) -> str:
    series = []
    for i, (version, part) in enumerate(rows.groupby("version", sort=True)):
        x, y = svg.epoch_s(part["window_start"]), part["rmse"].to_numpy(float)
        series.append(svg.Series(f"model_version={version}", svg.PALETTE[i % len(svg.PALETTE)],
                                 x, y, ~part["complete"].to_numpy(bool),
                                 markers=len(part) <= 200))  # fmt: skip
    axis = svg.LinearAxis(0.0, svg.nice_top(svg.finite(rows["rmse"]).max(initial=0)))
    chart = svg.line_chart(series, axis, "RMSE per model version")
    return svg.figure(f"RMSE per window: {svg.keys(series)}", chart)


def _trend_cells(trends: pd.DataFrame, name: str) -> list[str]:
    """The Theil-Sen slope per day of a slice, its 95 % interval and direction."""
    found = trends[trends["slice"] == name]
    if found.empty or np.isnan(found["slope_per_day"].iloc[0]):
        return ["", "too few settled windows"]
    r = found.iloc[0]
    return [f"{svg.num(r.slope_per_day)} [{svg.num(r.low)}, {svg.num(r.high)}]",
            direction(r.low, r.high)]  # fmt: skip


def executive_versions(latest: pd.DataFrame, trends: pd.DataFrame) -> str:
    """The RMSE trend per model version and its 30/90-day pooled RMSE (``trends``:
    :func:`msewatch.commands.trend.slice_trends`)."""
    head = f"<h2>RMSE per model version, last {TREND_DAYS} days</h2>"
    rows = versions(latest)
    if rows.empty:
        return head + '<p class="note">No <code>model_version=V</code> slice in the metrics.</p>'
    newest = latest["window_end"].max()
    rows = rows[rows["window_end"] > newest - TREND_DAYS * DAY]
    pooled = {days: pooled_rmse(rows, days, newest) for days in POOLED_DAYS}
    table = []
    for version, part in rows.groupby("version", sort=True):
        last = part[part["complete"] & part["rmse"].notna()].tail(1)
        table.append([html.escape(f"model_version={version}"),
                      *(svg.num(float(pooled[d].get(version, math.nan))) for d in POOLED_DAYS),
                      svg.num(float(last["rmse"].iloc[0])) if len(last) else "NaN",
                      *_trend_cells(trends, f"model_version={version}"),
                      svg.utc(svg.epoch_s(part["window_start"]).min()),
                      svg.utc(svg.epoch_s(part["window_end"]).max())])  # fmt: skip
    header = ["model version", *(f"RMSE, last {d} days" for d in POOLED_DAYS),
              "latest complete window RMSE", "RMSE slope per day [95%]", "direction",
              "first window", "last window end"]  # fmt: skip
    note = (
        '<p class="note">Pooled: sqrt(sum w&middot;e&sup2; / sum w) over the complete windows '
        "(aligned on their length) ending in the period. Slope: Theil&ndash;Sen over the "
        f"last {DEFAULT_K} settled windows (as the report's trend table). x: window start, UTC.</p>"
    )
    chart = f'<div class="grid">{_version_chart(rows)}</div>'
    return head + note + svg.table(header, table) + chart


def latest_status(tables: report_slo.SloTables) -> pd.DataFrame:
    """The newest evaluation of every SLO and slice (``slo_status``)."""
    return tables.status.groupby(["slo", "slice"], sort=True).tail(1)


def _burns(r) -> str:
    pairs = zip(r.lookbacks_s, r.burn_rates, strict=True)
    return ", ".join(f"{format_duration(int(lb))} {svg.num(float(b), 3)}" for lb, b in pairs)


def executive_slos(tables: report_slo.SloTables | None) -> str:
    """Error budget left and burn rate per SLO and slice (the newest evaluation)."""
    head = "<h2>SLOs: error budget left and burn rates</h2>"
    if tables is None:
        return head + '<p class="note">No SLO file (<code>msewatch run --slo</code>).</p>'
    status = latest_status(tables)
    if status.empty:
        return head + '<p class="note">No SLO evaluation yet.</p>'
    rows, bars = [], []
    for r in status.itertuples():
        budget = float(r.budget_remaining)
        states = f"page {r.page_state}, ticket {r.ticket_state}"
        rows.append(
            [
                html.escape(r.slo),
                html.escape(r.slice),
                svg.pct(budget),
                _burns(r),
                html.escape(states),
                svg.utc(svg.epoch_s(pd.Series([r.frontier])).max()),
            ]
        )
        color = "#d62728" if budget < 0 else "#ff7f0e" if budget < 0.25 else "#2ca02c"
        bars.append((f"{r.slo} {r.slice}", budget, color))  # fmt: skip
    header = ["SLO", "slice", "budget left", "burn rate per lookback", "alerts", "frontier"]
    chart = svg.figure("Error budget left per SLO and slice", share_bars(bars))
    return head + svg.table(header, rows) + f'<div class="grid">{chart}</div>'


def share_bars(items: list[tuple[str, float, str]]) -> str:
    """Horizontal bars of shares (budget left), 0 to 100 %; below 0 a bar of no width
    and the value written (NaN: none)."""
    label_w, row = 320, 22
    height = svg.TOP + svg.BOTTOM + row * max(len(items), 1)
    parts = []
    for i, (label, value, color) in enumerate(items):
        y = svg.TOP + i * row
        w = (svg.WIDTH - label_w - 70) * min(max(value, 0.0), 1.0) if math.isfinite(value) else 0
        text = svg.pct(value)
        parts.append(svg.el("text", html.escape(label), x=label_w - 6, y=y + 15,
                            text_anchor="end"))  # fmt: skip
        parts.append(svg.el("rect", x=label_w, y=y + 4, width=f"{w:.1f}", height=row - 8,
                            fill=color, class_="share"))  # fmt: skip
        parts.append(svg.el("text", text, x=f"{label_w + w + 5:.1f}", y=y + 15))
    size = {"viewBox": f"0 0 {svg.WIDTH} {height}", "width": svg.WIDTH, "height": height}
    return svg.el("svg", "".join(parts), class_="chart", role="img", aria_label="shares", **size)


def executive(out: Path, latest: pd.DataFrame, tables) -> str:
    """The executive view's body."""
    return executive_versions(latest, slice_trends(out)) + executive_slos(tables)


def write_views(
    output_dir: str | Path, out_path: str | Path, chosen: tuple[str, ...]
) -> list[Path]:
    """Writes the pages of the ``chosen`` views beside ``out_path`` (:func:`view_path`).

    Args:
        output_dir: the ``--output`` folder of ``msewatch run``.
        out_path: the report's file; each view goes beside it.
        chosen: views of :data:`VIEWS`, each written once, in the order of :data:`VIEWS`.

    Returns:
        The paths written.

    Raises:
        msewatch.commands.query.QueryError: as :func:`msewatch.commands.report.write_report`.
        OSError: a page cannot be written (naming it).
    """
    from msewatch.commands import report, report_debug, report_oncall

    out, out_path = Path(output_dir), Path(out_path)
    chosen = tuple(v for v in VIEWS if v in chosen)
    latest = q.query(out, sql=LATEST_SQL)
    tables = report_slo.read(out, report.read_summary(out))
    bodies = {"executive": executive, "oncall": report_oncall.oncall,
              "debug": report_debug.debug}  # fmt: skip
    written = []
    for view in chosen:
        body = bodies[view](out, latest, tables)
        text = page(view, out, latest, body, nav(out_path, chosen, view))
        written.append(report.write_whole(view_path(out_path, view), text))
    return written
