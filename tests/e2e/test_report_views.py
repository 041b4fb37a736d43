"""Tests of ``msewatch report --view``: the executive, on-call and debug pages' content.

The numbers are checked against pandas computations on the synthetic rows
(``tests/synthetic_output.py``) and the truths they are built from (the firing periods,
the comparisons' last decisions), never against the pages' own code. The pages opened in
headless Chromium are tested in ``tests/integration/test_report_views_browser.py``.
"""

from __future__ import annotations

import html
import json
import pathlib
import re

import numpy as np
import pandas as pd
import pytest

from msewatch import cli
from msewatch.commands import report_views
from msewatch.transforms.metrics.sketch import ValueSketch
from tests.synthetic_output import (
    DRIFTED,
    FIRING_PERIODS,
    SLO_SUMMARY,
    latest_panes,
    pooled_worst,
    synthetic_alerts,
    synthetic_dead_letter,
    synthetic_slo_status,
    write_output,
    write_slo_tables,
)
from tests.unit.test_serve import comparison_rows, write_comparisons

ROOT = pathlib.Path(__file__).parent.parent.parent
# The overall slice's error counts, the same in every window: 40 scored pairs, 25 with
# |e| > 1 and 10 with |e| > 2, so the squared-error bands (0, 1], (1, 4], > 4 hold
# 40 - 25 = 15, 25 - 10 = 15 and 10 pairs.
EXCEEDANCE = [{"threshold": 1.0, "sum_w": 25.0, "count": 25},
              {"threshold": 2.0, "sum_w": 10.0, "count": 10}]  # fmt: skip
BANDS = ["15", "15", "10", "40"]
Y_PRED = np.arange(1.0, 101.0)  # its median (numpy's "lower" order statistic) is 50


def view_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """The synthetic rows, the overall slice with the error counts and y_pred above."""
    overall = metrics["slice"] == "overall"
    sketch = ValueSketch.from_values(Y_PRED).to_bytes()
    return metrics.assign(
        scored=metrics["scored"].where(~overall, 40),
        error_exceedance=[EXCEEDANCE if o else e
                          for o, e in zip(overall, metrics["error_exceedance"], strict=True)],
        y_pred_sketch=[sketch if o else s
                       for o, s in zip(overall, metrics["y_pred_sketch"], strict=True)],
    )  # fmt: skip


@pytest.fixture
def rows(metrics):
    return view_metrics(metrics)


@pytest.fixture
def views_out(tmp_path, rows):
    """An output with metrics, the SLO tables and comparisons; report written by the CLI."""
    out = write_output(tmp_path / "out", rows, synthetic_dead_letter(), summary=SLO_SUMMARY)
    write_slo_tables(out, synthetic_alerts(), synthetic_slo_status())
    write_comparisons(out, comparison_rows())
    return out


def write(out, tmp_path, *options) -> dict[str, str]:
    """Runs ``msewatch report``; {file name: text} of what it wrote."""
    assert cli.main(["report", str(out), "--out", str(tmp_path / "r.html"), *options]) == 0
    return {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("r*.html")}


