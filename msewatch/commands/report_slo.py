"""the SLO section of ``msewatch report``: error budget, burn rates and firing periods

Shown when the run had an SLO file (``msewatch run --slo``: summary.json's config holds
it, or the output holds the ``alerts`` or ``slo_status`` table). From ``slo_status``
(the last evaluation of each SLO, slice and label frontier) and ``alerts``:

* per SLO and slice (overall first, then the least budget left first, at most the
  report's cap), two charts over the label frontier (the end of the newest settled
  window, UTC): the error budget remaining (a share of the period's budget, clipped at
  -100 % when overspent) and the burn rate of every lookback (log scale; below 0.1,
  0 included, drawn at 0.1), with each alert condition's burn_rate as a dashed line;
* the firing periods of the slice's alerts shaded on both (red: page, amber: ticket);
* the alert transitions (frontier, alert, state, summary; watermark when streaming);
* the flapping alerts, each with the setting that calms it (:mod:`msewatch.commands.flaps`).

A firing period runs from an alert's ``firing`` transition to its next ``resolved``
one, or to the end when it is still firing (:func:`firing_periods`, the one place that
pairs them). The RMSE chart of a slice shades the periods of that slice's ``rmse`` and
``error_rate`` alerts (the SLIs that measure the error) on its window-start axis: the
windows whose end lies in a firing period (:func:`rmse_spans`). ``docs/slo.md`` explains
every number.
"""

from __future__ import annotations

import dataclasses
import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from msewatch.commands import flaps as fl
from msewatch.commands import query as q
from msewatch.commands import report_svg as svg
from msewatch.schemas.slo import FIRING, RESOLVED
from msewatch.transforms.durations import format_duration

ERROR_SLIS = ("rmse", "error_rate")
MAX_TRANSITIONS = 200
ISO = "%Y-%m-%dT%H:%M:%SZ"
SEVERITY_COLORS = {"page": "#d62728", "ticket": "#ff7f0e"}
BURN_MARKS = tuple((10.0**k, f"{10.0**k:g}" if k < 3 else f"1e{k}") for k in range(-1, 8))
STATUS_SQL = """SELECT * FROM slo_status QUALIFY row_number() OVER (
    PARTITION BY slo, slice, frontier ORDER BY watermark DESC NULLS LAST, emitted_at DESC) = 1
ORDER BY slo, slice, frontier"""
ALERTS_SQL = "SELECT * FROM alerts ORDER BY frontier, watermark NULLS FIRST, emitted_at, alert"
NOTE = """<p class="note">From the <code>slo_status</code> and <code>alerts</code> tables. x:
label frontier (end of the newest settled window), UTC. Budget: share of the period's error
budget left (clipped at -100 %). Burn rates: one line per lookback, log scale (below 0.1, 0
included, drawn at 0.1); dashed: each alert condition's burn_rate. Shaded: an alert firing
(<span class="swatch page"></span>page, <span class="swatch ticket"></span>ticket).
<code>msewatch slo status OUTPUT</code> prints the latest state; docs/slo.md explains it.</p>"""
RMSE_NOTE = """<p class="note">Shaded: <span class="swatch page"></span>page and <span
class="swatch ticket"></span>ticket alerts of the slice's rmse and error_rate SLOs firing, over
the windows whose end (the label frontier) lies in the firing period.</p>"""


@dataclasses.dataclass(frozen=True)
class SloTables:
    """What the SLO section draws.

    Attributes:
        status: ``slo_status``, the last evaluation per (slo, slice, frontier).
        alerts: ``alerts``, in frontier order.
        periods: :func:`firing_periods` of ``alerts``.
        flaps: the flapping alerts (:func:`msewatch.commands.flaps.find_flaps`).
        conditions: per SLO, its alert conditions ``(severity, burn_rate, long_s,
            short_s)``, from summary.json's config (else the ones the alerts name).
    """

    status: pd.DataFrame
    alerts: pd.DataFrame
    periods: pd.DataFrame
    conditions: dict[str, list[tuple[str, float, int, int]]]
    flaps: tuple[fl.Flap, ...] = ()


