"""Tests of ``msewatch query``: the DuckDB views, the named queries, the CLI errors.

The tables are synthetic and written here with pyarrow in the exact output schema
(several windows over two UTC dates, five slices, accumulating panes, provisional
rows, an empty window, a re-written pane); every expected answer is computed from
the same rows with pandas, independently of the SQL.
"""

from __future__ import annotations

import argparse
import io
import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from msewatch import query as query_cli
from msewatch.schemas import queries, records

KEYS = ["window_start", "window_end", "slice"]
DRIFTED = "model_version=v2,region=eu"
SLICES = ("overall", "model_version=v1", "model_version=v2", "region=eu", DRIFTED)
T0 = pd.Timestamp("2024-03-01 21:00", tz="UTC")  # windows cross midnight UTC
WINDOWS = 5


def synthetic_metrics(seed: int = 7) -> pd.DataFrame:
    """Metrics rows: every (window, slice) has 1-3 accumulating panes.

    The last two windows' latest panes are provisional (complete = False); window 2 of
    region=eu is empty (rmse NaN); the drifted slice's error is four times the others;
    the last pane of (window 0, overall) is written twice (the later emitted_at wins).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for w in range(WINDOWS):
        start = T0 + pd.Timedelta(hours=w)
        for s in SLICES:
            panes = 1 + (w + len(s)) % 3
            for pane in range(panes):
                row = {}
                for f in records.METRICS_FIELDS:
                    if pa.types.is_int64(f.arrow_type):
                        row[f.name] = int(rng.integers(0, 50))
                    elif pa.types.is_float64(f.arrow_type):
                        row[f.name] = float(rng.uniform(0, 10))
                scale = 4.0 if s == DRIFTED else 1.0
                mse = float(rng.uniform(1, 2)) * scale**2 * (1 + 0.1 * pane)
                if s == "region=eu" and w == 2:
                    mse = math.nan
                latest = pane == panes - 1
                sum_w = 0.0 if math.isnan(mse) else float(rng.integers(5, 40))  # unit weights
                row.update(sum_w=sum_w, sum_w2=sum_w, sum_se=sum_w * np.nan_to_num(mse))
                row.update(sum_se2=row["sum_se"] * np.nan_to_num(mse) * rng.uniform(1.5, 3))
                row.update(
                    window_start=start,
                    window_end=start + pd.Timedelta(hours=1),
                    slice=s,
                    mse=mse,
                    rmse=math.sqrt(mse),
                    rmse_ci_low=math.sqrt(mse) * 0.9,
                    rmse_ci_high=math.sqrt(mse) * 1.1,
                    label_coverage=min(1.0, 0.3 * (pane + 1) + 0.1 * w),
                    pane_index=pane,
                    pane_timing=("EARLY", "ON_TIME", "LATE")[min(pane, 2)],
                    complete=latest and w < WINDOWS - 2,
                    emitted_at=start + pd.Timedelta(hours=2, minutes=pane),
                )
                rows.append(row)
    last = [r for r in rows if r["slice"] == "overall" and r["window_start"] == T0][-1]
    rows.append(dict(last, rmse=99.0, emitted_at=last["emitted_at"] + pd.Timedelta("1s")))
    return pd.DataFrame(rows)


def synthetic_dead_letter() -> pd.DataFrame:
    """Dead-letter rows over two sources and three reasons, with nulls."""
    rows = [
        ("p.jsonl", "prediction", "bad_number", "y_pred: 'x'", '{"y_pred": "x"}', 40),
        ("p.jsonl", "prediction", "bad_number", "y_pred: 'y'", '{"y_pred": "y"}', 10),
        ("p.jsonl", "prediction", "missing_field", "event_time", '{"prediction_id": "a"}', 7),
        ("l.jsonl", "label", "unparseable", None, "{not json", 3),
        ("l.jsonl", "label", "unparseable", "bad json", "{also not", None),
        ("l.jsonl", "label", "unparseable", "bad json", "{nope", 90),
    ]
    names = [f.name for f in records.DEAD_LETTER_FIELDS]  # message_id, attributes: None
    return pd.DataFrame([row + (None, None) for row in rows], columns=names)


PREDICTION_OUTCOMES = {"input": 120, "joined": 90, "expired": 20, "duplicate": 7, "invalid": 3}
LABEL_OUTCOMES = {"input": 100, "joined": 90, "late_label": 4, "orphan_label": 2}
LABEL_OUTCOMES |= {"duplicate": 1, "invalid": 3}
SUMMARY = {
    "outcomes": {"prediction": PREDICTION_OUTCOMES, "label": LABEL_OUTCOMES},
    "config": {"window": "1h", "label_ttl": "7d"},
}


def to_arrow(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """Column by column, so float NaN stays NaN (as the pipeline writes it), not null."""

    def values(field):
        column = frame[field.name]
        if pa.types.is_floating(field.type):
            return column.tolist()
        return column.astype(object).where(column.notna(), None).tolist()

    return pa.table([pa.array(values(f), f.type) for f in schema], schema=schema)


def write_output(out, metrics: pd.DataFrame, dead: pd.DataFrame | None, summary=SUMMARY):
    """Writes an OUTPUT folder in the pipeline's layout: one file per date and pane."""
    dates = metrics["window_start"].dt.strftime("%Y-%m-%d")
    for (date, pane), part in metrics.groupby([dates, metrics["pane_index"]]):
        folder = out / "metrics" / f"window_date={date}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(to_arrow(part, records.METRICS), folder / f"pane-{pane}.parquet")
    if dead is not None:
        (out / "dead_letter").mkdir(parents=True)
        for i, part in enumerate((dead.iloc[:3], dead.iloc[3:])):
            table = to_arrow(part, records.DEAD_LETTER)
            pq.write_table(table, out / "dead_letter" / f"part-{i}.parquet")
    if summary is not None:
        (out / "summary.json").write_text(json.dumps(summary))
    return out


