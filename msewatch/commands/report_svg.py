"""inline SVG and HTML pieces of ``msewatch report``: line and bar charts, tables

Charts are drawn here as text, with no script: the page's Content-Security-Policy
forbids every fetch (see :mod:`msewatch.commands.report`). Every attribute value is escaped by
:func:`el`; text bodies are escaped by the caller with ``html.escape``. Times are
epoch seconds, UTC, on the x axis of every line chart.
"""

from __future__ import annotations

import dataclasses
import datetime
import html
import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")
WIDTH, HEIGHT = 560, 210
LEFT, RIGHT, TOP, BOTTOM = 58, 14, 10, 26
TIME_STEPS = (900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800, 1209600)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def el(tag: str, body: str = "", **attrs) -> str:
    """An SVG/HTML element; ``a_b`` attribute names become ``a-b``.

    Attribute values are always escaped here (quotes included), so no value can end
    its attribute; ``body`` is HTML already: callers escape text with ``html.escape``.
    """
    text = "".join(
        f' {k.rstrip("_").replace("_", "-")}="{html.escape(str(v), quote=True)}"'
        for k, v in attrs.items()
    )
    return f"<{tag}{text}>{body}</{tag}>"


def finite(values) -> np.ndarray:
    """The finite values, as floats."""
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def epoch_s(times: pd.Series) -> np.ndarray:
    """UTC seconds since the epoch; in microseconds first, which hold any accepted year
    (nanoseconds stop at 1677-2262)."""
    epoch = pd.Timestamp(0, tz="UTC").as_unit("us")
    return ((times.dt.as_unit("us") - epoch) / pd.Timedelta(seconds=1)).to_numpy(float)


def utc(seconds: float, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """UTC text of epoch seconds; the year always has four digits (``strftime`` drops
    the zeros of years before 1000)."""
    when = _EPOCH + datetime.timedelta(seconds=seconds)
    return when.strftime(fmt.replace("%Y", f"{when.year:04d}"))


def num(value, digits: int = 4) -> str:
    """An integer with thousands separators, a float with ``digits`` significant digits."""
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    return "NaN" if value is None or math.isnan(value) else f"{value:.{digits}g}"


def pct(value: float) -> str:
    """A share as a whole percentage (NaN stays NaN)."""
    return "NaN" if math.isnan(value) else f"{value:.0%}"


def seconds_text(seconds: float) -> str:
    """A duration for a person: ``42s``, ``7.5m``, ``3.2h``, ``2.1d`` (NaN stays NaN)."""
    if seconds is None or math.isnan(seconds):
        return "NaN"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.3g}{unit}"
    return f"{seconds:.3g}s"


def linear_ticks(low: float, high: float) -> list[float]:
    """Round ticks from ``low`` (0 or a tick) to at most ``high``, about four steps."""
    span = (high - low) / 4
    step = 10 ** math.floor(math.log10(span))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if m * step >= span)
    first = math.ceil(low / step - 1e-9)
    return [i * step for i in range(first, int(high / step + 1e-9) + 1)]


def nice_top(value: float) -> float:
    """The smallest round tick at or above ``value`` (1 when there is no value)."""
    if not (value > 0 and math.isfinite(value)):
        return 1.0
    ticks = linear_ticks(0, value)
    return ticks[-1] if ticks[-1] >= value else ticks[-1] + ticks[1]


@dataclasses.dataclass(frozen=True)
class LinearAxis:
    """A linear y axis over ``[low, high]``; values outside are drawn at its edge."""

    low: float
    high: float
    fmt: Callable[[float], str] = num

    def ticks(self) -> list[tuple[float, str]]:
        return [(t, self.fmt(t)) for t in linear_ticks(self.low, self.high)]

    def share(self, v):
        return (np.clip(v, self.low, self.high) - self.low) / (self.high - self.low)


@dataclasses.dataclass(frozen=True)
class LogAxis:
    """A log y axis over ``[low, high]`` (> 0) with labelled ticks; values outside (0
    too) are drawn at its edge."""

    low: float
    high: float
    tick_marks: tuple[tuple[float, str], ...]

    def ticks(self) -> list[tuple[float, str]]:
        return list(self.tick_marks)

    def share(self, v):
        clipped = np.clip(v, self.low, self.high)
        return np.log10(clipped / self.low) / math.log10(self.high / self.low)