def read(out: Path, summary: dict | None) -> SloTables | None:
    """The SLO tables of an output folder; None when the run had no SLO file."""
    slo_config = ((summary or {}).get("config") or {}).get("slo")
    if not (slo_config or (out / "alerts").is_dir() or (out / "slo_status").is_dir()):
        return None
    status, alerts = q.query(out, sql=STATUS_SQL), q.query(out, sql=ALERTS_SQL)
    conditions: dict[str, list[tuple[str, float, int, int]]] = {}
    for slo in (slo_config or {}).get("slos", []):
        for severity, windows in slo.get("alerting", {}).items():
            conditions.setdefault(slo["name"], []).extend(
                (severity, float(w["burn_rate"]), int(w["long_s"]), int(w["short_s"]))
                for w in windows
            )
    fired: dict[str, list[tuple[str, float, int, int]]] = {}  # without a config
    named = ["slo", "severity", "burn_rate_threshold", "long_window_s", "short_window_s"]
    for slo, severity, rate, long_s, short_s in (
        alerts[named].dropna().drop_duplicates().itertuples(index=False)
    ):
        fired.setdefault(slo, []).append((severity, float(rate), int(long_s), int(short_s)))
    for slo, found in fired.items():
        conditions.setdefault(slo, found)
    flaps = tuple(fl.find_flaps(alerts, fl.slo_settings(summary)))
    return SloTables(status, alerts, firing_periods(alerts), conditions, flaps)


def firing_periods(alerts: pd.DataFrame) -> pd.DataFrame:
    """One row per firing period: alert, slo, sli, severity, slice, start and end.

    ``start`` is the label frontier of a ``firing`` transition and ``end`` that of the
    alert's next ``resolved`` one, epoch seconds (UTC); ``end`` is ``inf`` when the
    alert is still firing at the end. Transitions are taken in frontier order; a repeated
    state (none in the tables msewatch writes) changes nothing.
    """
    columns = ["alert", "slo", "sli", "severity", "slice"]
    rows, times = [], svg.epoch_s(alerts["frontier"]) if len(alerts) else np.zeros(0)
    for _, part in alerts.assign(t=times).groupby("alert", sort=False):
        start = None
        for r in part.sort_values("t", kind="stable").itertuples():
            if r.state == FIRING and start is None:
                start = r.t
            elif r.state == RESOLVED and start is not None:
                rows.append([*(getattr(r, c) for c in columns), start, r.t])
                start = None
        if start is not None:
            rows.append([*(getattr(r, c) for c in columns), start, math.inf])
    return pd.DataFrame(rows, columns=[*columns, "start", "end"])


def _spans(periods: pd.DataFrame, shift_s: float = 0.0) -> list[svg.Span]:
    """Shaded spans of firing periods, moved ``shift_s`` earlier on the x axis."""
    spans = []
    for r in periods.itertuples():
        end = "still firing at the end" if math.isinf(r.end) else f"to {svg.utc(r.end)} UTC"
        title = f"{r.alert} firing: label frontier {svg.utc(r.start)} UTC {end}"
        data_to = "" if math.isinf(r.end) else svg.utc(r.end, ISO)
        attrs = (("class_", f"firing {r.severity}"), ("data_alert", r.alert),
                 ("data_from", svg.utc(r.start, ISO)), ("data_to", data_to))  # fmt: skip
        color = SEVERITY_COLORS.get(r.severity, "#888")
        spans.append(svg.Span(r.start - shift_s, r.end - shift_s, color, title, attrs))
    return spans