def rmse_ci(w, w2, se, se2):
    """RMSE and its 95 % CI from weighted sums, as the metrics rows define them."""
    mse, n_eff = se / w, w * w / w2
    half = 1.959963984540054 * np.sqrt(np.maximum(se2 / w - mse * mse, 0) / (n_eff - 1))
    return np.sqrt(mse), np.sqrt(np.maximum(mse - half, 0)), np.sqrt(mse + half)


def pooled_worst(metrics: pd.DataFrame) -> pd.DataFrame:
    """The pandas reference of `worst`: the last day of complete, aligned windows."""
    done = latest_panes(metrics)
    done = done[done["complete"]]
    length = done["window_end"] - done["window_start"]
    end = done["window_end"].max()
    start = end - max(pd.Timedelta(hours=24), length.max())
    aligned = (done["window_start"] - pd.Timestamp(0, tz="UTC")) % length == pd.Timedelta(0)
    day = done[(done["window_start"] >= start) & (done["window_end"] <= end) & aligned]
    sums = day.groupby("slice")[["sum_w", "sum_w2", "sum_se", "sum_se2", "labeled"]].sum()
    sums["predictions"] = day.groupby("slice")["predictions"].sum()
    sums = sums[sums["sum_w"] > 0]
    rmse, low, high = rmse_ci(sums["sum_w"], sums["sum_w2"], sums["sum_se"], sums["sum_se2"])
    frame = pd.DataFrame({"rmse": rmse, "rmse_ci_low": low, "rmse_ci_high": high})
    frame["label_coverage"] = sums["labeled"] / sums["predictions"]
    last = done.sort_values("window_start").groupby("slice").tail(1)  # NaN if empty
    frame["latest_rmse"] = last.set_index("slice")["rmse"]
    return frame.reset_index().sort_values(["rmse", "slice"], ascending=[False, True])


def latest_panes(metrics: pd.DataFrame) -> pd.DataFrame:
    """The pandas reference of metrics_latest: max pane_index, then latest emitted_at."""
    ordered = metrics.sort_values(["pane_index", "emitted_at"])
    return ordered.groupby(KEYS, as_index=False).tail(1).reset_index(drop=True)


@pytest.fixture
def metrics():
    return synthetic_metrics()


@pytest.fixture
def output(tmp_path, metrics):
    return write_output(tmp_path / "out", metrics, synthetic_dead_letter())


def test_views_have_the_output_columns(output):
    metrics = query_cli.query(output, sql="SELECT * FROM metrics LIMIT 0")
    dead = query_cli.query(output, sql="SELECT * FROM dead_letter LIMIT 0")
    assert list(metrics.columns) == [f.name for f in records.METRICS_FIELDS]
    assert list(dead.columns) == [f.name for f in records.DEAD_LETTER_FIELDS]