def log_axis(values, marks: Sequence[tuple[float, str]]) -> LogAxis:
    """From the largest mark at or below the smallest positive value to the smallest
    at or above the largest (at least a decade; the last mark without values)."""
    ys = finite(values)
    ys = ys[ys > 0]
    lo = max([t for t, _ in marks if not ys.size or t <= ys.min()] or [marks[0][0]])
    hi = min([t for t, _ in marks if ys.size and t >= ys.max()] or [marks[-1][0]])
    hi = max(hi, 10 * lo)
    return LogAxis(lo, hi, tuple((t, text) for t, text in marks if lo <= t <= hi))


@dataclasses.dataclass(frozen=True)
class Series:
    """A chart line: x in epoch seconds (UTC), y, provisional points, optional band.

    ``x_name`` names x in the points' tooltips, ``y_fmt`` writes their value;
    ``markers=False`` draws the line alone (long series: a marker is ~200 bytes).
    """

    name: str
    color: str
    x: np.ndarray
    y: np.ndarray
    provisional: np.ndarray
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    x_name: str = "window"
    y_fmt: Callable[[float], str] = num
    markers: bool = True


@dataclasses.dataclass(frozen=True)
class Span:
    """A shaded stretch of the x axis, epoch seconds (UTC); ``end`` may be ``inf`` (to
    the right edge). ``attrs`` go on its ``rect`` (``class_``, ``data_*``)."""

    start: float
    end: float
    color: str
    title: str
    attrs: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Ref:
    """A horizontal reference line at ``value``, labelled at its right end."""

    value: float
    text: str
    color: str = "#666"


