"""``msewatch serve``'s collector on a tiny output folder written here with pyarrow.

Every expected number is computed from the same rows with pandas (the latest pane,
the label gate, the newest settled window), ``scipy.stats.theilslopes`` (the trend) or
the firing periods the synthetic ``alerts`` table is built from, never read back from
the collector's own SQL.
"""

from __future__ import annotations

import math
import socket

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prometheus_client import CollectorRegistry
from scipy.stats import theilslopes

from msewatch import cli
from msewatch.commands import serve, serve_windows
from msewatch.schemas import records
from msewatch.schemas.slo import COMPARISONS_FIELDS
from tests import synthetic_output as so
from tests.cli_cases import error_lines

T0 = pd.Timestamp("2024-03-01 22:00", tz="UTC")  # windows cross midnight UTC
H = pd.Timedelta(hours=1)
GATE_COVERAGE, GATE_SCORED = 0.8, 30  # the rmse SLO's label gate defaults (docs/slo.md)
COMPARED = ("overall", "region=eu")


def _metric_rows(rng: np.random.Generator) -> pd.DataFrame:
    """Six hourly windows of four slices, 1-2 panes each (pane 0 an EARLY guess of 50).

    overall: windows 0-4 settled, 5 provisional (coverage 0.5); its newest pane of
    window 4 is written twice (the later emitted_at wins). region=eu: window 4 scores
    29 and window 5 is empty (NaN), so window 3 is its newest settled one. region=us:
    only window 0, complete at coverage 0.1. model_version=v2: never settled.
    """
    rows = []
    for w in range(6):
        for s in ("overall", "region=eu", "region=us", "model_version=v2"):
            final = {
                "rmse": 1 + 0.2 * w + rng.uniform(0, 0.1),
                "mse": rng.uniform(1, 2),
                "mae": rng.uniform(0.5, 1),
                "mean_error": rng.normal(),
                "label_coverage": 0.5 if w == 5 else rng.uniform(0.8, 1),
                "label_lag_p50_s": rng.uniform(60, 600),
                "label_lag_p90_s": rng.uniform(60, 7200),
                "label_lag_p99_s": rng.uniform(7200, 9000),
                "nan_predictions": int(rng.integers(0, 5)),
                "nan_labels": int(rng.integers(0, 5)),
                "scored": 100,
                "complete": w < 3,
            }
            if s == "region=eu" and w == 4:
                final["scored"] = 29
            if s == "region=eu" and w == 5:
                final.update(rmse=math.nan, complete=True, label_coverage=1.0)
            if s == "region=us":
                final.update(label_coverage=0.1, complete=w == 0)
            if s == "model_version=v2":
                final.update(label_coverage=0.2, complete=False)
            early = dict(final, rmse=50.0, label_coverage=0.1, complete=False)
            for pane, values in enumerate((early, final) if w % 2 else (final,)):
                rows.append(_row(w, s, pane, values))
    last = next(
        r for r in reversed(rows) if r["slice"] == "overall" and r["window_start"] == T0 + 4 * H
    )
    rows.append(
        dict(last, rmse=last["rmse"] + 0.5, emitted_at=last["emitted_at"] + pd.Timedelta("1s"))
    )
    return pd.DataFrame(rows)  # fmt: skip


def _row(w: int, slice_name: str, pane: int, values: dict) -> dict:
    start = T0 + w * H
    return {
        "window_start": start,
        "window_end": start + H,
        "slice": slice_name,
        "pane_index": pane,
        "pane_timing": "EARLY" if pane == 0 and w % 2 else "ON_TIME",
        "emitted_at": start + 2 * H + pane * pd.Timedelta(minutes=1),
        **values,
    }