def test_metrics_view_reads_every_file(output, metrics):
    got = query_cli.query(output, sql="SELECT count(*) AS n, max(pane_index) AS p FROM metrics")
    assert got.loc[0, "n"] == len(metrics)
    assert got.loc[0, "p"] == metrics["pane_index"].max()
    got = query_cli.query(output, sql="SELECT min(window_start) AS t FROM metrics")
    assert got.loc[0, "t"] == metrics["window_start"].min()
    assert str(got["t"].dt.tz) == "UTC"


def test_nan_metrics_survive_filters(output, metrics):
    """Parquet statistics leave NaN out; a filter must still find the empty windows."""
    got = query_cli.query(
        output,
        sql="SELECT count(*) FILTER (WHERE isnan(rmse)) AS nan, "
        "sum(rmse) FILTER (WHERE NOT isnan(rmse)) AS s, "
        "(SELECT count(*) FROM metrics WHERE rmse > 1e300) AS above FROM metrics",
    )
    assert got.loc[0, "nan"] == metrics["rmse"].isna().sum() > 0
    assert got.loc[0, "above"] == got.loc[0, "nan"]  # DuckDB orders NaN above every number
    assert got.loc[0, "s"] == pytest.approx(metrics["rmse"].sum())  # pandas skips NaN


def test_latest_is_the_last_pane_newest_first(output, metrics):
    expected = latest_panes(metrics)
    expected = expected.assign(other=expected["slice"] != "overall").sort_values(
        ["window_start", "window_end", "other", "slice"], ascending=[False, False, True, True]
    )
    got = query_cli.query(output, "latest")
    assert list(got["slice"]) == list(expected["slice"])
    assert list(got["window_start"]) == list(expected["window_start"])
    assert list(got["pane_index"]) == list(expected["pane_index"])
    np.testing.assert_allclose(got["rmse"], expected["rmse"])
    assert list(got["complete"]) == list(expected["complete"])
    assert 99.0 in set(got["rmse"])  # the re-written pane won


def test_worst_ranks_slices_by_rmse_over_the_last_day(output, metrics):
    expected = pooled_worst(metrics)
    got = query_cli.query(output, "worst")
    assert list(got["slice"]) == list(expected["slice"])
    assert got.loc[0, "slice"] == DRIFTED
    for column in ("rmse", "rmse_ci_low", "rmse_ci_high", "label_coverage", "latest_rmse"):
        np.testing.assert_allclose(got[column], expected[column])
    assert set(got["windows"]) == {3}  # the complete windows 0, 1, 2


@pytest.mark.parametrize("slice_", ["overall", "region=eu", DRIFTED])
def test_trend_is_one_slice_oldest_first(output, metrics, slice_):
    expected = latest_panes(metrics)
    expected = expected[expected["slice"] == slice_].sort_values("window_start")
    got = query_cli.query(output, "trend", slice=slice_)
    assert list(got["window_start"]) == list(expected["window_start"])
    np.testing.assert_allclose(got["rmse"], expected["rmse"])  # NaN where empty
    assert list(got["complete"]) == list(expected["complete"])


def test_coverage_defaults_to_overall_newest_first(output, metrics):
    expected = latest_panes(metrics)
    expected = expected[expected["slice"] == "overall"].sort_values("window_start", ascending=False)
    got = query_cli.query(output, "coverage")
    assert list(got["window_start"]) == list(expected["window_start"])
    np.testing.assert_allclose(got["label_coverage"], expected["label_coverage"])
    np.testing.assert_allclose(got["label_lag_p90_s"], expected["label_lag_p90_s"])
    pending = expected["predictions"] - expected["labeled"] - expected["expired"]
    assert list(got["pending"]) == list(pending)


def test_dead_letter_counts_by_source_and_reason(output):
    dead = synthetic_dead_letter()
    keys = ["record_type", "source", "reason"]
    counts = dead.groupby(keys).size().rename("records").reset_index()
    ordered = dead.sort_values(["ingest_position", "raw_payload"], na_position="last")
    examples = ordered.groupby(keys, as_index=False).head(1)
    expected = counts.merge(examples, on=keys).sort_values(
        ["records", *keys], ascending=[False, True, True, True]
    )
    got = query_cli.query(output, "dead-letter")
    assert list(got["reason"]) == list(expected["reason"])
    assert list(got["records"]) == list(expected["records"])
    assert list(got["example_payload"]) == list(expected["raw_payload"])
    assert got.loc[0, "first_position"] == 3  # the label with no position comes last


