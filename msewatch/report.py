"""write one self-contained, offline HTML report (charts and tables) of an output folder

This is ``msewatch report``.

The page works offline: no script, no stylesheet, font or image from elsewhere, and a
Content-Security-Policy that forbids every fetch. Charts are inline SVG drawn here.

It shows, from the latest pane of every window and slice (``metrics_latest``):

* the worst slices (the ``worst`` named query);
* RMSE over time, one chart per slice (overall first, then worst first, at most
  :data:`MAX_SLICE_CHARTS`), with the 95 % confidence band, on one shared y scale
  clipped at twice the largest RMSE;
* label coverage and label lag p50/p90/p99 (log scale) over time, overall slice;
* counts of NaN/inf values, invalid records and dead letters;
* the outcome (conservation) table and the run's config from ``summary.json``.

Rows that are not ``complete`` (window still open, or predictions still waiting for
labels) are provisional: hollow markers, dashed lines and a paler band, and the legend
says so. The x axis is the window start, UTC. NaN counts summed over windows use only
non-overlapping windows (start a multiple of the window size, as Beam aligns them), so
sliding windows are not counted twice.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import html
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from msewatch import query as q

MAX_SLICE_CHARTS = 12
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")
WIDTH, HEIGHT = 560, 210
LEFT, RIGHT, TOP, BOTTOM = 58, 14, 10, 26
LAG_TICKS = ((1, "1s"), (10, "10s"), (60, "1m"), (600, "10m"), (3600, "1h"), (21600, "6h"),
             (86400, "1d"), (604800, "7d"), (2592000, "30d"), (31536000, "1y"))  # fmt: skip
COUNTED = (("NaN/inf predictions (y_pred)", "nan_predictions"), ("NaN/inf labels (y_true)",
           "nan_labels"), ("non-finite errors (overflow)", "nonfinite_errors"),
           ("negative label lags", "negative_lags"))  # fmt: skip
TIME_STEPS = (900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800, 1209600)
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
.key{display:inline-block;width:28px;vertical-align:middle;border-top:2px solid #333;margin:0 4px}
.key.prov{border-top-style:dashed}.dot{display:inline-block;width:7px;height:7px;margin:0 4px;
border-radius:50%;border:1.5px solid #333}.dot.fill{background:#333}code{background:#f3f3f3}"""
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
<h2>RMSE over time per slice (95% CI band)</h2>{legend}<div class="grid">{rmse}</div>{more}
<h2>Labels: coverage and lag (overall slice)</h2>{legend}<div class="grid">{labels}</div>
<h2>NaN, invalid and dead-letter records</h2><p class="note">NaN counts: latest pane of
non-overlapping windows, overall slice. Invalid: summary.json. Dead letters: dead_letter table.
</p><div class="grid"><figure>{quality}</figure></div>
<h2>Outcomes (conservation: every input record ends in exactly one)</h2>{outcomes}
</body></html>
"""


@dataclasses.dataclass(frozen=True)
class Series:
    """A chart line: x in epoch seconds (UTC), y, provisional points, optional band."""

    name: str
    color: str
    x: np.ndarray
    y: np.ndarray
    provisional: np.ndarray
    low: np.ndarray | None = None
    high: np.ndarray | None = None


def _el(tag: str, body: str = "", **attrs) -> str:
    """An SVG/HTML element; ``a_b`` attribute names become ``a-b``.

    Attribute values are always escaped here (quotes included), so no value can end
    its attribute; ``body`` is HTML already: callers escape text with ``html.escape``.
    """
    text = "".join(
        f' {k.rstrip("_").replace("_", "-")}="{html.escape(str(v), quote=True)}"'
        for k, v in attrs.items()
    )
    return f"<{tag}{text}>{body}</{tag}>"


def _finite(values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _epoch_s(times: pd.Series) -> np.ndarray:
    """UTC seconds since the epoch; in microseconds first, which hold any accepted year
    (nanoseconds stop at 1677-2262)."""
    epoch = pd.Timestamp(0, tz="UTC").as_unit("us")
    return ((times.dt.as_unit("us") - epoch) / pd.Timedelta(seconds=1)).to_numpy(float)


def _utc(seconds: float, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """UTC text of epoch seconds; the year always has four digits (``strftime`` drops
    the zeros of years before 1000)."""
    when = _EPOCH + datetime.timedelta(seconds=seconds)
    return when.strftime(fmt.replace("%Y", f"{when.year:04d}"))


def _num(value, digits: int = 4) -> str:
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    return "NaN" if value is None or math.isnan(value) else f"{value:.{digits}g}"


def _pct(value: float) -> str:
    return "NaN" if math.isnan(value) else f"{value:.0%}"


def _linear_ticks(top: float) -> list[float]:
    """Round ticks from 0 to at most ``top``, about four steps."""
    step = 10 ** math.floor(math.log10(top / 4))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if m * step >= top / 4)
    return [i * step for i in range(int(top / step + 1e-9) + 1)]


def _nice_top(value: float) -> float:
    """The smallest round tick at or above ``value`` (1 when there is no value)."""
    if not (value > 0 and math.isfinite(value)):
        return 1.0
    ticks = _linear_ticks(value)
    return ticks[-1] if ticks[-1] >= value else ticks[-1] + ticks[1]


def _chart(series: list[Series], y_top: float, label: str, log: bool = False, y_fmt=_num) -> str:
    """An inline SVG line chart (class ``chart``): y over [0, y_top], or log scale."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    xs, ys = np.concatenate([s.x for s in series]), _finite(np.concatenate([s.y for s in series]))
    lo, hi = (xs.min(), xs.max()) if xs.size else (0.0, 3600.0)
    lo, hi = (lo - 1800, hi + 1800) if hi - lo < 1 else (lo, hi)
    if log:
        ys = ys[ys > 0]
        y_lo = max([t for t, _ in LAG_TICKS if not ys.size or t <= ys.min()] or [1])
        y_hi = min([t for t, _ in LAG_TICKS if ys.size and t >= ys.max()] or [31536000])
        y_hi = max(y_hi, 10 * y_lo)
        ticks = [(t, text) for t, text in LAG_TICKS if y_lo <= t <= y_hi]

        def fy(v):
            share = np.log10(np.clip(v, y_lo, y_hi) / y_lo) / math.log10(y_hi / y_lo)
            return TOP + plot_h * (1 - share)
    else:
        ticks = [(t, y_fmt(t)) for t in _linear_ticks(y_top)]

        def fy(v):
            return TOP + plot_h * (1 - np.clip(v, 0, y_top) / y_top)

    def fx(v):
        return LEFT + plot_w * (v - lo) / (hi - lo)

    parts = [_el("rect", x=LEFT, y=TOP, width=plot_w, height=plot_h, fill="#fcfcfc", stroke="#ccc")]
    for value, text in ticks:
        y = f"{float(fy(value)):.1f}"
        parts.append(_el("line", x1=LEFT, x2=WIDTH - RIGHT, y1=y, y2=y, stroke="#eee"))
        parts.append(_el("text", text, x=LEFT - 5, y=float(y) + 4, text_anchor="end"))
    step = next((s for s in TIME_STEPS if (hi - lo) / s <= 4), TIME_STEPS[-1])
    for t in np.arange(math.ceil(lo / step) * step, hi + 1, step):
        x, fmt = fx(t), "%m-%d" if step >= 86400 else "%m-%d %H:%M"
        anchor = "end" if x > WIDTH - RIGHT - 30 else "start" if x < LEFT + 30 else "middle"
        parts.append(_el("text", _utc(t, fmt), x=f"{x:.1f}", y=HEIGHT - 8, text_anchor=anchor))
    if not ys.size:
        parts.append(_el("text", "no data", x=WIDTH / 2, y=HEIGHT / 2, text_anchor="middle"))
    for s in series:
        parts.extend(_draw_series(s, fx, fy))
    size = {"viewBox": f"0 0 {WIDTH} {HEIGHT}", "width": WIDTH, "height": HEIGHT}
    return _el("svg", "".join(parts), class_="chart", role="img", aria_label=label, **size)