def rmse_spans(tables: SloTables | None, slice_name: str, window_s: float) -> list[svg.Span]:
    """The firing periods of ``slice_name``'s rmse and error_rate alerts on an RMSE
    chart, whose x is the window start: a window is shaded when its end is in one."""
    if tables is None:
        return []
    periods = tables.periods
    mine = periods[(periods["slice"] == slice_name) & periods["sli"].isin(ERROR_SLIS)]
    return _spans(mine, window_s)


def _share(value: float) -> str:
    return "NaN" if math.isnan(value) else f"{value:.1%}"


def _slice_order(status: pd.DataFrame) -> list[str]:
    """Overall first, then the least budget left at the latest frontier, then by name."""
    last = status.groupby("slice").tail(1)
    last = last.assign(first=last["slice"] != "overall")
    return list(last.sort_values(["first", "budget_remaining", "slice"])["slice"])


def _budget_chart(rows: pd.DataFrame, spans: list[svg.Span], label: str) -> str:
    x, y = svg.epoch_s(rows["frontier"]), rows["budget_remaining"].to_numpy(float)
    line = svg.Series("budget left", svg.PALETTE[0], x, y, np.zeros(len(x), bool),
                      x_name="frontier", y_fmt=_share, markers=False)  # fmt: skip
    low = -1.0 if svg.finite(y).min(initial=0) < 0 else 0.0
    axis = svg.LinearAxis(low, 1.0, svg.pct)
    refs = [svg.Ref(0.0, "budget spent", "#b00")]
    return svg.line_chart([line], axis, label, spans, refs)


def _burn_chart(rows, conditions, spans, label) -> tuple[str, list[svg.Series]]:
    """The burn-rate chart of one SLO and slice, and its series (for the legend)."""
    pairs = rows[["frontier", "lookbacks_s", "burn_rates"]].explode(["lookbacks_s", "burn_rates"])
    pairs = pairs.dropna(subset=["lookbacks_s"])
    series = []
    for i, lookback in enumerate(sorted(set(pairs["lookbacks_s"].astype(int)))):
        one = pairs[pairs["lookbacks_s"].astype(int) == lookback]
        x, y = svg.epoch_s(one["frontier"]), one["burn_rates"].to_numpy(float)
        series.append(svg.Series(format_duration(lookback), svg.PALETTE[i % len(svg.PALETTE)],
                                 x, y, np.zeros(len(x), bool), markers=False))  # fmt: skip
    top = max([*svg.finite(pairs["burn_rates"].to_numpy(float)), *(c[1] for c in conditions), 100])
    marks = [m for m in BURN_MARKS if m[0] < top] + [next(m for m in BURN_MARKS if m[0] >= top)]
    refs = [
        svg.Ref(rate, f"{severity} {rate:g}x ({format_duration(long_s)}/"
                f"{format_duration(short_s)})", SEVERITY_COLORS.get(severity, "#666"))
        for severity, rate, long_s, short_s in conditions
    ]  # fmt: skip
    drawn = series or [svg.Series("none", "#999", np.zeros(0), np.zeros(0), np.zeros(0, bool))]
    axis = svg.LogAxis(marks[0][0], marks[-1][0], tuple(marks))
    return svg.line_chart(drawn, axis, label, spans, refs), series