def cells(page: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is ``first``, unescaped."""
    row = re.search(rf"<tr><td>{re.escape(html.escape(first))}</td>(.*?)</tr>", page)
    return [html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", row.group(1))]


def test_all_three_views_by_default_linked_from_the_report(tmp_path, views_out, capsys):
    pages = write(views_out, tmp_path)
    names = ["r.html", "r-executive.html", "r-oncall.html", "r-debug.html"]
    assert capsys.readouterr().out.split() == [str(tmp_path / n) for n in names]
    for name, text in pages.items():
        links = re.findall(r'href="([^"]*)"', text)
        assert sorted(links) == sorted(n for n in names if n != name), name
        assert "<script" not in text and not re.search(r"\bsrc=|url\(|@import", text)
        assert "default-src 'none'" in text


def test_view_picks_pages_and_the_links_follow(tmp_path, views_out, capsys):
    pages = write(views_out, tmp_path, "--view", "debug", "--view", "oncall")
    assert sorted(pages) == ["r-debug.html", "r-oncall.html", "r.html"]
    assert sorted(re.findall(r'href="([^"]*)"', pages["r.html"])) == ["r-debug.html",
                                                                       "r-oncall.html"]  # fmt: skip
    assert pages == write(views_out, tmp_path, "--view", "oncall,debug")


@pytest.mark.parametrize("bad", ["weekly", "oncall,", "executive,Debug"])
def test_a_bad_view_is_one_line_exit_2(tmp_path, views_out, capsys, bad):
    assert (
        cli.main(["report", str(views_out), "--out", str(tmp_path / "r.html"), "--view", bad]) == 2
    )
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "use executive, oncall or debug" in err
    assert not list(tmp_path.glob("*.html"))


def test_grafana_option_writes_the_committed_dashboard(tmp_path, views_out):
    write(views_out, tmp_path, "--view", "executive", "--grafana", str(tmp_path / "g.json"))
    committed = (ROOT / "docs" / "grafana" / "msewatch.json").read_text(encoding="utf-8")
    assert (tmp_path / "g.json").read_text(encoding="utf-8") == committed
    assert json.loads(committed)["title"] == "msewatch"


def test_executive_pools_rmse_per_model_version(tmp_path, views_out, rows):
    page = write(views_out, tmp_path, "--view", "executive")["r-executive.html"]
    latest = latest_panes(rows)
    for version in ("v1", "v2"):
        done = latest[(latest["slice"] == f"model_version={version}") & latest["complete"]]
        expected = np.sqrt(done["sum_se"].sum() / done["sum_w"].sum())  # hourly: all aligned
        thirty, ninety, *_ = cells(page, f"model_version={version}")
        assert float(thirty) == float(ninety) == pytest.approx(expected, rel=5e-4)


def test_executive_shows_each_slos_newest_budget(tmp_path, views_out):
    page = write(views_out, tmp_path, "--view", "executive")["r-executive.html"]
    status = synthetic_slo_status().sort_values(["frontier", "emitted_at"])
    newest = status.groupby(["slo", "slice"]).tail(1)
    table = page.split("SLOs: error budget left")[1]
    shown = re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>", table)
    assert sorted(shown) == sorted(
        (r.slo, html.escape(r.slice), f"{r.budget_remaining:.0%}") for r in newest.itertuples()
    )
    assert ("forecast-rmse", html.escape(DRIFTED), "-300%") in shown


def test_oncall_lists_the_worst_slices_and_what_fires_now(tmp_path, views_out, rows):
    page = write(views_out, tmp_path, "--view", "oncall")["r-oncall.html"]
    top = page.split("Top offending slices")[1].split("</table>")[0]
    listed = [html.unescape(s) for s in re.findall(r"<tr><td>([^<]*)</td>", top)]
    worst = pooled_worst(rows)
    assert listed == [s for s in worst["slice"] if s != "overall"][: report_views.MAX_ROWS]
    firing = page.split("Alerts firing now")[1].split("</table>")[0]
    found = re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>", firing)
    expected = {  # FIRING_PERIODS without an end: the drifted slice's page and ticket
        (alert, alert.split("/")[1], f"{start:%Y-%m-%d %H:%M}")
        for alert, start, end in FIRING_PERIODS
        if end is None
    }
    assert {(html.unescape(a), sev, since) for a, sev, since in found} == expected
    assert len(found) == 2


def test_oncall_shows_first_and_last_window_of_each_version(tmp_path, views_out, rows):
    page = write(views_out, tmp_path, "--view", "oncall")["r-oncall.html"]
    latest = latest_panes(rows)
    for version in ("v1", "v2"):
        mine = latest[(latest["slice"] == f"model_version={version}") & (latest["predictions"] > 0)]
        first, last, predictions = cells(
            page.split("Model-version changes")[1], f"model_version={version}"
        )
        assert first == f"{mine['window_start'].min():%Y-%m-%d %H:%M}"
        assert last == f"{mine['window_end'].max():%Y-%m-%d %H:%M}"
        assert int(predictions.replace(",", "")) == mine["predictions"].sum()


def test_oncall_has_every_overall_window_of_the_last_day(tmp_path, views_out, rows):
    page = write(views_out, tmp_path, "--view", "oncall")["r-oncall.html"]
    table = page.split("Overall slice, window by window")[1].split("</table>")[0]
    latest = latest_panes(rows)
    overall = latest[latest["slice"] == "overall"].sort_values("window_start", ascending=False)
    shown = re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td>", table)
    assert [t for t, _ in shown] == [f"{t:%Y-%m-%d %H:%M}" for t in overall["window_start"]]
    assert [float(v) for _, v in shown] == pytest.approx(overall["rmse"].to_list(), rel=5e-4)


def test_debug_histogram_counts_each_squared_error_band(tmp_path, views_out, rows):
    page = write(views_out, tmp_path, "--view", "debug")["r-debug.html"]
    table = page.split("Squared-error histogram per window")[1].split("</table>")[0]
    assert re.findall(r"<th>([^<]*)</th>", table) == [
        "window start (UTC)", "(0, 1]", "(1, 4]", "&gt; 4", "scored"]  # fmt: skip
    body = re.findall(r"<tr><td>[^<]*</td>((?:<td>[^<]*</td>)+)</tr>", table)
    windows = latest_panes(rows)["window_start"].nunique()
    assert [re.findall(r"<td>([^<]*)</td>", b) for b in body] == [BANDS] * windows


def test_debug_y_pred_median_is_the_sketched_values_median(tmp_path, views_out):
    page = write(views_out, tmp_path, "--view", "debug")["r-debug.html"]
    medians = re.findall(r"<title>y_pred median, window [^:]*:\d\d UTC: ([^<( ]*)", page)
    expected = np.quantile(Y_PRED, 0.5, method="lower")  # 50
    assert medians and all(float(m) == pytest.approx(expected, rel=0.005) for m in medians)


def test_debug_draws_each_comparison_with_its_latest_decision(tmp_path, views_out):
    page = write(views_out, tmp_path, "--view", "debug")["r-debug.html"]
    captions = re.findall(r"<figcaption>(v2-rollout, [^<]*)</figcaption>", page)
    # comparison_rows: overall's last frontier re-evaluated PASS; region=eu ends in FAIL
    assert [html.unescape(c) for c in captions] == [
        "v2-rollout, overall: v2 vs v1 (mse), latest PASS",
        "v2-rollout, region=eu: v2 vs v1 (mse), latest FAIL",
    ]
    margin = re.findall(r"margin ([+-]\d+%)", page)
    assert set(margin) == {"+5%"}  # comparison_rows' margin 0.05


def test_views_without_slo_or_comparisons_say_so(tmp_path, metrics):
    out = write_output(tmp_path / "out", metrics, None)
    pages = write(out, tmp_path)
    assert "No SLO file" in pages["r-executive.html"]
    assert "No comparisons table" in pages["r-debug.html"]
    assert "No histogram" not in pages["r-debug.html"]  # the synthetic rows have thresholds


def test_slice_names_with_markup_stay_text_in_every_view(tmp_path, rows):
    hostile = {"region=eu": "region=<img src=x onerror=alert(1)>",
               "model_version=v2": 'model_version=<b>v2</b>'}  # fmt: skip
    out = write_output(tmp_path / "out", rows.replace({"slice": hostile}), None)
    for name, text in write(out, tmp_path).items():
        assert "<img" not in text and "<b>v2" not in text, name
    oncall = write(out, tmp_path, "--view", "oncall")["r-oncall.html"]
    changes = oncall.split("Model-version changes")[1].split("</table>")[0]
    assert html.escape("model_version=<b>v2</b>") in changes  # a version, shown as text


def test_null_sketches_leave_the_distributions_empty(tmp_path, rows):
    """A window without a finite y_pred or y_true has null sketches (NA once read)."""
    out = write_output(tmp_path / "out", rows.assign(y_pred_sketch=None, y_true_sketch=None), None)
    page = write(out, tmp_path, "--view", "debug")["r-debug.html"]
    section = page.split("y_pred and y_true distributions")[1].split("<h2>")[0]
    assert "no data" in section and "Histograms, last 24 h" not in section
