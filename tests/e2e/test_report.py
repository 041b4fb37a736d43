"""Tests of ``msewatch report``: the HTML's content and the command line.

Content is checked against pandas computations on the same synthetic rows the query
tests read (``tests/synthetic_output.py``). The page opened in a real browser
(headless Chromium) is tested in ``tests/integration/test_report_browser.py``.
"""

from __future__ import annotations

import argparse
import errno
import html
import json
import pathlib
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from msewatch import cli
from msewatch.commands import report
from msewatch.commands.report_svg import LEFT, RIGHT, WIDTH
from tests.synthetic_output import (
    DRIFTED,
    FIRING_PERIODS,
    SLO_SLICES,
    SLO_SUMMARY,
    SUMMARY,
    latest_panes,
    pooled_worst,
    synthetic_alerts,
    synthetic_dead_letter,
    synthetic_metrics,
    synthetic_slo_status,
    write_output,
    write_slo_tables,
)


@pytest.fixture
def page(tmp_path, metrics):
    out = write_output(tmp_path / "out", metrics, synthetic_dead_letter())
    return report.write_report(out, tmp_path / "report.html").read_text(encoding="utf-8")


def charts(html_text: str) -> list[str]:
    return re.findall(r'<svg class="chart".*?</svg>', html_text, flags=re.S)


def test_report_is_one_offline_file(page):
    assert "<script" not in page and "<link" not in page and "<img" not in page
    assert not re.search(r"\b(src|href)=|url\(|@import", page)
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_one_rmse_chart_per_slice_plus_three(page, metrics):
    assert len(charts(page)) == metrics["slice"].nunique() + 3  # coverage, lag, counts
    assert page.count("<figcaption>overall</figcaption>") == 1


def test_slice_charts_are_capped(tmp_path, metrics):
    many = pd.concat([metrics.assign(slice=f"sku={i:02d}") for i in range(14)] + [metrics])
    out = write_output(tmp_path / "out", many, dead=None)
    html_text = report.write_report(out, tmp_path / "r.html").read_text()
    assert len(charts(html_text)) == report.MAX_SLICE_CHARTS + 3
    assert f"{many['slice'].nunique() - report.MAX_SLICE_CHARTS} more slices" in html_text


def test_provisional_points_are_hollow_and_dashed(page, metrics):
    latest = latest_panes(metrics)
    overall = latest[latest["slice"] == "overall"]
    lags = ["label_lag_p50_s", "label_lag_p90_s", "label_lag_p99_s"]
    for complete, css in ((False, 'class="pt prov"'), (True, 'class="pt"')):
        rmse = latest[latest["complete"] == complete]["rmse"].notna().sum()
        rows = overall[overall["complete"] == complete]
        expected = rmse + rows["label_coverage"].notna().sum() + rows[lags].notna().sum().sum()
        assert page.count(css) == expected > 0
    assert page.count('fill="#fff"') == page.count('class="pt prov"')  # hollow
    assert 'stroke-dasharray="5 3" class="prov"' in page
    assert "<b>provisional</b>" in page


def test_no_nan_reaches_the_svg(page):
    numbers = re.findall(r'\b(?:d|cx|cy|x|y|x1|x2|y1|y2|width)="([^"]*)"', page)
    assert numbers and not any(re.search(r"nan|inf", n, flags=re.I) for n in numbers)


def test_worst_table_lists_slices_in_order(page, metrics):
    expected = pooled_worst(metrics)
    table = page.split("Worst slices")[1].split("</table>")[0]
    assert re.findall(r"<tr><td>([^<]*)</td>", table) == list(expected["slice"])
    top = expected.iloc[0]
    assert f"{top['rmse']:.4g} [{top['rmse_ci_low']:.4g}, {top['rmse_ci_high']:.4g}]" in table
    assert "complete windows of 2024-03-01 21:00 to 2024-03-02 00:00 UTC" in table


def test_worst_table_says_when_nothing_is_complete(tmp_path, metrics):
    out = write_output(tmp_path / "out", metrics.assign(complete=False), dead=None)
    html_text = report.write_report(out, tmp_path / "r.html").read_text()
    assert "No complete window with scored pairs yet." in html_text


def test_counts_chart_sums_the_overall_latest_panes(page, metrics):
    latest = latest_panes(metrics)
    overall = latest[latest["slice"] == "overall"]
    bars = charts(page)[-1]
    for label, column in (("NaN/inf predictions", "nan_predictions"), ("NaN/inf labels",
                          "nan_labels"), ("negative label lags", "negative_lags")):  # fmt: skip
        assert re.search(rf"{label}[^<]*</text>.*?>{overall[column].sum():,}</text>", bars)
    assert re.search(r"invalid predictions</text>.*?>3</text>", bars)
    assert re.search(r"dead letter: label unparseable</text>.*?>3</text>", bars)


