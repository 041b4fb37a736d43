"""Tests of ``msewatch report``: the HTML's content and the command line.

Content is checked against pandas computations on the same synthetic rows the query
tests read (``tests/synthetic_output.py``). The page opened in a real browser
(headless Chromium) is tested in ``tests/integration/test_report_browser.py``.
"""

from __future__ import annotations

import argparse
import json
import re

import numpy as np
import pandas as pd
import pytest

from msewatch import report
from tests.synthetic_output import (
    SUMMARY,
    latest_panes,
    pooled_worst,
    synthetic_dead_letter,
    synthetic_metrics,
    write_output,
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
    assert capsys.readouterr().out.strip() == str(tmp_path / "sub" / "r.html")
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
