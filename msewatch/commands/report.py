"""write one self-contained, offline HTML report (charts and tables) of an output folder

This is ``msewatch report``.

The page works offline: no script, no stylesheet, font or image from elsewhere, and a
Content-Security-Policy that forbids every fetch. Charts are inline SVG drawn here.

It shows, from the latest pane of every window and slice (``metrics_latest``):

* the worst slices (the ``worst`` named query);
* RMSE over time, one chart per slice (overall first, then worst first, at most
  :data:`MAX_SLICE_CHARTS`), with the 95 % confidence band, on one shared y scale
  clipped at twice the largest RMSE; with an SLO file, the firing periods of the
  slice's rmse and error_rate alerts shaded;
* the RMSE trend per slice (same order): the Theil–Sen slope of RMSE per day over the
  last :data:`msewatch.commands.trend.DEFAULT_K` settled windows with its 95 % interval
  (:mod:`msewatch.commands.trend`);
* with an SLO file (``msewatch run --slo``), the SLO section: error budget and burn
  rates over the label frontier per SLO and slice, firing periods, alert transitions
  (:mod:`msewatch.commands.report_slo`);
* label coverage and label lag p50/p90/p99 (log scale) over time, overall slice;
* counts of NaN/inf values, invalid records and dead letters;
* the outcome (conservation) table and the run's config from ``summary.json``.

Rows that are not ``complete`` (window still open, or predictions still waiting for
labels) are provisional: hollow markers, dashed lines and a paler band, and the legend
says so. The x axis is the window start, UTC. NaN counts summed over windows use only
non-overlapping windows (start a multiple of the window size, as Beam aligns them), so
sliding windows are not counted twice. The charts are drawn by
:mod:`msewatch.commands.report_svg`.
"""

from __future__ import annotations

import argparse
import errno
import html
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from msewatch.commands import query as q
from msewatch.commands import report_slo, report_views
from msewatch.commands.report_svg import (
    PALETTE,
    LinearAxis,
    Series,
    bars,
    epoch_s,
    figure,
    finite,
    keys,
    line_chart,
    log_axis,
    nice_top,
    num,
    pct,
    table,
    utc,
)
from msewatch.commands.trend import (
    DEFAULT_K,
    DEFAULT_MIN_COVERAGE,
    DEFAULT_MIN_SCORED,
    direction,
    slice_trends,
)
from msewatch.runners.outcomes import outcomes_total
from msewatch.schemas import layout

MAX_SLICE_CHARTS = 12
NO_WINDOWS = "none: no windows yet (no valid prediction; the dead letters below say why)"
LAG_TICKS = ((1, "1s"), (10, "10s"), (60, "1m"), (600, "10m"), (3600, "1h"), (21600, "6h"),
             (86400, "1d"), (604800, "7d"), (2592000, "30d"), (31536000, "1y"))  # fmt: skip
COUNTED = (("NaN/inf predictions (y_pred)", "nan_predictions"), ("NaN/inf labels (y_true)",
           "nan_labels"), ("non-finite errors (overflow)", "nonfinite_errors"),
           ("negative label lags", "negative_lags"))  # fmt: skip