def _draw_series(s: Series, fx, fy) -> list[str]:
    """Band, line (dashed where provisional) and markers (hollow where provisional)."""
    px, py, ok = fx(s.x), fy(s.y), np.isfinite(s.y)
    has_band = s.low is not None and s.high is not None
    band_ok = ok & np.isfinite(s.low) & np.isfinite(s.high) if has_band else ok
    paths: dict[tuple[str, bool], list[str]] = {}
    for i in range(len(s.x) - 1):
        prov, j = bool(s.provisional[i] or s.provisional[i + 1]), i + 1
        if ok[i] and ok[j]:
            paths.setdefault(("line", prov), []).append(
                f"M{px[i]:.1f},{py[i]:.1f}L{px[j]:.1f},{py[j]:.1f}"
            )
        if has_band and band_ok[i] and band_ok[j]:
            (l0, l1), (h0, h1) = fy(s.low[i : j + 1]), fy(s.high[i : j + 1])
            paths.setdefault(("band", prov), []).append(
                f"M{px[i]:.1f},{h0:.1f}L{px[j]:.1f},{h1:.1f}L{px[j]:.1f},{l1:.1f}"
                f"L{px[i]:.1f},{l0:.1f}Z"
            )
    styles = {
        ("band", False): {"fill": s.color, "fill_opacity": 0.22},
        ("band", True): {"fill": s.color, "fill_opacity": 0.09, "class_": "prov"},
        ("line", False): {"fill": "none", "stroke": s.color, "stroke_width": 1.8},
        ("line", True): {"fill": "none", "stroke": s.color, "stroke_width": 1.5,
                         "stroke_dasharray": "5 3", "class_": "prov"},
    }  # fmt: skip
    out = [_el("path", d="".join(paths[key]), **styles[key]) for key in styles if key in paths]
    for i in np.flatnonzero(ok):
        prov = bool(s.provisional[i])
        tip = f"{s.name}, window {_utc(s.x[i])} UTC: {_num(float(s.y[i]))}"
        tip += " (provisional)" if prov else ""
        out.append(_el("circle", _el("title", html.escape(tip)), class_="pt prov" if prov else
                       "pt", cx=f"{px[i]:.1f}", cy=f"{py[i]:.1f}", r=2.8, stroke=s.color,
                       fill="#fff" if prov else s.color, stroke_width=1.4))  # fmt: skip
    return out


