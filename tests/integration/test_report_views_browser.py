"""``msewatch report --view``'s pages in headless Chromium.

Each view of the synthetic output (with SLO tables and comparisons) and of the demo
output is opened in Debian's ``chromium`` with the report's browser check
(``tests/integration/test_report_browser.py``): no console error, no request but the
page, every chart with data drawn in it (coloured pixels) and SVG marks (paths, bars,
points) in the DOM; the numbers the browser shows in the tables are compared with pandas
over the same rows. The pages' HTML is tested without a browser in
``tests/e2e/test_report_views.py``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from msewatch import cli
from msewatch.commands import report_views
from msewatch.commands.generate import CANARY_WORSE_REGION
from tests.e2e.test_report_views import BANDS, view_metrics
from tests.integration.test_report_browser import drawn_pixels, needs_chromium, render
from tests.synthetic_output import (
    SLO_SUMMARY,
    latest_panes,
    pooled_worst,
    read_table,
    synthetic_alerts,
    synthetic_dead_letter,
    synthetic_slo_status,
    write_output,
    write_slo_tables,
)
from tests.unit.test_serve import comparison_rows, write_comparisons

PAGE_JS = """JSON.stringify({
  tables: [...document.querySelectorAll('table')].map(t =>
      [...t.rows].map(r => [...r.cells].map(c => c.innerText.trim()))),
  marks: [...document.querySelectorAll('svg.chart')].map(
      e => e.querySelectorAll('path, circle, rect.share, rect[fill="#1f77b4"]').length),
  links: [...document.querySelectorAll('nav a')].map(a => a.getAttribute('href')),
  captions: [...document.querySelectorAll('figcaption')].map(c => c.innerText),
})"""
CHARTS = {"executive": 2, "oncall": 3, "debug": 6}  # synthetic output, see each view


def open_view(out, tmp_path, view: str) -> dict:
    """Writes every view, opens ``view``'s page; checks what every page must pass."""
    pytest.importorskip("PIL", reason="pillow is needed to read the screenshot")
    pytest.importorskip("websockets", reason="websockets is needed to drive chromium")
    assert cli.main(["report", str(out), "--out", str(tmp_path / "report.html")]) == 0
    path = report_views.view_path(tmp_path / "report.html", view)
    page = render(path, tmp_path / f"profile-{view}", PAGE_JS)
    assert page["errors"] == []
    assert page["requests"] == [path.resolve().as_uri()]
    counts = drawn_pixels(page["png"], page["boxes"])
    assert counts and min(counts) > 150, counts
    dom = json.loads(page["value"])
    assert min(dom["marks"]) > 0, dom["marks"]
    assert sorted(dom["links"]) == sorted(
        [f"report-{v}.html" for v in report_views.VIEWS if v != view] + ["report.html"]
    )
    return page | {"dom": dom}


def rows_of(dom: dict, first_header: str) -> list[list[str]]:
    """The body rows of the first table whose first header cell is ``first_header``."""
    table = next(t for t in dom["tables"] if t and t[0][0] == first_header)
    return table[1:]


@pytest.fixture
def synthetic(tmp_path, metrics):
    rows = view_metrics(metrics)
    out = write_output(tmp_path / "out", rows, synthetic_dead_letter(), summary=SLO_SUMMARY)
    write_slo_tables(out, synthetic_alerts(), synthetic_slo_status())
    write_comparisons(out, comparison_rows())
    return out, rows


def pooled_by_version(latest) -> dict[str, float]:
    """pandas: RMSE per model_version=V slice over its complete (hourly, aligned) windows."""
    done = latest[latest["complete"] & latest["slice"].str.fullmatch(r"model_version=[^,]+")]
    sums = done.groupby("slice")[["sum_se", "sum_w"]].sum()
    return dict(np.sqrt(sums["sum_se"] / sums["sum_w"]))


@needs_chromium
@pytest.mark.parametrize("view", report_views.VIEWS)
def test_each_view_renders_in_chromium(tmp_path, synthetic, view):
    out, rows = synthetic
    page = open_view(out, tmp_path, view)
    assert len(page["boxes"]) == CHARTS[view]
    dom = page["dom"]
    if view == "executive":
        shown = {r[0]: float(r[1]) for r in rows_of(dom, "model version")}
        assert shown == pytest.approx(pooled_by_version(latest_panes(rows)), rel=5e-4)
    elif view == "oncall":
        worst = [s for s in pooled_worst(rows)["slice"] if s != "overall"]
        assert [r[0] for r in rows_of(dom, "slice")] == worst[: report_views.MAX_ROWS]
    else:
        assert {tuple(r[1:]) for r in rows_of(dom, "window start (UTC)")} == {tuple(BANDS)}


@needs_chromium
@pytest.mark.slow
@pytest.mark.parametrize("view", report_views.VIEWS)
def test_each_view_of_the_demo_renders_in_chromium(tmp_path, make_demo, view):
    """The demo as ``make demo`` runs it (with its SLO file and the v2-rollout comparison)."""
    out, stats = make_demo
    dom = open_view(out, tmp_path, view)["dom"]
    latest = latest_panes(read_table(out, "metrics"))
    if view == "executive":
        shown = {r[0]: float(r[1]) for r in rows_of(dom, "model version")}
        assert shown == pytest.approx(pooled_by_version(latest), rel=5e-4)
    elif view == "oncall":  # the sample's drifted region tops the worst slices
        assert stats.drift_segment in rows_of(dom, "slice")[0][0]
        firing = [r[0] for r in rows_of(dom, "alert")]  # v2 is worse there: its FAIL pages
        assert f"v2-rollout/page/region={CANARY_WORSE_REGION}" in firing
    else:  # the sketches hold the finite y_pred of each prediction, y_true of each label
        overall = latest[latest["slice"] == "overall"]
        day = overall[overall["window_end"] > overall["window_end"].max() - pd.Timedelta("24h")]
        y_pred = int((day["predictions"] - day["nan_predictions"]).sum())
        y_true = int((day["labeled"] - day["nan_labels"]).sum())
        caption = next(c for c in dom["captions"] if c.startswith("Histograms, last 24 h"))
        assert f"y_pred: {y_pred:,} values, y_true: {y_true:,} values" in caption
        worse = f"v2-rollout, region={CANARY_WORSE_REGION}: v2 vs v1 (mse), latest FAIL"
        assert worse in dom["captions"]  # the sample's v2 is worse there, by construction