def write_metrics(out, frame: pd.DataFrame, name: str = "pane") -> None:
    """``frame``'s columns as metrics files (one per date and pane); other columns null,
    or empty where the schema forbids null."""

    def column(f, part):
        if f.name in part:
            values = part[f.name]
            values = values.tolist() if pa.types.is_floating(f.type) else values.astype(object)
            return pa.array(list(values), f.type)
        if f.nullable:
            return pa.nulls(len(part), f.type)
        return pa.array([[]] * len(part), f.type)  # the repeated (list) columns

    dates = frame["window_start"].dt.strftime("%Y-%m-%d")
    for (date, pane), part in frame.groupby([dates, frame["pane_index"]]):
        folder = out / "metrics" / f"window_date={date}"
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.table([column(f, part) for f in records.METRICS], schema=records.METRICS)
        pq.write_table(table, folder / f"{name}-{pane}.parquet")


def comparison_rows() -> pd.DataFrame:
    """Three evaluations of v2-rollout per compared slice; the last frontier of overall is
    written twice (the later emitted_at wins); region=eu ends in FAIL with a NaN p-value."""
    rows = []
    for i, frontier in enumerate(T0 + H * np.arange(1, 4)):
        for s in COMPARED:
            rows.append(dict(
                comparison="v2-rollout", slice=s, metric="mse", baseline="v1", candidate="v2",
                paired=s == "overall", frontier=frontier, watermark=None, windows=24,
                n_baseline=100 * (i + 1),
                n_candidate=90 * (i + 1), metric_baseline=1.0, metric_candidate=1.1,
                delta=0.1, ratio=1.1 + 0.01 * i, ci_low=-0.2 + 0.1 * i, ci_high=0.3 - 0.1 * i,
                margin=0.05, alpha=0.05, p_value=0.5 / (i + 1),
                decision="INCONCLUSIVE", emitted_at=frontier + H,
            ))  # fmt: skip
    rows[-1].update(decision="FAIL", p_value=math.nan, ci_low=0.08)
    redo = dict(rows[-2], decision="PASS", ci_high=0.01, emitted_at=rows[-2]["emitted_at"] + H)
    return pd.DataFrame([redo, *rows])  # newest first: readers must order them


def write_comparisons(out, frame: pd.DataFrame) -> None:
    schema = records.arrow_schema(COMPARISONS_FIELDS)
    (out / "comparisons").mkdir(parents=True, exist_ok=True)
    for i, part in enumerate((frame.iloc[:3], frame.iloc[3:])):
        table = so.to_arrow(part, schema)
        pq.write_table(table, out / "comparisons" / f"part-{i}.parquet")


@pytest.fixture
def output(tmp_path):
    """(OUTPUT, metrics rows): metrics, the synthetic SLO tables and comparisons."""
    out = tmp_path / "out"
    metrics = _metric_rows(np.random.default_rng(3))
    write_metrics(out, metrics)
    so.write_slo_tables(out, so.synthetic_alerts(), so.synthetic_slo_status())
    write_comparisons(out, comparison_rows())
    return out, metrics


def scrape(out, **kwargs) -> tuple[CollectorRegistry, list[str]]:
    log: list[str] = []
    registry = CollectorRegistry(auto_describe=False)
    registry.register(serve.TablesCollector(out, log=log.append, **kwargs))
    return registry, log


def settled(metrics: pd.DataFrame) -> pd.DataFrame:
    """pandas: latest pane per window and slice, kept when it passes the label gate."""
    latest = so.latest_panes(metrics)
    gate = (latest["complete"] | (latest["label_coverage"] >= GATE_COVERAGE)) & (
        latest["scored"] >= GATE_SCORED
    )
    return latest[gate & np.isfinite(latest["rmse"])].sort_values(["slice", "window_end"])


@pytest.mark.parametrize(
    ("metric", "column"),
    [(name, column) for name, column, _ in serve.SLICE_GAUGES if column != "window_end"],
)
def test_slice_gauges_are_the_newest_settled_window(output, metric, column):
    out, metrics = output
    newest = settled(metrics).groupby("slice").tail(1).set_index("slice")
    # by construction: overall's window 5 is provisional, region=eu's 4 and 5 fail the gate
    assert newest["window_start"].to_dict() == {
        "overall": T0 + 4 * H, "region=eu": T0 + 3 * H, "region=us": T0}  # fmt: skip
    registry, _ = scrape(out)
    for s, expected in newest[column].items():
        assert registry.get_sample_value(metric, {"slice": s}) == pytest.approx(expected, rel=1e-12)
    assert registry.get_sample_value(metric, {"slice": "model_version=v2"}) is None