def _bars(items: list[tuple[str, int, str]]) -> str:
    """A horizontal bar chart (class ``chart``) of labelled counts."""
    row, label_w = 22, 230
    height = TOP + BOTTOM + row * max(len(items), 1)
    top = max([n for _, n, _ in items] + [1])
    parts = []
    for i, (label, n, color) in enumerate(items):
        y, w = TOP + i * row, (WIDTH - label_w - 70) * n / top
        parts.append(_el("text", html.escape(label), x=label_w - 6, y=y + 15, text_anchor="end"))
        parts.append(_el("rect", x=label_w, y=y + 4, width=f"{w:.1f}", height=row - 8, fill=color))
        parts.append(_el("text", f"{n:,}", x=f"{label_w + w + 5:.1f}", y=y + 15))
    size = {"viewBox": f"0 0 {WIDTH} {height}", "width": WIDTH, "height": height}
    return _el("svg", "".join(parts), class_="chart", role="img", aria_label="counts", **size)


def _table(header: list[str], rows: list[list[str]]) -> str:
    """An HTML table; header cells are escaped, body cells are HTML already."""
    head = "".join(_el("th", html.escape(h)) for h in header)
    body = "".join(_el("tr", "".join(_el("td", c) for c in r)) for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _series(rows: pd.DataFrame, name: str, color: str, column: str, band=()) -> Series:
    """A chart series of one column over window start; ``band`` names (low, high) columns."""
    low, high = (rows[c].to_numpy(float) for c in band) if band else (None, None)
    x, y = _epoch_s(rows["window_start"]), rows[column].to_numpy(float)
    return Series(name, color, x, y, ~rows["complete"].to_numpy(bool), low, high)


def _figure(caption: str, chart: str) -> str:
    return _el("figure", _el("figcaption", caption) + chart)


def _rmse_charts(latest: pd.DataFrame, worst: pd.DataFrame) -> tuple[str, str]:
    """One RMSE chart per slice on a shared scale, and a note on slices left out."""
    ranked = dict.fromkeys(["overall", *worst["slice"], *sorted(set(latest["slice"]))])
    slices = [s for s in ranked if s in set(latest["slice"])]
    shown = latest[latest["slice"].isin(slices[:MAX_SLICE_CHARTS])]
    rmse, high = _finite(shown["rmse"]), _finite(shown["rmse_ci_high"])
    top = max(rmse.max(initial=0), high.max(initial=0))
    top = _nice_top(min(top, 2 * rmse.max(initial=0)) or top)
    charts = []
    for i, name in enumerate(slices[:MAX_SLICE_CHARTS]):
        part = shown[shown["slice"] == name]
        s = _series(part, name, PALETTE[i % len(PALETTE)], "rmse", ("rmse_ci_low", "rmse_ci_high"))
        charts.append(_figure(html.escape(name), _chart([s], top, f"RMSE of {name}")))
    more = len(slices) - MAX_SLICE_CHARTS
    note = f'<p class="note">{more} more slices: <code>msewatch query OUTPUT latest</code></p>'
    return "".join(charts), note if more > 0 else ""


def _label_charts(overall: pd.DataFrame) -> str:
    coverage = _series(overall, "label coverage", PALETTE[0], "label_coverage")
    lags = [
        _series(overall, f"lag p{p}", PALETTE[i + 2], f"label_lag_p{p}_s")
        for i, p in enumerate((50, 90, 99))
    ]
    keys = "".join(
        f'<span class="key" style="border-color:{s.color}"></span>{html.escape(s.name)} '
        for s in lags
    )
    return _figure(
        "Label coverage (labeled / predictions)", _chart([coverage], 1.0, "coverage", y_fmt=_pct)
    ) + _figure(f"Label lag percentiles, log scale: {keys}", _chart(lags, 1.0, "lag", log=True))


def _quality_chart(overall: pd.DataFrame, dead: pd.DataFrame, outcomes: dict) -> str:
    start, end = _epoch_s(overall["window_start"]), _epoch_s(overall["window_end"])
    windows = overall[np.mod(start, end - start) == 0]
    items = [(label, int(windows[column].sum()), "#ff7f0e") for label, column in COUNTED]
    for kind in ("prediction", "label"):
        if "invalid" in outcomes.get(kind, {}):
            items.append((f"invalid {kind}s", int(outcomes[kind]["invalid"]), "#d62728"))
    for r in dead.itertuples():
        items.append((f"dead letter: {r.record_type} {r.reason}", int(r.n), "#8c564b"))
    return _bars(items)


def _outcome_table(summary: dict | None) -> str:
    if summary is None:
        return '<p class="bad">summary.json not found in the output folder.</p>'
    outcomes = summary.get("outcomes", {})
    kinds = [k for k in ("prediction", "label") if k in outcomes]
    names = dict.fromkeys(n for k in kinds for n in outcomes[k] if n != "input")
    rows = [["input"] + [_num(outcomes[k].get("input", 0)) for k in kinds]]
    rows += [[n] + [_num(outcomes[k][n]) if n in outcomes[k] else "" for k in kinds] for n in names]
    totals = []
    for k in kinds:
        total = sum(v for n, v in outcomes[k].items() if n != "input")
        diff = total - outcomes[k].get("input", 0)
        totals.append(
            f'<b class="bad">{total:,} ({diff:+,})</b>' if diff else f"{total:,} (balanced)"
        )
    rows.append(["<b>sum of outcomes</b>", *totals])
    config = html.escape(json.dumps(summary.get("config", {}), indent=1, sort_keys=True))
    table = _table(["outcome", *(f"{k}s" for k in kinds)], rows)
    return table + f"<details><summary>run config</summary><pre>{config}</pre></details>"


def _worst_table(worst: pd.DataFrame) -> str:
    header = ["slice", "RMSE [95% CI]", "windows", "scored", "coverage", "latest window RMSE"]
    rows = [
        [html.escape(r.slice), f"{_num(r.rmse)} [{_num(r.rmse_ci_low)}, {_num(r.rmse_ci_high)}]",
         _num(r.windows), _num(r.scored), _pct(r.label_coverage), _num(r.latest_rmse)]
        for r in worst.head(MAX_SLICE_CHARTS).itertuples()
    ]  # fmt: skip
    if worst.empty:
        return '<p class="note">No complete window with scored pairs yet.</p>'
    span = f"{_utc(worst['period_start'].min().timestamp())} to "
    span += f"{_utc(worst['period_end'].max().timestamp())} UTC"
    return f'<p class="note">Pooled from the complete windows of {span}.</p>' + _table(header, rows)


def write_report(output_dir: str | Path, out_path: str | Path) -> Path:
    """Writes the HTML report of an output folder.

    Args:
        output_dir: the ``--output`` folder of ``msewatch run``.
        out_path: where to write the HTML file (its folder is created).

    Returns:
        The path written.

    Raises:
        msewatch.query.QueryError: the output folder or its metrics table is
            missing, or summary.json is not valid JSON.
    """
    out = Path(output_dir)
    latest = q.query(out, sql="SELECT * FROM metrics_latest ORDER BY slice, window_start")
    worst = q.query(out, "worst")
    dead = q.query(out, sql=DEAD_LETTER_COUNTS)
    summary = None
    if (out / "summary.json").is_file():
        try:
            summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise q.QueryError(f"{out / 'summary.json'} is not valid JSON: {error}") from None
    overall = latest[latest["slice"] == "overall"]
    start, end = _epoch_s(latest["window_start"]), _epoch_s(latest["window_end"])
    rmse, more = _rmse_charts(latest, worst)
    page = PAGE.format(
        csp=CSP,
        css=CSS,
        legend=LEGEND,
        name=html.escape(out.name),
        path=html.escape(str(out)),
        span=f"{_utc(start.min())} to {_utc(end.max())} UTC" if len(latest) else "(none)",
        slices=latest["slice"].nunique(),
        rows=len(latest),
        provisional=int((~latest["complete"]).sum()),
        worst=_worst_table(worst),
        rmse=rmse,
        more=more,
        labels=_label_charts(overall),
        quality=_quality_chart(overall, dead, (summary or {}).get("outcomes", {})),
        outcomes=_outcome_table(summary),
    )
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``msewatch report`` arguments to ``parser``."""
    parser.add_argument("output", metavar="OUTPUT", help="the --output folder of `msewatch run`")
    parser.add_argument("--out", default="report.html", help="HTML file to write")


def run(args: argparse.Namespace) -> int:
    """Runs ``msewatch report``: prints the path written; returns 2 on a user mistake."""
    try:
        path = write_report(args.output, args.out)
    except q.QueryError as error:
        print(f"msewatch report: error: {error}", file=sys.stderr)
        return q.EXIT_USAGE
    print(path)
    return 0
