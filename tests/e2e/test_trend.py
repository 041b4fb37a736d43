"""The RMSE trend per slice (msewatch/commands/trend.py), in ``slo status`` and the report.

The expected trends are ``scipy.stats.theilslopes`` over windows read back with pandas
from the Parquet files (latest pane, the label gate and the last k windows done in
pandas), independently of the SQL.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.stats import theilslopes

from msewatch import cli
from msewatch.commands import query as q
from msewatch.commands.trend import slice_trends
from msewatch.schemas import records

T0 = pd.Timestamp("2024-03-01 20:00", tz="UTC")
H = pd.Timedelta(hours=1)


def write_metrics(out, frame: pd.DataFrame) -> None:
    """``frame``'s columns as metrics Parquet files (one per date and pane); every other
    column null, or empty/zero where the schema forbids null."""

    def column(f, part):
        if f.name in part:
            values = part[f.name]
            values = values.tolist() if pa.types.is_floating(f.type) else values.astype(object)
            return pa.array(list(values), f.type)
        if f.nullable:
            return pa.nulls(len(part), f.type)
        blank = [] if pa.types.is_list(f.type) else "" if pa.types.is_string(f.type) else 0
        return pa.array([blank] * len(part), f.type)

    dates = frame["window_start"].dt.strftime("%Y-%m-%d")
    for (date, pane), part in frame.groupby([dates, frame["pane_index"]]):
        folder = out / "metrics" / f"window_date={date}"
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.table([column(f, part) for f in records.METRICS], schema=records.METRICS)
        pq.write_table(table, folder / f"pane-{pane}.parquet")


def metrics(rng: np.random.Generator) -> pd.DataFrame:
    """40 hourly windows of 4 slices, 1-3 panes each (the last has the final numbers):
    overall rises 2/day with noise, region=eu is flat, region=us has 2 settled windows,
    model_version=v2 none; some windows of each slice fail the label gate."""
    rows = []
    for w in range(40):
        start = T0 + w * H
        for s, rise in (("overall", 2.0), ("region=eu", 0.0), ("region=us", 0.0)):
            panes = 1 + (w % 3)
            for pane in range(panes):
                final = pane == panes - 1
                rmse = 10 + rise * w / 24 + rng.normal(0, 0.5) + (0 if final else 50)
                coverage = 0.5 if not final else [1.0, 0.79, 0.8, 0.9][w % 4]
                scored = 100 if w % 7 else 29  # every 7th window scores too few
                if s == "region=us":
                    scored = 100 if w in (3, 9) else 5
                if s == "region=eu" and w == 12:
                    rmse = math.nan  # no value: never settled
                rows.append(_row(start, s, pane, rmse, coverage, scored, final and w % 8 == 1))
        rows.append(_row(start, "model_version=v2", 0, 10.0, 0.1, 100, False))
    return pd.DataFrame(rows)


def _row(start, slice_name, pane, rmse, coverage, scored, complete) -> dict:
    return {
        "window_start": start,
        "window_end": start + H,
        "slice": slice_name,
        "rmse": rmse,
        "label_coverage": coverage,
        "scored": scored,
        "complete": complete,
        "pane_index": pane,
        "pane_timing": "EARLY",
        "emitted_at": start + 2 * H + pane * pd.Timedelta(minutes=1),
    }


def reference(out, k: int) -> dict[str, tuple]:
    """Per slice: (slope, low, high, windows) from pandas + scipy."""
    frame = pd.concat(pd.read_parquet(f) for f in sorted(out.glob("metrics/*/*.parquet")))
    latest = (
        frame.sort_values(["pane_index", "emitted_at"])
        .groupby(["window_start", "window_end", "slice"], as_index=False)
        .tail(1)
    )
    gate = (latest["complete"] | (latest["label_coverage"] >= 0.8)) & (latest["scored"] >= 30)
    settled = latest[gate & np.isfinite(latest["rmse"])].sort_values("window_end")
    out = {}
    for s in latest["slice"].unique():
        part = settled[settled["slice"] == s].tail(k)
        x = (part["window_end"] - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(days=1)
        if len(part) >= 3:
            r = theilslopes(part["rmse"].to_numpy(), x.to_numpy(), 0.95)
            out[s] = (r.slope, r.low_slope, r.high_slope, len(part))
        else:
            out[s] = (math.nan, math.nan, math.nan, len(part))
    return out


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    out = tmp_path_factory.mktemp("trend")
    write_metrics(out, metrics(np.random.default_rng(5)))
    return out


@pytest.mark.parametrize("k", [3, 10, 24, 100])
def test_the_trend_of_every_slice_is_scipys_theilslopes_over_its_last_k_settled_windows(output, k):
    trends = slice_trends(output, k)
    expected = reference(output, k)
    assert list(trends["slice"]) == ["overall", "model_version=v2", "region=eu", "region=us"]
    for r in trends.itertuples():
        slope, low, high, windows = expected[r.slice]
        assert r.windows == windows
        np.testing.assert_allclose((r.slope_per_day, r.low, r.high), (slope, low, high), 1e-9)


def test_slices_without_three_settled_windows_have_no_slope(output):
    trends = slice_trends(output).set_index("slice")
    assert trends.loc["region=us", "windows"] == 2 and math.isnan(trends.loc["region=us", "low"])
    assert trends.loc["model_version=v2", "windows"] == 0
    assert pd.isna(trends.loc["model_version=v2", "last_window_end"])


def test_one_slice_and_an_open_connection(output):
    con = q.connect(output)
    try:
        one = slice_trends(con, 24, "region=eu")
    finally:
        con.close()
    pd.testing.assert_frame_equal(one, slice_trends(output).iloc[[2]].reset_index(drop=True))


def test_a_series_rising_exactly_one_per_day(tmp_path):
    # RMSE 10 + d on day d (one window a day): every pairwise slope is 1, so is the median
    days = pd.DataFrame(
        [_row(T0 + d * pd.Timedelta(days=1), "overall", 0, 10.0 + d, 1.0, 100, True)
         for d in range(6)]
    )  # fmt: skip
    write_metrics(tmp_path, days)
    (r,) = slice_trends(tmp_path).itertuples()
    assert r.slope_per_day == pytest.approx(1.0, rel=1e-12)
    assert r.low <= 1.0 <= r.high and r.windows == 6
    assert r.last_window_end == T0 + pd.Timedelta(days=5) + H


@pytest.mark.parametrize("kw", [{"k": 2}, {"min_coverage": 1.5}, {"min_scored": 0}])
def test_arguments_out_of_range_are_refused(output, kw):
    with pytest.raises(ValueError):
        slice_trends(output, **kw)


def test_slo_status_prints_the_trend_of_each_slice(output, capsys):
    assert cli.main(["slo", "status", str(output), "--trend-windows", "10"]) == 0
    text = capsys.readouterr().out
    assert "over the last 10 settled windows" in text
    lines = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    expected = reference(output, 10)["overall"]
    assert f"{expected[0]:+.4g}" in lines["overall"]
    assert lines["region=us"].endswith("too few windows")


def test_slo_status_refuses_fewer_than_three_trend_windows(output, capsys):
    assert cli.main(["slo", "status", str(output), "--trend-windows", "2"]) == 2
    assert capsys.readouterr().err == "msewatch: error: --trend-windows must be >= 3\n"


def test_the_report_shows_the_trend_per_slice(output, tmp_path):
    path = tmp_path / "r.html"
    assert cli.main(["report", str(output), "--out", str(path)]) == 0
    html = path.read_text()
    section = html.split("<h3>RMSE trend per slice</h3>")[1].split("</table>")[0]
    slope = reference(output, 24)["overall"][0]
    assert f"<tr><td>overall</td><td>{slope:.4g}</td>" in section
