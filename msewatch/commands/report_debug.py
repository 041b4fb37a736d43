"""the debug view of ``msewatch report``: errors, value distributions, version deltas

From the latest pane of each window of the overall slice (``metrics_latest``), x the
window start, UTC:

* **squared errors per window**: the mean squared error with its 95 % CI, and the largest
  one (``max_abs_error`` squared), on a log scale. When the run counted errors above
  thresholds (``error_exceedance``: an error_rate SLO's thresholds t), the histogram of
  the squared errors per window over the bands ``(t_i^2, t_(i+1)^2]``, as counts of
  scored pairs (``count``: unweighted), the newest :data:`HISTOGRAM_WINDOWS` windows.
  The metrics table keeps no other per-pair errors, so without thresholds there is no
  histogram, and the view says so;
* **y_pred and y_true distributions**: per window, the median and the 10th-90th
  percentile band of each (:class:`~msewatch.transforms.metrics.sketch.ValueSketch`
  quantiles, within 0.5 %), and both histograms over the last 24 h of windows (the
  sketches merged, :data:`BINS` equal bins from the 1st to the 99th percentile); the
  feature sketches' medians when the run has features;
* **version deltas**: per comparison and slice, the relative difference C / B - 1 of
  the candidate's and baseline's mean loss over the frontier with its always-valid
  bounds, the margin dashed (the ``comparisons`` table, the last evaluation of each
  frontier), and the latest decisions (:func:`msewatch.commands.report.comparisons_table`).
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from msewatch.commands import query as q
from msewatch.commands import report_svg as svg
from msewatch.transforms.metrics.sketch import ValueSketch

HISTOGRAM_WINDOWS = 12
BINS = 30
QUANTILES = (0.1, 0.5, 0.9)
SQUARED_MARKS = tuple((10.0**k, f"{10.0**k:g}") for k in range(-8, 17))
COMPARISON_SQL = """SELECT * FROM comparisons QUALIFY row_number() OVER (
    PARTITION BY comparison, slice, frontier ORDER BY emitted_at DESC) = 1