def test_dead_letter_view_is_empty_without_files(tmp_path, metrics):
    out = write_output(tmp_path / "out", metrics, dead=None)
    got = query_cli.query(out, "dead-letter")
    assert got.empty
    assert query_cli.query(out, sql="SELECT count(*) AS n FROM dead_letter").loc[0, "n"] == 0


def test_limit_keeps_the_first_rows_in_order(output):
    everything = query_cli.query(output, "latest")
    got = query_cli.query(output, "latest", limit=3)
    pd.testing.assert_frame_equal(got, everything.head(3))


def test_query_params_match_the_sql():
    for name in queries.QUERY_NAMES:
        for dialect in queries.DIALECTS:
            used = queries.query_params(dialect, queries.load_query(dialect, name))
            assert used == queries.QUERY_PARAMS.get(name, ()), (dialect, name)


def test_bigquery_sql_names_the_dataset():
    for name in queries.QUERY_NAMES + queries.VIEW_NAMES:  # views: metrics_latest
        sql = queries.load_query("bigquery", name, dataset="proj.ds")
        assert "{dataset}" not in sql
        assert "`proj.ds." in sql
        assert "`proj.ds.metrics" in sql or "`proj.ds.dead_letter`" in sql


@pytest.mark.parametrize("name", queries.QUERY_NAMES)
def test_bigquery_sql_gives_the_same_answer(output, name):
    """The BigQuery text, translated by sqlglot to DuckDB, answers like the DuckDB text.

    This checks the BigQuery SQL's logic (QUALIFY, NULL order, IS_NAN, @params) on the
    same rows; it is not BigQuery itself.
    """
    sqlglot = pytest.importorskip("sqlglot")

    def to_duckdb(sql):
        return sqlglot.transpile(sql, read="bigquery", write="duckdb")[0]

    con = query_cli.connect(output)
    con.execute("CREATE SCHEMA ds")
    con.execute("CREATE VIEW ds.metrics AS SELECT * FROM main.metrics")
    con.execute("CREATE VIEW ds.dead_letter AS SELECT * FROM main.dead_letter")
    view = to_duckdb(queries.load_query("bigquery", "metrics_latest", dataset="ds"))
    con.execute(f"CREATE VIEW ds.metrics_latest AS {view}")
    params = {"slice": "region=eu"} if name in queries.QUERY_PARAMS else None
    bq = con.sql(to_duckdb(queries.load_query("bigquery", name, dataset="ds")), params=params)
    expected = query_cli.query(output, name, slice="region=eu")
    pd.testing.assert_frame_equal(bq.df(), expected, check_dtype=False)


def _run(argv):
    parser = argparse.ArgumentParser(prog="msewatch query")
    query_cli.add_arguments(parser)
    return query_cli.run(parser.parse_args(argv))