def test_the_rewritten_pane_with_the_later_emitted_at_wins(output):
    out, metrics = output
    written = metrics[(metrics["slice"] == "overall") & (metrics["window_start"] == T0 + 4 * H)]
    registry, _ = scrape(out)
    assert (
        registry.get_sample_value("msewatch_rmse", {"slice": "overall"}) == written["rmse"].iloc[-1]
    )
    assert written["rmse"].iloc[-1] != written["rmse"].iloc[-2]  # fmt: skip


def test_window_end_is_a_unix_timestamp(output):
    registry, _ = scrape(output[0])
    end = registry.get_sample_value("msewatch_window_end_timestamp_seconds", {"slice": "region=eu"})
    assert end == (T0 + 4 * H).timestamp()  # window 3 ends at 02:00 UTC on March 2


def test_trend_is_theil_sen_per_second(output):
    out, metrics = output
    rows = settled(metrics)
    rows = rows[rows["slice"] == "overall"]
    days = (rows["window_end"] - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(days=1)
    slope, _, low, high = theilslopes(rows["rmse"], days)
    registry, _ = scrape(out)
    overall = {"slice": "overall"}
    got = {
        k: registry.get_sample_value(f"msewatch_rmse_trend_slope{k}_per_second", overall)
        for k in ("", "_low", "_high")
    }
    assert got == pytest.approx({"": slope / 86400, "_low": low / 86400, "_high": high / 86400})
    assert registry.get_sample_value("msewatch_rmse_trend_windows", {"slice": "overall"}) == 5
    # one settled window: windows 1, no slope (NaN is left out)
    assert registry.get_sample_value("msewatch_rmse_trend_windows", {"slice": "region=us"}) == 1
    assert registry.get_sample_value(
        "msewatch_rmse_trend_slope_per_second", {"slice": "region=us"}) is None  # fmt: skip


def test_slo_gauges_are_the_latest_evaluation(output):
    status = so.synthetic_slo_status().sort_values(["frontier", "emitted_at"])
    latest = status.groupby(["slo", "slice"]).tail(1)
    registry, _ = scrape(output[0])
    for r in latest.itertuples():
        labels = {"slo": r.slo, "slice": r.slice}
        got = registry.get_sample_value("msewatch_slo_error_budget_remaining_ratio", labels)
        assert got == r.budget_remaining
        for lookback_s, rate in zip(r.lookbacks_s, r.burn_rates, strict=True):
            lookback = {300: "5m", 1800: "30m", 3600: "1h", 21600: "6h", 259200: "3d"}[lookback_s]
            got = registry.get_sample_value(
                "msewatch_slo_burn_rate", {**labels, "lookback": lookback}
            )
            assert got == (None if math.isnan(rate) else rate)  # fmt: skip
        frontier = registry.get_sample_value("msewatch_slo_frontier_timestamp_seconds", labels)
        assert frontier == so.SLO_FRONTIERS[-1].timestamp()
        sli = {**labels, "sli": r.sli}
        value = registry.get_sample_value("msewatch_slo_sli_value", sli)
        assert value == (None if math.isnan(r.value) else r.value)
        assert registry.get_sample_value("msewatch_slo_threshold", sli) == r.threshold


def test_alert_state_follows_the_firing_periods(output):
    """Still firing at the last frontier: the periods without an end."""
    still = {alert for alert, _, end in so.FIRING_PERIODS if end is None}
    registry, _ = scrape(output[0])
    for slo, slices in so.SLO_SLICES.items():
        for s in slices:
            for severity in ("page", "ticket"):
                labels = {"slo": slo, "slice": s, "severity": severity}
                got = registry.get_sample_value("msewatch_slo_alert_firing", labels)
                assert got == float(f"{slo}/{severity}/{s}" in still), labels


def test_comparison_gauges_are_the_latest_row(output):
    rows = comparison_rows().sort_values(["frontier", "emitted_at"])
    latest = rows.groupby(["comparison", "slice"]).tail(1).set_index("slice")
    assert latest["decision"].to_dict() == {"overall": "PASS", "region=eu": "FAIL"}
    registry, _ = scrape(output[0])
    for s, r in latest.iterrows():
        labels = {"comparison": "v2-rollout", "slice": s}
        for d in serve.DECISIONS:
            got = registry.get_sample_value(
                "msewatch_comparison_decision", {**labels, "decision": d}
            )
            assert got == float(d == r.decision)  # fmt: skip
        for name, column, _ in serve.COMPARISON_GAUGES:
            value = r["ratio"] - 1 if column == "change" else r[column]
            if isinstance(value, pd.Timestamp):
                value = value.timestamp()
            expected = None if pd.isna(value) else float(value)
            assert registry.get_sample_value(name, labels) == expected, name
        for role in ("baseline", "candidate"):
            got = registry.get_sample_value(
                "msewatch_comparison_scored_predictions", {**labels, "role": role})  # fmt: skip
            assert got == r[f"n_{role}"]


def test_comparison_metrics_are_read_by_column_name():
    """A frame with only some columns: those metrics, not the others."""
    latest = comparison_rows().tail(2)[["decision", "slice", "comparison", "frontier"]]
    families = {f.name: f for f in serve.comparison_families(latest)}
    frontier = "msewatch_comparison_frontier_timestamp_seconds"
    assert sorted(families) == ["msewatch_comparison_decision", frontier]
    assert len(families["msewatch_comparison_decision"].samples) == 2 * len(serve.DECISIONS)


def test_no_comparisons_table_exposes_no_comparison_metric(output):
    out, _ = output
    for f in (out / "comparisons").iterdir():
        f.unlink()
    (out / "comparisons").rmdir()
    registry, _ = scrape(out)
    assert not [m.name for m in registry.collect() if m.name.startswith("msewatch_comparison")]
    assert registry.get_sample_value("msewatch_rmse", {"slice": "overall"}) is not None


def test_tables_are_re_read_only_when_their_files_change(output):
    out, metrics = output
    registry, _ = scrape(out)
    reads = {"result": "ok"}
    assert registry.get_sample_value("msewatch_serve_table_reads_total", reads) == 1
    assert registry.get_sample_value("msewatch_serve_table_reads_total", reads) == 1
    newer = metrics[metrics["slice"] == "region=eu"].tail(1)  # window 5, empty so far
    newer = newer.assign(rmse=7.0, pane_index=3, emitted_at=newer["emitted_at"] + H)
    write_metrics(out, newer, name="late")
    assert registry.get_sample_value("msewatch_rmse", {"slice": "region=eu"}) == 7.0
    assert registry.get_sample_value("msewatch_serve_table_reads_total", reads) == 2


def test_a_failed_read_keeps_the_last_answer(output):
    out, _ = output
    registry, log = scrape(out)
    before = registry.get_sample_value("msewatch_rmse", {"slice": "overall"})
    (out / "metrics" / "window_date=2024-03-02" / "broken.parquet").write_bytes(b"not parquet")
    assert registry.get_sample_value("msewatch_rmse", {"slice": "overall"}) == before
    errors = registry.get_sample_value("msewatch_serve_table_reads_total", {"result": "error"})
    assert errors == 1 and len(log) == 1 and "serving the last good read" in log[0]


def test_a_failed_read_names_the_folder_once(output):
    """Before: "cannot read the tables in OUT: cannot read the tables in OUT: ..."."""
    out, _ = output
    (out / "metrics" / "window_date=2024-03-02" / "broken.parquet").write_bytes(b"not parquet")
    registry, log = scrape(out)
    list(registry.collect())  # the first read
    (line,) = log
    assert line.startswith(f"msewatch serve: cannot read the tables in {out}: ")
    assert line.count("cannot read the tables") == 1, line


def test_slice_info_carries_each_slice_key_as_a_valid_label(output):
    """Slice keys that are not label names (``sku-category``), or that are serve's own
    label (a segment named ``slice``), are renamed as the alerts rename them; the
    original stays in the ``slice`` label. Keys here: model_version, region,
    sku-category, slice -> model_version, region, sku_category, slice_slice. Slices: the
    fixture's metrics, the SLO tables' model_version=v2,region=eu
    (tests/synthetic_output.py), and the two written here."""
    out, metrics = output
    eu = metrics[metrics["slice"] == "region=eu"]
    write_metrics(out, eu.assign(slice="region=eu,sku-category=books"), name="sku")
    write_metrics(out, eu.assign(slice="slice=a"), name="slice")
    registry, log = scrape(out)
    info = {
        tuple(sorted(s.labels.items()))
        for m in registry.collect()
        if m.name == "msewatch_slice_info"
        for s in m.samples
        if s.value == 1
    }
    assert info == {
        (("slice", "overall"),),
        (("model_version", "v2"), ("slice", "model_version=v2")),
        (("model_version", "v2"), ("region", "eu"), ("slice", "model_version=v2,region=eu")),
        (("region", "eu"), ("slice", "region=eu")),
        (("region", "us"), ("slice", "region=us")),
        (("region", "eu"), ("sku_category", "books"), ("slice", "region=eu,sku-category=books")),
        (("slice", "slice=a"), ("slice_slice", "a")),
    }
    assert log == []


def test_an_output_without_tables_yet_serves_only_the_read_counter(tmp_path):
    registry, log = scrape(tmp_path)
    assert [m.name for m in registry.collect()][:1] == ["msewatch_serve_table_reads"]
    assert registry.get_sample_value("msewatch_serve_table_reads_total", {"result": "ok"}) == 1


@pytest.mark.parametrize(
    ("text", "address"),
    [("127.0.0.1:9464", ("127.0.0.1", 9464)), ("localhost:0", ("localhost", 0)),
     ("[::1]:80", ("::1", 80)), ("0.0.0.0:65535", ("0.0.0.0", 65535))],
)  # fmt: skip
def test_listen_addresses(text, address):
    assert serve.parse_listen(text) == address


@pytest.mark.parametrize(
    "text", ["9464", "127.0.0.1", "127.0.0.1:65536", ":9464", "::1:80", "a:b", "127.0.0.1:9464\n"]
)
def test_bad_listen_addresses(text):
    with pytest.raises(Exception, match="use HOST:PORT"):
        serve.parse_listen(text)


def _cli_error(args, capsys) -> str:
    assert cli.main(args) == 2
    out, err = capsys.readouterr()
    lines = error_lines(err)
    assert out == "" and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("msewatch: error:")
    return lines[0]


def test_bad_listen_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MSEWATCH_DEBUG", raising=False)
    assert "bad address 'here'" in _cli_error(["serve", str(tmp_path), "--listen", "here"], capsys)


def test_missing_output_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MSEWATCH_DEBUG", raising=False)
    line = _cli_error(["serve", str(tmp_path / "nope")], capsys)
    assert "does not exist; pass the --output" in line


def test_an_output_that_is_a_file_is_one_line_saying_so(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MSEWATCH_DEBUG", raising=False)
    (tmp_path / "out").write_text("not a folder")
    line = _cli_error(["serve", str(tmp_path / "out")], capsys)
    assert "is a file, not a folder; pass the --output" in line  # before: "does not exist"


def test_port_in_use_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MSEWATCH_DEBUG", raising=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _cli_error(["serve", str(tmp_path), "--listen", f"127.0.0.1:{port}"], capsys)
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in line


# --- msewatch serve --recent-windows: one series per slice and window ------------------


def recent(metrics: pd.DataFrame, span: pd.Timedelta) -> pd.DataFrame:
    """pandas: the latest pane of each window ending in ``span`` before its slice's newest."""
    latest = so.latest_panes(metrics)
    latest["closed"] = (latest["pane_timing"] != "EARLY").astype(float)  # watermark passed
    newest = latest.groupby("slice")["window_end"].transform("max")
    return latest[latest["window_end"] > newest - span]


def test_recent_windows_are_off_by_default(output):
    registry, _ = scrape(output[0])
    assert not [m for m in registry.collect() if m.name.startswith("msewatch_recent_window_")]


@pytest.mark.parametrize(
    ("metric", "column"),
    [(name, column) for name, column, _ in serve_windows.GAUGES if "timestamp" not in name],
)
def test_recent_windows_are_each_windows_latest_pane(output, metric, column):
    out, metrics = output
    rows = recent(metrics, 2 * H)
    assert len(rows) == 4 * 2  # every slice has six windows: the two newest end in 2 h
    registry, _ = scrape(out, recent_windows_s=7200)
    for r in rows.itertuples():
        labels = {
            "slice": r.slice,
            "window": serve_windows.window_label(r.window_start, r.window_end),
        }
        got = registry.get_sample_value(metric, labels)
        expected = float(getattr(r, column, math.nan))  # sum_w: not in these rows (null)
        assert got == (None if math.isnan(expected) else expected), (metric, labels)


def test_a_window_whose_latest_pane_is_early_is_not_closed(tmp_path):
    """Window 5 (odd: an EARLY pane 0, then pane 1) without its pane 1 for overall."""
    metrics = _metric_rows(np.random.default_rng(3))
    drop = (metrics["slice"] == "overall") & (metrics["window_start"] == T0 + 5 * H)
    write_metrics(tmp_path, metrics[~(drop & (metrics["pane_index"] == 1))])
    registry, _ = scrape(tmp_path, recent_windows_s=7200)
    window = serve_windows.window_label(T0 + 5 * H, T0 + 6 * H)
    for s, closed in (("overall", 0.0), ("region=eu", 1.0)):
        labels = {"slice": s, "window": window}
        assert registry.get_sample_value(serve_windows.CLOSED, labels) == closed, s


def test_a_recent_window_is_labelled_by_its_bounds(output):
    registry, _ = scrape(output[0], recent_windows_s=3600)
    # window 5 of region=eu: T0 (22:00 March 1) + 5 h = 03:00 to 04:00 on March 2, UTC
    labels = {"slice": "region=eu", "window": "2024-03-02T03:00:00Z/2024-03-02T04:00:00Z"}
    start = registry.get_sample_value(serve_windows.START, labels)
    assert start == (T0 + 5 * H).timestamp()
    assert registry.get_sample_value(serve_windows.END, labels) == start + 3600


def test_recent_windows_carry_the_weight_beyond_each_error_threshold(tmp_path):
    metrics = _metric_rows(np.random.default_rng(3))
    metrics["error_exceedance"] = [
        [
            {"threshold": 100.0, "sum_w": 7.5, "count": 8},
            {"threshold": 0.25, "sum_w": w, "count": 1},
        ]
        for w in range(len(metrics))
    ]
    metrics["sum_w"] = 12.5
    write_metrics(tmp_path, metrics)
    registry, _ = scrape(tmp_path, recent_windows_s=3600)
    last = so.latest_panes(metrics).iloc[-1]
    labels = {"slice": last["slice"], "window": serve_windows.window_label(
        last["window_start"], last["window_end"])}  # fmt: skip
    assert registry.get_sample_value(serve_windows.SCORED_WEIGHT, labels) == 12.5
    bad = serve_windows.BAD_WEIGHT
    assert registry.get_sample_value(bad, {**labels, "threshold": "100.0"}) == 7.5
    assert (
        registry.get_sample_value(bad, {**labels, "threshold": "0.25"})
        == last["error_exceedance"][1]["sum_w"]
    )