DEAD_LETTER_COUNTS = """SELECT record_type, reason, count(*) AS n FROM dead_letter
GROUP BY ALL ORDER BY n DESC, record_type, reason"""
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
CSS = """body{font:14px/1.4 system-ui,sans-serif;color:#222;margin:24px auto;max-width:1180px;
padding:0 16px}h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 10px;border-bottom:1px solid #eee;
text-align:right}th{background:#f6f6f6}td:first-child,th:first-child{text-align:left}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:8px 20px}
figure{margin:6px 0}figcaption{font-weight:600}svg.chart{width:100%;height:auto}
svg text{font:11px system-ui,sans-serif;fill:#555}.note{color:#666}.bad{color:#b00}
nav a,nav b{margin-right:14px}
.key{display:inline-block;width:28px;vertical-align:middle;border-top:2px solid #333;margin:0 4px}
.key.prov{border-top-style:dashed}.dot{display:inline-block;width:7px;height:7px;margin:0 4px;
border-radius:50%;border:1.5px solid #333}.dot.fill{background:#333}code{background:#f3f3f3}
h3{font-size:15px;margin:18px 0 2px}.swatch{display:inline-block;width:14px;height:10px;
margin:0 3px;vertical-align:middle}.swatch.page{background:#d6272840}
.swatch.ticket{background:#ff7f0e40}table.text td,table.text th{text-align:left}
table.text td:first-child{white-space:nowrap}"""
LEGEND = (
    '<p class="note"><span class="key"></span><span class="dot fill"></span>complete &nbsp; '
    '<span class="key prov"></span><span class="dot"></span><b>provisional</b>: window still '
    "open or predictions still waiting for labels; the value may change. x: window start, UTC.</p>"
)
PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}"><title>msewatch report: {name}</title>
<style>{css}</style></head><body><h1>msewatch report</h1><p class="note">Output <code>{path}</code>:
windows {span}; {slices} slices; {rows} window-slice rows (latest pane), {provisional} provisional.
</p><h2>Worst slices: RMSE over the last day of complete windows</h2>{worst}
<h2>RMSE over time per slice (95% CI band)</h2>{legend}{firing}<div class="grid">{rmse}</div>
{more}{trend}{slo}{comparisons}
<h2>Labels: coverage and lag (overall slice)</h2>{legend}<div class="grid">{labels}</div>
<h2>NaN, invalid and dead-letter records</h2><p class="note">NaN counts: latest pane of
non-overlapping windows, overall slice. Invalid: summary.json. Dead letters: dead_letter table.
</p><div class="grid"><figure>{quality}</figure></div>
<h2>Outcomes (conservation: every input record ends in exactly one)</h2>{outcomes}
</body></html>
"""
SLO_HEAD = "<h2>SLOs: error budget, burn rates and firing alerts</h2>"
TREND_HEAD = f"""<h3>RMSE trend per slice</h3><p class="note">Theil&ndash;Sen slope of RMSE per
day over the last {DEFAULT_K} settled windows of each slice (complete or label coverage &ge;
{DEFAULT_MIN_COVERAGE:g}, and &ge; {DEFAULT_MIN_SCORED} scored), with its 95% interval;
<i>rising</i> when the whole interval is above 0. Fewer than 3 settled windows: no slope.</p>"""


def _series(rows: pd.DataFrame, name: str, color: str, column: str, band=()) -> Series:
    """A chart series of one column over window start; ``band`` names (low, high) columns."""
    low, high = (rows[c].to_numpy(float) for c in band) if band else (None, None)
    x, y = epoch_s(rows["window_start"]), rows[column].to_numpy(float)
    return Series(name, color, x, y, ~rows["complete"].to_numpy(bool), low, high)


def _rmse_charts(latest: pd.DataFrame, worst: pd.DataFrame, slos) -> tuple[str, str]:
    """One RMSE chart per slice on a shared scale, with the firing periods of its
    alerts shaded (``slos``: :class:`msewatch.commands.report_slo.SloTables` or None), and a note
    on slices left out."""
    ranked = dict.fromkeys(["overall", *worst["slice"], *sorted(set(latest["slice"]))])
    slices = [s for s in ranked if s in set(latest["slice"])]
    shown = latest[latest["slice"].isin(slices[:MAX_SLICE_CHARTS])]
    rmse, high = finite(shown["rmse"]), finite(shown["rmse_ci_high"])
    top = max(rmse.max(initial=0), high.max(initial=0))
    axis = LinearAxis(0.0, nice_top(min(top, 2 * rmse.max(initial=0)) or top))
    charts = []
    for i, name in enumerate(slices[:MAX_SLICE_CHARTS]):
        part = shown[shown["slice"] == name]
        s = _series(part, name, PALETTE[i % len(PALETTE)], "rmse", ("rmse_ci_low", "rmse_ci_high"))
        window_s = (epoch_s(part["window_end"]) - s.x).max(initial=0)
        spans = report_slo.rmse_spans(slos, name, window_s)
        charts.append(figure(html.escape(name), line_chart([s], axis, f"RMSE of {name}", spans)))
    more = len(slices) - MAX_SLICE_CHARTS
    note = f'<p class="note">{more} more slices: <code>msewatch query OUTPUT latest</code></p>'
    return "".join(charts), note if more > 0 else ""


def label_charts(overall: pd.DataFrame) -> str:
    coverage = _series(overall, "label coverage", PALETTE[0], "label_coverage")
    lags = [
        _series(overall, f"lag p{p}", PALETTE[i + 2], f"label_lag_p{p}_s")
        for i, p in enumerate((50, 90, 99))
    ]
    lag_axis = log_axis(np.concatenate([s.y for s in lags]), LAG_TICKS)
    return figure(
        "Label coverage (labeled / predictions)",
        line_chart([coverage], LinearAxis(0.0, 1.0, pct), "coverage"),
    ) + figure(f"Label lag percentiles, log scale: {keys(lags)}", line_chart(lags, lag_axis, "lag"))


def _quality_chart(overall: pd.DataFrame, dead: pd.DataFrame, outcomes: dict) -> str:
    windows = report_views.aligned(overall)  # sliding windows counted once
    items = [(label, int(windows[column].sum()), "#ff7f0e") for label, column in COUNTED]
    for kind in ("prediction", "label"):
        if "invalid" in outcomes.get(kind, {}):
            items.append((f"invalid {kind}s", int(outcomes[kind]["invalid"]), "#d62728"))
    for r in dead.itertuples():
        items.append((f"dead letter: {r.record_type} {r.reason}", int(r.n), "#8c564b"))
    return bars(items)


def _outcome_table(summary: dict | None) -> str:
    if summary is None:
        return '<p class="bad">summary.json not found in the output folder.</p>'
    outcomes = summary.get("outcomes", {})
    kinds = [k for k in ("prediction", "label") if k in outcomes]
    names = dict.fromkeys(n for k in kinds for n in outcomes[k] if n != "input")
    rows = [["input"] + [num(outcomes[k].get("input", 0)) for k in kinds]]
    rows += [[n] + [num(outcomes[k][n]) if n in outcomes[k] else "" for k in kinds] for n in names]
    totals = []
    for k in kinds:
        total = outcomes_total(outcomes[k])
        diff = total - outcomes[k].get("input", 0)
        totals.append(
            f'<b class="bad">{total:,} ({diff:+,})</b>' if diff else f"{total:,} (balanced)"
        )
    rows.append(["<b>sum of outcomes</b>", *totals])
    config = html.escape(json.dumps(summary.get("config", {}), indent=1, sort_keys=True))
    counts = table(["outcome", *(f"{k}s" for k in kinds)], rows)
    return counts + f"<details><summary>run config</summary><pre>{config}</pre></details>"


def _trend_table(trends: pd.DataFrame, order: list[str]) -> str:
    """The RMSE trend per slice (``order`` first, at most :data:`MAX_SLICE_CHARTS`)."""
    rank = {name: i for i, name in enumerate(order)}
    shown = trends.iloc[
        trends["slice"].map(lambda s: rank.get(s, len(rank))).argsort(kind="stable")
    ]
    rows = [
        [html.escape(r.slice), num(r.slope_per_day),
         "" if np.isnan(r.low) else f"[{num(r.low)}, {num(r.high)}]",
         num(r.windows), "" if pd.isna(r.last_window_end) else utc(r.last_window_end.timestamp()),
         direction(r.low, r.high)]
        for r in shown.head(MAX_SLICE_CHARTS).itertuples()
    ]  # fmt: skip
    header = ["slice", "RMSE slope per day", "95% interval", "windows", "newest window end",
              "direction"]  # fmt: skip
    return TREND_HEAD + table(header, rows)


COMPARISONS_HEAD = """<h2>Comparisons: is the candidate worse?</h2><p class="note">Latest
decision per comparison and slice (the <code>comparisons</code> table): FAIL when the
always-valid lower bound of the relative difference C / B &minus; 1 is above the margin,
PASS when the upper bound is below it. x: the frontier, UTC.</p>"""


def comparisons_table(out: Path) -> str:
    """The latest decision per comparison and slice ("" without a comparisons table)."""
    if not (out / "comparisons").is_dir():
        return ""
    from msewatch.commands import compare

    frame = compare.latest(str(out))
    header = ["comparison", "slice", "decision", "candidate vs baseline", "change",
              "always-valid bounds", "margin", "mode", "n (candidate / baseline)",
              "frontier"]  # fmt: skip
    rows = [
        [html.escape(r.comparison), html.escape(r.slice), f"<b>{r.decision}</b>",
         html.escape(f"{r.candidate} vs {r.baseline} ({r.metric})"), f"{r.change:+.1%}",
         f"[{r.ci_low:+.1%}, {r.ci_high:+.1%}]", f"{r.margin:+.0%}",
         "paired" if r.paired else "unpaired", f"{r.n_candidate} / {r.n_baseline}",
         utc(r.frontier.timestamp())]
        for r in frame.itertuples()
    ]  # fmt: skip
    if not rows:
        return COMPARISONS_HEAD + '<p class="note">No window has passed the label gate yet.</p>'
    return COMPARISONS_HEAD + table(header, rows)


def _worst_table(worst: pd.DataFrame) -> str:
    header = ["slice", "RMSE [95% CI]", "windows", "scored", "coverage", "latest window RMSE"]
    rows = [
        [html.escape(r.slice), f"{num(r.rmse)} [{num(r.rmse_ci_low)}, {num(r.rmse_ci_high)}]",
         num(r.windows), num(r.scored), pct(r.label_coverage), num(r.latest_rmse)]
        for r in worst.head(MAX_SLICE_CHARTS).itertuples()
    ]  # fmt: skip
    if worst.empty:
        return '<p class="note">No complete window with scored pairs yet.</p>'
    span = f"{utc(worst['period_start'].min().timestamp())} to "
    span += f"{utc(worst['period_end'].max().timestamp())} UTC"
    return f'<p class="note">Pooled from the complete windows of {span}.</p>' + table(header, rows)


def read_summary(out: Path) -> dict | None:
    """``summary.json`` of an output folder (None when absent).

    Raises:
        msewatch.commands.query.QueryError: it is not valid JSON.
    """
    summary_path = layout.resolve(out) / "summary.json"
    if not summary_path.is_file():
        return None
    try:
        return json.loads(summary_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise q.QueryError(f"{out / 'summary.json'} is not valid JSON: {error}") from None


def write_report(output_dir: str | Path, out_path: str | Path, views: tuple[str, ...] = ()) -> Path:
    """Writes the HTML report of an output folder.

    Args:
        output_dir: the ``--output`` folder of ``msewatch run``.
        out_path: where to write the HTML file (its folder is created).
        views: the view pages written beside it (:mod:`msewatch.commands.report_views`): the
            page starts with links to them; none, no link.

    Returns:
        The path written.

    Raises:
        msewatch.commands.query.QueryError: the output folder or its metrics table is
            missing, or summary.json is not valid JSON.
    """
    out = Path(output_dir)
    latest = q.query(out, sql="SELECT * FROM metrics_latest ORDER BY slice, window_start")
    worst = q.query(out, "worst")
    dead = q.query(out, sql=DEAD_LETTER_COUNTS)
    summary = read_summary(out)
    overall = latest[latest["slice"] == "overall"]
    start, end = epoch_s(latest["window_start"]), epoch_s(latest["window_end"])
    slos = report_slo.read(out, summary)
    rmse, more = _rmse_charts(latest, worst, slos)
    trend = _trend_table(slice_trends(out), ["overall", *worst["slice"]])
    slo = "" if slos is None else SLO_HEAD + report_slo.section(slos, MAX_SLICE_CHARTS)
    page = PAGE.format(
        csp=CSP,
        css=CSS,
        legend=LEGEND,
        name=html.escape(out.name),
        path=html.escape(str(out)),
        span=f"{utc(start.min())} to {utc(end.max())} UTC" if len(latest) else NO_WINDOWS,
        slices=latest["slice"].nunique(),
        rows=len(latest),
        provisional=int((~latest["complete"]).sum()),
        worst=_worst_table(worst),
        firing="" if slos is None else report_slo.RMSE_NOTE,
        rmse=rmse,
        more=more,
        trend=trend,
        slo=slo,
        comparisons=comparisons_table(out),
        labels=label_charts(overall),
        quality=_quality_chart(overall, dead, (summary or {}).get("outcomes", {})),
        outcomes=_outcome_table(summary),
    )
    if views:
        page = page.replace("<body>", "<body>" + report_views.nav(Path(out_path), views, None), 1)
    return write_whole(Path(out_path), page)


def write_whole(path: Path, text: str) -> Path:
    """Writes ``text`` to a temporary file beside ``path`` and renames it into place:
    a failed write (a full disk) leaves the previous file, never a partial one.

    Raises:
        OSError: naming ``path`` (the CLI prints it as one line).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, path)
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise OSError(error.errno, error.strerror, str(path)) from None
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``msewatch report`` arguments to ``parser``."""
    parser.add_argument("output", metavar="OUTPUT", help="the --output folder of `msewatch run`")
    parser.add_argument("--out", default="report.html", help="HTML file to write")
    parser.add_argument(
        "--view",
        action="append",
        type=report_views.parse_views,
        metavar="VIEW",
        help="dashboard pages written beside --out: executive, oncall, debug (repeat it or "
        "give a comma list; default all three)",
    )
    parser.add_argument(
        "--grafana",
        metavar="FILE",
        help="also write the Grafana dashboard JSON (the same three rows over `msewatch "
        "serve`'s Prometheus metrics) to FILE",
    )


def run(args: argparse.Namespace) -> int:
    """Runs ``msewatch report``: prints the paths written; returns 2 on a user mistake."""
    views = tuple(v for chosen in args.view or [report_views.VIEWS] for v in chosen)
    views = tuple(v for v in report_views.VIEWS if v in views)
    try:
        paths = [write_report(args.output, args.out, views)]
        paths += report_views.write_views(args.output, args.out, views)
        if args.grafana:
            from msewatch.commands import grafana

            paths.append(grafana.write_dashboard(args.grafana))
    except q.QueryError as error:
        print(f"msewatch report: error: {error}", file=sys.stderr)
        return q.EXIT_USAGE
    print("\n".join(map(str, paths)))
    return 0