def test_counts_skip_overlapping_sliding_windows(tmp_path):
    """24 h windows every hour: only windows starting at 00:00 UTC are summed."""
    starts = pd.date_range("2024-03-01", periods=48, freq="h", tz="UTC")
    rows = synthetic_metrics().iloc[[0]].reset_index(drop=True)
    rows = pd.concat([rows] * len(starts), ignore_index=True)
    rows["window_start"], rows["window_end"] = starts, starts + pd.Timedelta(hours=24)
    rows["slice"], rows["nan_predictions"] = "overall", np.arange(len(starts)) + 1
    out = write_output(tmp_path / "out", rows, dead=None)
    bars = charts(report.write_report(out, tmp_path / "r.html").read_text())[-1]
    expected = rows[rows["window_start"].dt.hour == 0]["nan_predictions"].sum()  # 1 + 25
    assert re.search(rf"NaN/inf predictions \(y_pred\)</text>.*?>{expected}</text>", bars)


def test_outcome_table_shows_the_summary(page):
    table = page.split("Outcomes (conservation")[1]
    for kind, counts in SUMMARY["outcomes"].items():
        for outcome, n in counts.items():
            assert re.search(rf"<td>{outcome}</td>.*?<td>{n:,}</td>", table, flags=re.S), kind
    assert table.count("(balanced)") == 2
    assert "&quot;label_ttl&quot;: &quot;7d&quot;" in table.split("<pre>")[1]


def test_outcome_table_flags_a_broken_balance(tmp_path, metrics):
    summary = json.loads(json.dumps(SUMMARY))
    summary["outcomes"]["label"]["joined"] -= 2
    out = write_output(tmp_path / "out", metrics, dead=None, summary=summary)
    html_text = report.write_report(out, tmp_path / "r.html").read_text()
    assert '<b class="bad">98 (-2)</b>' in html_text
    assert html_text.count("(balanced)") == 1


def test_report_without_summary_says_so(tmp_path, metrics):
    out = write_output(tmp_path / "out", metrics, dead=None, summary=None)
    html_text = report.write_report(out, tmp_path / "r.html").read_text()
    assert "summary.json not found" in html_text
    assert len(charts(html_text)) == metrics["slice"].nunique() + 3


def _run(argv):
    parser = argparse.ArgumentParser(prog="msewatch report")
    report.add_arguments(parser)
    return report.run(parser.parse_args(argv))


def test_cli_writes_the_report_and_prints_its_path(tmp_path, metrics, capsys):
    out = write_output(tmp_path / "out", metrics, synthetic_dead_letter())
    assert _run([str(out), "--out", str(tmp_path / "sub" / "r.html")]) == 0
    written = capsys.readouterr().out.split()  # the report, then its three views
    assert written[0] == str(tmp_path / "sub" / "r.html") and len(written) == 4
    assert (tmp_path / "sub" / "r.html").read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("broken", ["missing", "bad-summary"])