def _slo_block(name: str, status: pd.DataFrame, tables: SloTables, max_slices: int) -> str:
    """The heading, note and charts of one SLO."""
    latest = status.iloc[-1]
    slices = _slice_order(status)
    text = (f"{latest.sli}: threshold {latest.threshold:g}, objective {latest.objective:g} "
            f"over {format_duration(int(latest.period_s))}; {len(slices)} slices, label frontier "
            f"{svg.utc(svg.epoch_s(status['frontier']).max())} UTC at the latest.")  # fmt: skip
    figures = []
    for slice_name in slices[:max_slices]:
        rows = status[status["slice"] == slice_name]
        periods = tables.periods
        spans = _spans(periods[(periods["slo"] == name) & (periods["slice"] == slice_name)])
        last, who = rows.iloc[-1], html.escape(slice_name)
        states = ", ".join(
            f'{sev} <b class="bad">firing</b>' if state == FIRING else f"{sev} {state}"
            for sev, state in (("page", last.page_state), ("ticket", last.ticket_state))
        )
        budget = _budget_chart(rows, spans, f"error budget of {name}, {slice_name}")
        caption = f"{who}: error budget left ({_share(last.budget_remaining)}; {states})"
        figures.append(svg.figure(caption, budget))
        burn, series = _burn_chart(
            rows, tables.conditions.get(name, []), spans, f"burn rates of {name}, {slice_name}"
        )
        figures.append(svg.figure(f"{who}: burn rate per lookback: {svg.keys(series)}", burn))
    more = len(slices) - max_slices
    note = f'<p class="note">{more} more slices: <code>msewatch slo status OUTPUT</code></p>'
    head = f'<h3>{html.escape(name)}</h3><p class="note">{html.escape(text)}</p>'
    return head + f'<div class="grid">{"".join(figures)}</div>' + (note if more > 0 else "")


def _transitions(alerts: pd.DataFrame) -> str:
    """The alert transitions in frontier order (the last :data:`MAX_TRANSITIONS`)."""
    if alerts.empty:
        return '<p class="note">No alert fired.</p>'
    shown = alerts.tail(MAX_TRANSITIONS)
    streaming = bool(alerts["watermark"].notna().any())
    frontiers, watermarks = svg.epoch_s(shown["frontier"]), svg.epoch_s(shown["watermark"])
    rows = []
    for r, frontier, watermark in zip(shown.itertuples(), frontiers, watermarks, strict=True):
        state = f'<b class="bad">{FIRING}</b>' if r.state == FIRING else html.escape(r.state)
        row = [svg.utc(frontier), html.escape(r.alert), state]
        if streaming:
            row.append("" if math.isnan(watermark) else svg.utc(watermark))
        rows.append([*row, html.escape(r.summary or "")])
    header = ["frontier (UTC)", "alert", "state", *(["watermark (UTC)"] * streaming), "summary"]
    earlier = len(alerts) - len(shown)
    note = f"{len(alerts)} transitions in event-time order of their label frontier"
    if earlier:
        note += f"; the {earlier} earlier ones: <code>msewatch query OUTPUT alerts</code>"
    return f'<p class="note">{note}.</p>' + svg.table(header, rows, "text")


def _flapping(flaps) -> str:
    """The flapping alerts and what calms each; "" when none flaps."""
    if not flaps:
        return ""
    rows = [
        [html.escape(f.alert), str(f.fired_24h), svg.utc(f.frontier_ms / 1000),
         format_duration(f.gap_s), html.escape("; or ".join(f.hints))]
        for f in flaps
    ]  # fmt: skip
    header = ["alert", "fired in 24 h", "to (UTC)", "longest gap", "calm it with"]
    note = f'<p class="note bad flapping">{len(flaps)} alert{"s" * (len(flaps) != 1)} '
    note += f"{html.escape(fl.FLAPPING)}; docs/slo.md, Flapping.</p>"
    return "<h3>Flapping alerts</h3>" + note + svg.table(header, rows, "text")


def section(tables: SloTables, max_slices: int) -> str:
    """The SLO section's HTML (without its ``h2``)."""
    if tables.status.empty:
        blocks = (
            '<p class="note">No SLO evaluation yet: no window of the SLOs\' slices has '
            "settled (enough labels), so nothing counts for or against an SLO.</p>"
        )
    else:
        blocks = "".join(
            _slo_block(name, part, tables, max_slices)
            for name, part in tables.status.groupby("slo", sort=True)
        )
    transitions = "<h3>Alert transitions</h3>" + _transitions(tables.alerts)
    return NOTE + blocks + _flapping(tables.flaps) + transitions