ORDER BY comparison, slice = 'overall' DESC, slice, frontier"""


def sketch(blob) -> ValueSketch:
    """The sketch of a BYTES cell (empty for null: None or pandas' NA)."""
    return ValueSketch.empty() if blob is None or pd.isna(blob) else ValueSketch.from_bytes(blob)


def _flat(rows: pd.DataFrame, column: str, name: str, color: str) -> svg.Series:
    x = svg.epoch_s(rows["window_start"])
    return svg.Series(name, color, x, rows[column].to_numpy(float),
                      ~rows["complete"].to_numpy(bool))  # fmt: skip


def squared_error_chart(overall: pd.DataFrame) -> str:
    """MSE (95 % CI band) and the largest squared error per window, log scale."""
    rows = overall.assign(max_se=overall["max_abs_error"] ** 2)
    x, prov = svg.epoch_s(rows["window_start"]), ~rows["complete"].to_numpy(bool)
    mse = svg.Series(
        "mean e²",
        svg.PALETTE[0],
        x,
        rows["mse"].to_numpy(float),
        prov,
        rows["mse_ci_low"].to_numpy(float),
        rows["mse_ci_high"].to_numpy(float),
    )
    top = _flat(rows, "max_se", "largest e²", svg.PALETTE[1])  # fmt: skip
    values = np.concatenate([mse.y, top.y, mse.low])
    axis = svg.log_axis(values, SQUARED_MARKS)
    chart = svg.line_chart([mse, top], axis, "squared errors per window")
    return svg.figure(f"Squared error per window, log scale: {svg.keys([mse, top])}", chart)


def histogram_rows(overall: pd.DataFrame) -> tuple[list[str], list[list[int]]]:
    """Band names and per window (newest last) the scored pairs in each squared-error
    band, from ``error_exceedance`` (empty lists without thresholds)."""
    shown = overall[overall["error_exceedance"].map(len) > 0].tail(HISTOGRAM_WINDOWS)
    if shown.empty:
        return [], []
    thresholds = [float(e["threshold"]) for e in shown["error_exceedance"].iloc[-1]]
    edges = ["0", *(svg.num(t * t) for t in thresholds)]
    bands = [f"({a}, {b}]" for a, b in zip(edges, edges[1:], strict=False)]
    bands.append(f"> {edges[-1]}")
    counts = []
    for r in shown.itertuples():
        above = [int(e["count"]) for e in r.error_exceedance]
        cumulative = [int(r.scored), *above]
        counts.append([a - b for a, b in zip(cumulative, [*above, 0], strict=True)])
    return bands, counts


def squared_errors(overall: pd.DataFrame) -> str:
    head = "<h2>Squared errors per window (overall slice)</h2>"
    if overall.empty:
        return head + '<p class="note">No windows yet.</p>'
    bands, counts = histogram_rows(overall)
    if bands:
        shown = overall[overall["error_exceedance"].map(len) > 0].tail(HISTOGRAM_WINDOWS)
        starts = svg.epoch_s(shown["window_start"])
        rows = [[svg.utc(s), *(svg.num(c) for c in row), svg.num(int(sum(row)))]
                for s, row in zip(starts, counts, strict=True)]  # fmt: skip
        items = [(f"e² {b}", n, svg.PALETTE[0]) for b, n in zip(bands, counts[-1], strict=True)]
        newest = svg.figure(f"Squared-error histogram, window {svg.utc(starts[-1])}",
                            svg.bars([(b, max(n, 0), c) for b, n, c in items]))  # fmt: skip
        hist = ("<h3>Squared-error histogram per window (scored pairs per band)</h3>"
                + svg.table(["window start (UTC)", *bands, "scored"], rows))  # fmt: skip
    else:
        newest, hist = (
            "",
            (
                '<p class="note">No histogram: the run counted no error thresholds (an '
                "error_rate SLO's <code>threshold</code> adds them to "
                "<code>error_exceedance</code>); the mean and the largest squared error are "
                "all the table keeps per window.</p>"
            ),
        )
    charts = f'<div class="grid">{squared_error_chart(overall)}{newest}</div>'
    return head + charts + hist


def quantile_frame(overall: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per window: the p10, p50, p90 of a sketch column (NaN for no value)."""
    sketches = overall[column].map(sketch)
    values = {f"q{int(p * 100)}": sketches.map(lambda s, p=p: s.quantile(p)) for p in QUANTILES}
    return overall[["window_start", "complete"]].assign(**values)


def _quantile_series(frame, name: str, color: str) -> svg.Series:
    x, prov = svg.epoch_s(frame["window_start"]), ~frame["complete"].to_numpy(bool)
    return svg.Series(f"{name} median", color, x, frame["q50"].to_numpy(float), prov,
                      frame["q10"].to_numpy(float), frame["q90"].to_numpy(float))  # fmt: skip


def histogram_chart(samples: list[tuple[str, str, ValueSketch]]) -> str:
    """Step histograms of merged sketches on one grid of :data:`BINS` bins (the 1st to
    the 99th percentile of all of them), as shares of each one's values (the values
    outside the grid are left out of the bars, not of the shares' total)."""
    merged = ValueSketch.merge_all(s for _, _, s in samples)
    low, high = merged.quantile(0.01), merged.quantile(0.99)
    if not merged.count or not high > low:
        return ""
    edges = np.linspace(low, high, BINS + 1)
    plot_w, plot_h = svg.WIDTH - svg.LEFT - svg.RIGHT, svg.HEIGHT - svg.TOP - svg.BOTTOM
    shares = []
    for _, _, s in samples:
        values, counts = s.buckets()
        hist, _ = np.histogram(values, edges, weights=counts)  # outside: left out
        shares.append(hist / max(int(counts.sum()), 1))
    top = svg.nice_top(max(float(h.max(initial=0)) for h in shares))
    parts = [svg.el("rect", x=svg.LEFT, y=svg.TOP, width=plot_w, height=plot_h, fill="#fcfcfc",
                    stroke="#ccc")]  # fmt: skip
    for t in svg.linear_ticks(0, top):
        y = svg.TOP + plot_h * (1 - t / top)
        parts.append(svg.el("text", svg.pct(t), x=svg.LEFT - 5, y=f"{y + 4:.1f}",
                            text_anchor="end"))  # fmt: skip
    for e in edges[:: BINS // 5]:
        x = svg.LEFT + plot_w * (e - low) / (high - low)
        parts.append(svg.el("text", svg.num(float(e), 3), x=f"{x:.1f}", y=svg.HEIGHT - 8,
                            text_anchor="middle"))  # fmt: skip
    for (name, color, _), hist in zip(samples, shares, strict=True):
        xs = svg.LEFT + plot_w * (edges - low) / (high - low)
        ys = svg.TOP + plot_h * (1 - hist / top)
        d = f"M{xs[0]:.1f},{svg.TOP + plot_h:.1f}" + "".join(
            f"L{xs[i]:.1f},{ys[i]:.1f}L{xs[i + 1]:.1f},{ys[i]:.1f}" for i in range(BINS)
        ) + f"L{xs[-1]:.1f},{svg.TOP + plot_h:.1f}"  # fmt: skip
        parts.append(svg.el("path", d=d, fill=color, fill_opacity=0.15, stroke=color,
                            stroke_width=1.5, class_="hist", data_series=name))  # fmt: skip
    size = {"viewBox": f"0 0 {svg.WIDTH} {svg.HEIGHT}", "width": svg.WIDTH, "height": svg.HEIGHT}
    return svg.el("svg", "".join(parts), class_="chart", role="img",
                  aria_label="value histograms", **size)  # fmt: skip


def distributions(overall: pd.DataFrame) -> str:
    head = "<h2>y_pred and y_true distributions (overall slice)</h2>"
    if overall.empty:
        return head + '<p class="note">No windows yet.</p>'
    series = [_quantile_series(quantile_frame(overall, f"{c}_sketch"), c, color)
              for c, color in (("y_pred", svg.PALETTE[0]), ("y_true", svg.PALETTE[2]))]  # fmt: skip
    values = svg.finite(np.concatenate([np.concatenate([s.y, s.low, s.high]) for s in series]))
    low = min(0.0, values.min(initial=0.0))
    axis = svg.LinearAxis(low, svg.nice_top(values.max(initial=0.0)))
    chart = svg.figure(f"Median and p10-p90 per window: {svg.keys(series)}",
                       svg.line_chart(series, axis, "y_pred and y_true quantiles"))  # fmt: skip
    day = overall[overall["window_end"] > overall["window_end"].max() - pd.Timedelta(hours=24)]
    merged = [(c, color, ValueSketch.merge_all(day[f"{c}_sketch"].map(sketch)))
              for c, color in (("y_pred", svg.PALETTE[0]), ("y_true", svg.PALETTE[2]))]  # fmt: skip
    hist = histogram_chart(merged)
    counts = ", ".join(f"{c}: {s.count:,} values" for c, _, s in merged)
    hist = svg.figure(f"Histograms, last 24 h of windows ({counts})", hist) if hist else ""
    return head + f'<div class="grid">{chart}{hist}</div>' + _features(overall)


def _features(overall: pd.DataFrame) -> str:
    """The feature sketches' medians in the newest window ("" without features)."""
    newest = overall["feature_sketches"].iloc[-1] if len(overall) else []
    rows = [[html.escape(str(f["feature"])), svg.num(sketch(f["sketch"]).quantile(0.5)),
             svg.num(sketch(f["sketch"]).count)] for f in newest]  # fmt: skip
    if not rows:
        return ""
    return "<h3>Feature sketches, newest window</h3>" + svg.table(
        ["feature", "median", "values"], rows
    )


def _delta_chart(rows: pd.DataFrame, label: str) -> str:
    x = svg.epoch_s(rows["frontier"])
    change = (rows["ratio"] - 1).to_numpy(float)
    line = svg.Series("C / B - 1", svg.PALETTE[3], x, change, np.zeros(len(x), bool),
                      rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float),
                      x_name="frontier", y_fmt=lambda v: f"{v:+.1%}")  # fmt: skip
    margin = float(rows["margin"].iloc[-1])
    bounds = svg.finite(np.concatenate([change, line.low, line.high, [margin, 0.0]]))
    lo, hi = max(bounds.min(initial=0), -1.0), min(bounds.max(initial=0), 2.0)
    pad = (hi - lo) * 0.1 or 0.1
    axis = svg.LinearAxis(lo - pad, hi + pad, lambda v: f"{v:+.0%}")
    refs = [svg.Ref(margin, f"margin {margin:+.0%}", "#d62728"), svg.Ref(0.0, "no change")]
    return svg.line_chart([line], axis, label, refs=refs)


def version_deltas(out) -> str:
    from msewatch.commands import report

    head = "<h2>Version deltas with their bounds</h2>"
    if not (out / "comparisons").is_dir():
        return head + (
            '<p class="note">No comparisons table: add <code>comparisons:</code> to the SLO '
            "file (docs/slo.md) to compare model versions.</p>"
        )
    frame = q.query(out, sql=COMPARISON_SQL)
    figures = []
    for (name, slice_name), rows in frame.groupby(["comparison", "slice"], sort=False):
        last = rows.iloc[-1]
        caption = html.escape(f"{name}, {slice_name}: {last.candidate} vs {last.baseline} "
                              f"({last.metric}), latest {last.decision}")  # fmt: skip
        figures.append(svg.figure(caption, _delta_chart(rows, f"{name} {slice_name}")))
    note = (
        '<p class="note">Relative difference C / B &minus; 1 of the mean loss over the '
        "frontier (UTC) with its always-valid bounds (band); dashed: the margin.</p>"
    )
    return (
        head
        + note
        + f'<div class="grid">{"".join(figures)}</div>'
        + report.comparisons_table(out).replace(
            report.COMPARISONS_HEAD, "<h3>Latest decisions</h3>"
        )
    )


def debug(out, latest: pd.DataFrame, tables) -> str:
    """The debug view's body."""
    overall = latest[latest["slice"] == "overall"]
    return squared_errors(overall) + distributions(overall) + version_deltas(out)