def test_cli_user_mistakes_are_one_line_exit_2(tmp_path, metrics, capsys, broken):
    out = write_output(tmp_path / "out", metrics, dead=None)
    (out / "summary.json").write_text("{not json")
    target = out if broken == "bad-summary" else tmp_path / "missing"
    assert _run([str(target), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert ("not valid JSON" if broken == "bad-summary" else "does not exist") in err


# --- the SLO section (msewatch run --slo) --------------------------------------------

ISO = "%Y-%m-%dT%H:%M:%SZ"
SLO_HEADING = "<h2>SLOs: error budget, burn rates and firing alerts</h2>"
PLOT_TOP, PLOT_BOTTOM = 10.0, 184.0  # the plot box: y TOP .. HEIGHT - BOTTOM


@pytest.fixture
def slo_page(tmp_path, metrics):
    out = write_output(tmp_path / "slo", metrics, synthetic_dead_letter(), summary=SLO_SUMMARY)
    write_slo_tables(out, synthetic_alerts(), synthetic_slo_status())
    return report.write_report(out, tmp_path / "slo.html").read_text(encoding="utf-8")


def figures(html_text: str) -> list[tuple[str, str]]:
    """(caption, chart) of every line chart, in page order."""
    found = re.findall(r"<figure><figcaption>(.*?)</figcaption>(<svg.*?</svg>)</figure>", html_text)
    return [(html.unescape(caption), chart) for caption, chart in found]


def slo_figures(html_text: str, slo: str) -> dict[str, tuple[str, str]]:
    """{slice: (budget chart, burn-rate chart)} of one SLO's block."""
    block = html_text.split(f"<h3>{slo}</h3>")[1].split("<h3>")[0]
    found = figures(block)
    return {
        budget[0].split(": error budget")[0]: (budget[1], burn[1])
        for budget, burn in zip(found[::2], found[1::2], strict=True)
    }


def shaded(chart: str) -> list[dict[str, str]]:
    """The attributes of every firing-period rectangle of a chart."""
    rects = re.findall(r'<rect ([^>]*class="firing [^"]*"[^>]*)>', chart)
    return [{k: html.unescape(v) for k, v in re.findall(r'([\w-]+)="([^"]*)"', r)} for r in rects]


def periods(rects) -> list[tuple[str, str, str]]:
    return sorted((r["data-alert"], r["data-from"], r["data-to"]) for r in rects)


def expected_periods(keep) -> list[tuple[str, str, str]]:
    """FIRING_PERIODS (the truth the synthetic alerts are built from) that ``keep``."""
    return sorted(
        (alert, start.strftime(ISO), "" if end is None else end.strftime(ISO))
        for alert, start, end in FIRING_PERIODS
        if keep(alert)
    )


def path_ys(chart: str, color: str) -> list[float]:
    """The y of every vertex of the (solid) line drawn in ``color``."""
    d = re.search(rf'<path d="([^"]*)" fill="none" stroke="{color}"', chart).group(1)
    return [float(y) for y in re.findall(r"[ML][\d.]+,([\d.]+)", d)]


def test_slo_section_only_with_an_slo_file(page, slo_page, metrics):
    assert SLO_HEADING not in page and 'class="firing' not in page
    assert SLO_HEADING in slo_page
    pairs = sum(len(slices) for slices in SLO_SLICES.values())  # budget + burn rates each
    assert len(charts(slo_page)) == metrics["slice"].nunique() + 3 + 2 * pairs


def test_an_slo_run_without_evaluations_says_so(tmp_path, metrics):
    out = write_output(tmp_path / "out", metrics, dead=None, summary=SLO_SUMMARY)
    html_text = report.write_report(out, tmp_path / "r.html").read_text()
    assert SLO_HEADING in html_text and "No SLO evaluation yet" in html_text
    assert "No alert fired." in html_text
    assert len(charts(html_text)) == metrics["slice"].nunique() + 3


def test_rmse_charts_shade_the_error_slos_firing_periods(slo_page):
    """Per slice, the firing periods of its rmse/error_rate alerts (label-freshness
    fires for region=eu too, but only on its SLO charts)."""
    rmse = {caption: chart for caption, chart in figures(slo_page) if ":" not in caption}
    for name, chart in rmse.items():
        expected = expected_periods(lambda a, n=name: a.startswith("forecast-rmse/") and
                                    a.endswith(f"/{n}"))  # fmt: skip
        assert periods(shaded(chart)) == expected, name
    assert len(shaded(rmse[DRIFTED])) == 3 and shaded(rmse["region=eu"]) == []


def test_rmse_shading_covers_the_windows_ending_in_a_firing_period(slo_page):
    """x is the window start: a period from frontier F to G shades the points of the
    windows ending at F to G, i.e. starting at F - 1h to G - 1h (1 h windows); a period
    still firing runs to the right edge."""
    chart = dict(figures(slo_page))[DRIFTED]
    found = re.findall(r'<circle [^>]*cx="([\d.]+)"[^>]*><title>[^<]*, window ([^<]*) UTC:', chart)
    points = {pd.Timestamp(start, tz="UTC"): float(cx) for cx, start in found}
    assert len(points) == 5
    hour = pd.Timedelta(hours=1)
    for rect in shaded(chart):
        left, right = float(rect["x"]), float(rect["x"]) + float(rect["width"])
        start = pd.Timestamp(rect["data-from"])
        assert left == pytest.approx(points[start - hour], abs=0.11)
        end = points[pd.Timestamp(rect["data-to"]) - hour] if rect["data-to"] else WIDTH - RIGHT
        assert right == pytest.approx(end, abs=0.11)


def test_slo_charts_shade_every_alert_of_their_slo_and_slice(slo_page):
    """x is the label frontier: the five frontiers (22:00 .. 02:00) span the plot from
    LEFT to WIDTH - RIGHT, 122 px an hour; a period still firing runs to the right edge."""
    first, hour_px = pd.Timestamp(FIRING_PERIODS[0][1]), (WIDTH - RIGHT - LEFT) / 4
    for slo in SLO_SLICES:
        for name, (budget, burn) in slo_figures(slo_page, slo).items():
            expected = expected_periods(lambda a, s=slo, n=name: a == f"{s}/page/{n}" or
                                        a == f"{s}/ticket/{n}")  # fmt: skip
            assert periods(shaded(budget)) == periods(shaded(burn)) == expected, (slo, name)
            for rect in shaded(budget):
                hours = (pd.Timestamp(rect["data-from"]) - first) / pd.Timedelta(hours=1)
                assert float(rect["x"]) == pytest.approx(LEFT + hours * hour_px, abs=0.11)
                end = pd.Timestamp(rect["data-to"] or FIRING_PERIODS[0][1] + pd.Timedelta("4h"))
                hours = (end - first) / pd.Timedelta(hours=1)
                right = float(rect["x"]) + float(rect["width"])
                assert right == pytest.approx(LEFT + hours * hour_px, abs=0.11)
    assert set(slo_figures(slo_page, "label-freshness")) == {"region=eu"}


def test_slo_slices_are_overall_first_then_least_budget_left(slo_page):
    # latest budget left: overall 60 %, region=eu 60 %, the drifted slice -300 %
    assert list(slo_figures(slo_page, "forecast-rmse")) == ["overall", DRIFTED, "region=eu"]
    captions = [c for c, _ in figures(slo_page) if c.startswith(f"{DRIFTED}: error budget")]
    firing = '<b class="bad">firing</b>'
    assert captions == [f"{DRIFTED}: error budget left (-300.0%; page {firing}, ticket {firing})"]


def test_budget_line_is_the_latest_evaluation_clipped_at_minus_100_percent(slo_page):
    """Budget left 100 %, 50 %, -50 % (an earlier evaluation said 25 %), -200 %, -300 %
    on an axis from -100 % (y 184) to 100 % (y 10): y = 10 + 174 * (1 - v) / 2, and
    values under -100 % at the floor."""
    budget, _ = slo_figures(slo_page, "forecast-rmse")[DRIFTED]
    assert path_ys(budget, "#1f77b4") == [10.0, 53.5, 140.5, 184.0, 184.0]
    assert ">-100%</text>" in budget and ">100%</text>" in budget and "budget spent" in budget


def test_burn_rates_are_log_scaled_with_the_alert_conditions(slo_page):
    """Lookbacks 5m (all 0), 30m (all NaN), 1h (100), 6h (2.5 i), 3d on a log axis from
    0.1 (y 184) to 100 (y 10): y = 10 + 174 * (1 - log10(v / 0.1) / 3); 0 at the floor."""
    _, burn = slo_figures(slo_page, "forecast-rmse")[DRIFTED]
    six_hours = np.array([2.5, 5.0, 7.5, 10.0])
    expected = [184.0, *np.round(10 + 174 * (1 - np.log10(six_hours / 0.1) / 3), 1)]
    assert path_ys(burn, "#9467bd") == pytest.approx(expected, abs=0.051)
    assert set(path_ys(burn, "#1f77b4")) == {184.0} and set(path_ys(burn, "#2ca02c")) == {10.0}
    assert not re.search(r'<path d="[^"]*" fill="none" stroke="#d62728"', burn)  # 30m: NaN
    refs = re.findall(rf'<text x="{WIDTH - RIGHT - 3}"[^>]*>([^<]*)</text>', burn)
    assert refs == ["page 14.4x (1h/5m)", "page 6x (6h/30m)", "ticket 1x (3d/6h)"]
    for tick in ("0.1", "1", "10", "100"):
        assert f">{tick}</text>" in burn
    caption = next(c for c, _ in figures(slo_page) if c.startswith(f"{DRIFTED}: burn rate"))
    assert [k for k in ("5m", "30m", "1h", "6h", "3d") if f"</span>{k} " in caption] == [
        "5m", "30m", "1h", "6h", "3d"
    ]  # fmt: skip


def test_alert_conditions_without_summary_are_those_that_fired(tmp_path, metrics):
    out = write_output(tmp_path / "out", metrics, dead=None, summary=None)
    write_slo_tables(out, synthetic_alerts(), synthetic_slo_status())
    html_text = report.write_report(out, tmp_path / "r.html").read_text()
    assert SLO_HEADING in html_text
    for slo, refs in (("forecast-rmse", ["page 14.4x (1h/5m)", "ticket 1x (3d/6h)"]),
                      ("label-freshness", ["page 14.4x (1h/5m)"])):  # fmt: skip
        for _, burn in slo_figures(html_text, slo).values():
            assert re.findall(rf'<text x="{WIDTH - RIGHT - 3}"[^>]*>([^<]*)</text>', burn) == refs


def transition_rows(html_text: str) -> list[list[str]]:
    table = html_text.split("<h3>Alert transitions</h3>")[1].split("</table>")[0]
    rows = re.findall(r"<tr>(<td>.*?)</tr>", table)
    return [[re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td>(.*?)</td>", r)] for r in rows]


def test_alert_transitions_are_listed_in_frontier_order(slo_page):
    expected = sorted(
        [(start, alert, "firing") for alert, start, _ in FIRING_PERIODS]
        + [(end, alert, "resolved") for alert, _, end in FIRING_PERIODS if end is not None]
    )
    rows = transition_rows(slo_page)
    assert [tuple(r[:3]) for r in rows] == [
        (t.strftime("%Y-%m-%d %H:%M"), alert, state) for t, alert, state in expected
    ]
    assert rows[0][3] == f"{expected[0][1]} firing: RMSE &gt; 3 &amp; rising &lt;fast&gt;"
    assert "<fast>" not in slo_page and "watermark (UTC)" not in slo_page


def test_streaming_transitions_show_their_watermark(tmp_path, metrics):
    alerts = synthetic_alerts()
    alerts["watermark"] = alerts["frontier"] + pd.Timedelta(hours=2)
    out = write_output(tmp_path / "out", metrics, dead=None, summary=SLO_SUMMARY)
    write_slo_tables(out, alerts, synthetic_slo_status())
    html_text = report.write_report(out, tmp_path / "r.html").read_text()
    assert "<th>watermark (UTC)</th>" in html_text
    first = transition_rows(html_text)[0]
    assert first[0] == "2024-03-01 22:00" and first[3] == "2024-03-02 00:00"  # frontier + 2 h


def test_slo_slices_are_capped(tmp_path, metrics):
    status = synthetic_slo_status()
    one = status[(status["slo"] == "forecast-rmse") & (status["slice"] == "overall")]
    many = pd.concat([one] + [one.assign(slice=f"sku={i:02d}") for i in range(14)])
    out = write_output(tmp_path / "out", metrics, dead=None, summary=SLO_SUMMARY)
    write_slo_tables(out, synthetic_alerts(), many)
    html_text = report.write_report(out, tmp_path / "r.html").read_text()
    assert len(slo_figures(html_text, "forecast-rmse")) == report.MAX_SLICE_CHARTS
    assert "3 more slices: <code>msewatch slo status OUTPUT</code>" in html_text


def test_no_nan_reaches_the_slo_charts(slo_page):
    numbers = re.findall(r'\b(?:d|cx|cy|x|y|x1|x2|y1|y2|width)="([^"]*)"', slo_page)
    assert numbers and not any(re.search(r"nan|inf", n, flags=re.I) for n in numbers)


# --- files that are not the table's, a write that fails --------------------------------


def test_a_foreign_parquet_file_is_one_line_naming_it(tmp_path, metrics, capsys):
    # before: a TypeError traceback (the foreign file's rows read as NULLs)
    out = write_output(tmp_path / "out", metrics, synthetic_dead_letter())
    foreign = out / "metrics" / "window_date=2024-03-01" / "notes.parquet"
    pq.write_table(pa.table({"note": ["mine"]}), foreign)
    assert _run([str(out), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert str(foreign) in err and not (tmp_path / "r.html").exists()


def test_a_full_disk_keeps_the_previous_report_and_names_the_path(
    tmp_path, metrics, capsys, monkeypatch
):
    # before: a 0-byte report.html and an error without the path
    out = write_output(tmp_path / "out", metrics, synthetic_dead_letter())
    target = tmp_path / "r.html"
    target.write_text("the previous report")
    written = pathlib.Path.write_text

    def half_then_full(self, text, *args, **kwargs):
        written(self, text[:100], *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_text", half_then_full)
    assert cli.main(["report", str(out), "--out", str(target)]) == 2
    monkeypatch.undo()
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [f"msewatch: error: {target}: no space left on device; check the path"]
    assert target.read_text() == "the previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "r.html"]  # no temporary file