@pytest.mark.parametrize("fmt", ["csv", "json", "table"])
def test_cli_formats_print_the_rows(output, capsys, fmt):
    assert _run([str(output), "trend", "--slice", DRIFTED, "--format", fmt, "--limit", "4"]) == 0
    text, expected = capsys.readouterr().out, query_cli.query(output, "trend", slice=DRIFTED)
    if fmt == "table":
        assert (
            "(4 rows)" in text
            and text.count("EARLY") == (expected[:4].pane_timing == "EARLY").sum()
        )
        return
    got = pd.read_csv(io.StringIO(text)) if fmt == "csv" else pd.DataFrame(json.loads(text))
    np.testing.assert_allclose(got["rmse"], expected["rmse"][:4])  # NaN: empty in csv, null in json
    assert list(pd.to_datetime(got["window_start"], utc=True)) == list(expected["window_start"][:4])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{out}", "best"], "unknown query 'best'"),
        (["{out}", "--sql", "SELEC 1"], "syntax error"),
        (["{out}", "--sql", "SELECT * FROM nope"], "nope"),
        (["{out}"], "give a query name or --sql"),
        (["{out}", "latest", "--sql", "SELECT 1"], "give a query name or --sql"),
        (["{out}/missing", "latest"], "does not exist"),
        (["{empty}", "latest"], "no metrics table"),
        (["{damaged}", "latest"], "cannot read the tables"),
    ],
)
def test_cli_user_mistakes_are_one_line_exit_2(output, tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    damaged = tmp_path / "damaged" / "metrics" / "window_date=2024-03-01"
    damaged.mkdir(parents=True)
    (damaged / "part.parquet").write_bytes(b"PAR1 not really")
    argv = [
        a.format(out=output, empty=tmp_path / "empty", damaged=tmp_path / "damaged") for a in argv
    ]
    assert _run(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert message in err


def run_demo(base):
    """(OUTPUT, generator stats) of a small sample run through the real pipeline (bounded,
    DirectRunner), once per folder: both test modules' ``demo`` fixtures share it."""
    from msewatch import cli
    from msewatch import generate as sample

    out, inputs = base / "out", base / "sample"
    stats = sample.generate(str(inputs), predictions=3000, seed=11, days=2.0)
    if not (out / "summary.json").exists():
        argv = ["run", "--predictions", str(inputs / "predictions.jsonl"), "--labels"]
        argv += [str(inputs / "labels.jsonl"), "--output", str(out), "--quiet"]
        assert cli.main([*argv, "--slice", "region", "--slice", "model_version,region"]) == 0
    return out, stats


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    return run_demo(tmp_path_factory.getbasetemp() / "demo")


def read_table(out, table: str) -> pd.DataFrame:
    """A pipeline table read with pyarrow, independently of the DuckDB views."""
    files = sorted((out / table).rglob("*.parquet"))
    return pq.read_table(files).to_pandas() if files else pd.DataFrame()


@pytest.mark.slow
def test_demo_worst_names_the_drifted_segment_first(demo):
    out, stats = demo
    worst = query_cli.query(out, "worst")
    assert stats.drift_segment in worst.loc[0, "slice"].split(",")
    expected = pooled_worst(read_table(out, "metrics"))
    assert list(worst["slice"]) == list(expected["slice"])
    np.testing.assert_allclose(worst["rmse_ci_high"], expected["rmse_ci_high"], rtol=1e-9)


@pytest.mark.slow
def test_demo_rows_ci_is_the_formula_worst_pools(demo):
    """The pipeline's per-row CI equals rmse_ci on the row's own sums (worst's formula)."""
    rows = read_table(demo[0], "metrics")
    rows = rows[rows["sum_w"] ** 2 / rows["sum_w2"] > 1]
    rmse, low, high = rmse_ci(rows["sum_w"], rows["sum_w2"], rows["sum_se"], rows["sum_se2"])
    np.testing.assert_allclose(rmse, rows["rmse"], rtol=1e-9)
    np.testing.assert_allclose(low, rows["rmse_ci_low"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(high, rows["rmse_ci_high"], rtol=1e-6)


@pytest.mark.slow
def test_demo_latest_matches_pandas(demo):
    out, _ = demo
    expected = latest_panes(read_table(out, "metrics")).sort_values(KEYS, ignore_index=True)
    got = query_cli.query(out, sql="SELECT * FROM metrics_latest ORDER BY ALL")
    got = got.sort_values(KEYS, ignore_index=True)
    assert len(got) == len(expected) > 0
    pd.testing.assert_frame_equal(got, expected[got.columns], check_dtype=False)
    latest = query_cli.query(out, "latest")
    assert set(latest["slice"]) == set(expected["slice"])
    assert latest["window_start"].is_monotonic_decreasing


@pytest.mark.slow
@pytest.mark.parametrize("name", ["trend", "coverage"])
def test_demo_slice_queries_match_pandas(demo, name):
    out, stats = demo
    slice_ = stats.drift_segment  # e.g. region=apac
    rows = latest_panes(read_table(out, "metrics"))
    rows = rows[rows["slice"] == slice_].sort_values("window_start", ascending=name == "trend")
    got = query_cli.query(out, name, slice=slice_)
    assert list(got["window_start"]) == list(rows["window_start"]) and len(got) > 1
    for column in ("label_coverage", "rmse" if name == "trend" else "label_lag_p90_s"):
        np.testing.assert_allclose(got[column], rows[column])


@pytest.mark.slow
def test_demo_dead_letter_counts_match_pandas(demo):
    out, _ = demo
    dead = read_table(out, "dead_letter")
    got = query_cli.query(out, "dead-letter")
    assert got["records"].sum() == len(dead) > 0
    keys = ["record_type", "source", "reason"]
    assert got.set_index(keys)["records"].to_dict() == dead.groupby(keys).size().to_dict()