def line_chart(
    series: list[Series],
    axis: LinearAxis | LogAxis,
    label: str,
    spans: Sequence[Span] = (),
    refs: Sequence[Ref] = (),
) -> str:
    """An inline SVG line chart (class ``chart``) of ``series`` on the y ``axis``, with
    shaded x ``spans`` under the lines and reference lines ``refs``."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    xs, ys = np.concatenate([s.x for s in series]), finite(np.concatenate([s.y for s in series]))
    lo, hi = (xs.min(), xs.max()) if xs.size else (0.0, 3600.0)
    lo, hi = (lo - 1800, hi + 1800) if hi - lo < 1 else (lo, hi)

    def fy(v):
        return TOP + plot_h * (1 - axis.share(v))

    def fx(v):
        return LEFT + plot_w * (v - lo) / (hi - lo)

    parts = [el("rect", x=LEFT, y=TOP, width=plot_w, height=plot_h, fill="#fcfcfc", stroke="#ccc")]
    for value, text in axis.ticks():
        y = f"{float(fy(value)):.1f}"
        parts.append(el("line", x1=LEFT, x2=WIDTH - RIGHT, y1=y, y2=y, stroke="#eee"))
        parts.append(el("text", text, x=LEFT - 5, y=float(y) + 4, text_anchor="end"))
    step = next((s for s in TIME_STEPS if (hi - lo) / s <= 4), TIME_STEPS[-1])
    for t in np.arange(math.ceil(lo / step) * step, hi + 1, step):
        x, fmt = fx(t), "%m-%d" if step >= 86400 else "%m-%d %H:%M"
        anchor = "end" if x > WIDTH - RIGHT - 30 else "start" if x < LEFT + 30 else "middle"
        parts.append(el("text", utc(t, fmt), x=f"{x:.1f}", y=HEIGHT - 8, text_anchor=anchor))
    for s in spans:
        if s.end >= lo and s.start <= hi:
            parts.append(_span(s, fx(max(s.start, lo)), fx(min(s.end, hi))))
    for ref in refs:
        y = f"{float(fy(ref.value)):.1f}"
        parts.append(el("line", x1=LEFT, x2=WIDTH - RIGHT, y1=y, y2=y, stroke=ref.color,
                        stroke_dasharray="2 3", class_="ref"))  # fmt: skip
        parts.append(el("text", html.escape(ref.text), x=WIDTH - RIGHT - 3, y=float(y) - 3,
                        text_anchor="end"))  # fmt: skip
    if not ys.size:
        parts.append(el("text", "no data", x=WIDTH / 2, y=HEIGHT / 2, text_anchor="middle"))
    for s in series:
        parts.extend(_draw_series(s, fx, fy))
    size = {"viewBox": f"0 0 {WIDTH} {HEIGHT}", "width": WIDTH, "height": HEIGHT}
    return el("svg", "".join(parts), class_="chart", role="img", aria_label=label, **size)


def _span(span: Span, x0: float, x1: float) -> str:
    """The shaded rectangle of a span from ``x0`` to ``x1`` (a zero-width span stays
    visible as a 1-pixel rule)."""
    width = max(x1 - x0, 1.0)
    return el("rect", el("title", html.escape(span.title)), x=f"{x0:.1f}", y=TOP,
              width=f"{width:.1f}", height=HEIGHT - TOP - BOTTOM, fill=span.color,
              fill_opacity=0.16, **dict(span.attrs))  # fmt: skip


def _draw_series(s: Series, fx, fy) -> list[str]:
    """Band, line (dashed where provisional) and markers (hollow where provisional)."""
    px, py, ok = fx(s.x), fy(s.y), np.isfinite(s.y)
    has_band = s.low is not None and s.high is not None
    band_ok = ok & np.isfinite(s.low) & np.isfinite(s.high) if has_band else ok
    paths: dict[tuple[str, bool], list[str]] = {}
    ends: dict[bool, int] = {}  # the point each line path ends at: continue from there
    for i in range(len(s.x) - 1):
        prov, j = bool(s.provisional[i] or s.provisional[i + 1]), i + 1
        if ok[i] and ok[j]:
            move = "" if ends.get(prov) == i else f"M{px[i]:.1f},{py[i]:.1f}"
            paths.setdefault(("line", prov), []).append(f"{move}L{px[j]:.1f},{py[j]:.1f}")
            ends[prov] = j
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
    out = [el("path", d="".join(paths[key]), **styles[key]) for key in styles if key in paths]
    for i in np.flatnonzero(ok) if s.markers else ():
        prov = bool(s.provisional[i])
        tip = f"{s.name}, {s.x_name} {utc(s.x[i])} UTC: {s.y_fmt(float(s.y[i]))}"
        tip += " (provisional)" if prov else ""
        out.append(el("circle", el("title", html.escape(tip)), class_="pt prov" if prov else
                      "pt", cx=f"{px[i]:.1f}", cy=f"{py[i]:.1f}", r=2.8, stroke=s.color,
                      fill="#fff" if prov else s.color, stroke_width=1.4))  # fmt: skip
    return out


def bars(items: list[tuple[str, int, str]]) -> str:
    """A horizontal bar chart (class ``chart``) of labelled counts."""
    row, label_w = 22, 230
    height = TOP + BOTTOM + row * max(len(items), 1)
    top = max([n for _, n, _ in items] + [1])
    parts = []
    for i, (label, n, color) in enumerate(items):
        y, w = TOP + i * row, (WIDTH - label_w - 70) * n / top
        parts.append(el("text", html.escape(label), x=label_w - 6, y=y + 15, text_anchor="end"))
        parts.append(el("rect", x=label_w, y=y + 4, width=f"{w:.1f}", height=row - 8, fill=color))
        parts.append(el("text", f"{n:,}", x=f"{label_w + w + 5:.1f}", y=y + 15))
    size = {"viewBox": f"0 0 {WIDTH} {height}", "width": WIDTH, "height": height}
    return el("svg", "".join(parts), class_="chart", role="img", aria_label="counts", **size)


def table(header: list[str], rows: list[list[str]], class_: str = "") -> str:
    """An HTML table; header cells are escaped, body cells are HTML already. Numbers
    align right; ``class_="text"`` aligns every column left."""
    head = "".join(el("th", html.escape(h)) for h in header)
    body = "".join(el("tr", "".join(el("td", c) for c in r)) for r in rows)
    attrs = f' class="{html.escape(class_, quote=True)}"' if class_ else ""
    return f"<table{attrs}><tr>{head}</tr>{body}</table>"


def figure(caption: str, chart: str) -> str:
    """A captioned chart; ``caption`` is HTML already."""
    return el("figure", el("figcaption", caption) + chart)


def keys(series: list[Series]) -> str:
    """Legend keys (a coloured rule and the name) of the series, as HTML."""
    return "".join(
        f'<span class="key" style="border-color:{s.color}"></span>{html.escape(s.name)} '
        for s in series
    )
