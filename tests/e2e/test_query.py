"""Tests of ``msewatch query``: the DuckDB views, the named queries, the CLI errors.

The tables are synthetic, written with pyarrow in the exact output schema by
``tests/synthetic_output.py`` (several windows over two UTC dates, five slices,
accumulating panes, provisional rows, an empty window, a re-written pane); every
expected answer is computed from the same rows with pandas, independently of the SQL.
"""

from __future__ import annotations

import argparse
import io
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from msewatch.commands import query as query_cli
from msewatch.commands import summary
from msewatch.schemas import queries, records
from tests.synthetic_output import (
    DRIFTED,
    KEYS,
    T0,
    latest_panes,
    pooled_worst,
    read_table,
    rmse_ci,
    synthetic_dead_letter,
    write_output,
)


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


@pytest.mark.parametrize("rewrite_first", [False, True], ids=["rewrite-after", "rewrite-first"])
def test_summary_and_latest_agree_when_a_pane_is_written_twice(tmp_path, metrics, rewrite_first):
    """Two rows of one window and slice tie on pane_index and differ on emitted_at: the
    later write wins, both in `msewatch query OUTPUT latest` and in the summary that
    `msewatch run` prints, wherever the rows sit in the file."""
    start = T0 + pd.Timedelta(hours=2)  # overall's latest complete window (3, 4 provisional)
    window = (metrics["slice"] == "overall") & (metrics["window_start"] == start)
    last = metrics[window].sort_values("pane_index").iloc[-1]
    assert last["complete"]
    rewrite = dict(last, rmse=77.0, emitted_at=last["emitted_at"] + pd.Timedelta("1s"))
    rows = metrics.to_dict("records")
    rows.insert(metrics.index.get_loc(last.name) + (0 if rewrite_first else 1), rewrite)
    out = write_output(tmp_path / "out", pd.DataFrame(rows), None)

    latest = query_cli.query(out, "latest")
    picked = latest[(latest["slice"] == "overall") & (latest["window_start"] == start)]
    assert picked["rmse"].tolist() == [77.0]
    printed = summary.latest_complete(str(out))
    assert printed[0][:3] == ("overall", start.to_pydatetime(), 77.0)
    assert "77.0000" in summary.render(str(out), {})
    # Every slice: the summary's row is the query's latest complete window.
    done = latest[latest["complete"]].sort_values("window_start").groupby("slice").tail(1)
    want = done.set_index("slice")
    assert sorted(s for s, *_ in printed) == sorted(want.index)
    for slice_, window_start, rmse, coverage, _, predictions in printed:
        assert window_start == want.loc[slice_, "window_start"]
        np.testing.assert_equal(
            (rmse, coverage, predictions),
            tuple(want.loc[slice_, ["rmse", "label_coverage", "predictions"]]),
        )


def test_summary_without_a_metrics_table_has_no_window(tmp_path):
    assert summary.latest_complete(str(tmp_path / "missing")) == []
    assert "(no complete window yet)" in summary.render(str(tmp_path), {})


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
        tables = ("metrics", "dead_letter`", "alerts`", "slo_status`", "comparisons`")
        assert any(f"`proj.ds.{t}" in sql for t in tables), name


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
    for name in ("y_pred_sketch", "y_true_sketch"):  # DuckDB: BLOB as bytearray, NULL as NA
        got[name] = [None if v is pd.NA else bytes(v) for v in got[name]]
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


def test_list_columns_read_back_as_lists_of_records(output, metrics):
    got = query_cli.query(
        output,
        sql="SELECT error_exceedance, labeled_within FROM metrics_latest "
        "ORDER BY window_start, slice",
    )
    want = latest_panes(metrics).sort_values(["window_start", "slice"])
    for column in ("error_exceedance", "labeled_within"):
        assert [[dict(r) for r in cell] for cell in got[column]] == list(want[column])
    total = query_cli.query(
        output,
        sql="SELECT sum(e.count) AS n FROM (SELECT unnest(error_exceedance) AS e FROM metrics)",
    )
    assert total.loc[0, "n"] == sum(
        r["count"] for cell in metrics["error_exceedance"] for r in cell
    )


def test_an_empty_source_has_the_types_of_the_files(output):
    con = query_cli.connect(output)
    try:
        files = con.sql("SELECT * FROM metrics LIMIT 0").types
        empty = con.sql(query_cli._empty_source(records.METRICS_FIELDS)).types
    finally:
        con.close()
    assert [str(t) for t in empty] == [str(t) for t in files]


# --- files that are not the table's, the SQL sandbox, terminal escapes -----------------


def _one_line_error(capsys) -> str:
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("folder", ["metrics/window_date=2024-03-01", "dead_letter"])
def test_a_foreign_parquet_file_in_a_table_is_refused_by_name(output, capsys, folder):
    # before: read as rows of NULLs (union_by_name), the query answered as if it were data
    foreign = output / folder / "notes.parquet"
    pq.write_table(pa.table({"note": ["mine"], "amount": [1.5]}), foreign)
    assert _run([str(output), "latest"]) == 2
    err = _one_line_error(capsys)
    assert str(foreign) in err and "not a file msewatch wrote" in err


def test_tables_of_an_older_msewatch_say_so_and_what_to_do(output, capsys):
    # a metrics file without the columns added later (rmsle, ...): before, "Referenced
    # column rmsle not found"
    path = sorted((output / "metrics").rglob("*.parquet"))[0]
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["rmsle", "rmsle_excluded"]), path)
    assert _run([str(output), "latest"]) == 2
    err = _one_line_error(capsys)
    assert f"{path} lacks the metrics columns rmsle, rmsle_excluded" in err
    assert "written by msewatch older than this one" in err and "rerun `msewatch run`" in err


@pytest.mark.parametrize(
    ("sql", "refused"),
    [
        ("SELECT * FROM read_csv('/etc/passwd')", "/etc/passwd"),
        ("SELECT * FROM read_text('{outside}')", "file system operations are disabled"),
        ("COPY (SELECT 1 AS a) TO '{target}'", "the COPY statement is refused"),
        ("COPY (SELECT 1 AS a) TO '{table_file}' (FORMAT parquet, USE_TMP_FILE false)", "COPY"),
        ("ATTACH '{target}' AS other", "the ATTACH statement is refused"),
        ("SET enable_external_access = true", "the SET statement is refused"),
        ("INSTALL httpfs", "statement is refused"),
        ("SELECT 1; COPY (SELECT 2) TO '{target}'", "the COPY statement is refused"),
    ],
)
def test_sql_reads_the_tables_and_nothing_else(output, metrics, tmp_path, capsys, sql, refused):
    (tmp_path / "outside.txt").write_text("a secret")
    table_file = sorted((output / "metrics").rglob("*.parquet"))[0]
    before = table_file.read_bytes()
    names = {"outside": tmp_path / "outside.txt", "target": tmp_path / "x.csv"}
    assert _run([str(output), "--sql", sql.format(table_file=table_file, **names)]) == 2
    err = _one_line_error(capsys)
    assert refused in err and "a secret" not in err
    assert not (tmp_path / "x.csv").exists() and table_file.read_bytes() == before
    assert _run([str(output), "--sql", "SELECT count(*) AS n FROM metrics", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["n", str(len(metrics))]  # still reads


def test_control_characters_in_values_are_shown_escaped(tmp_path, metrics, capsys):
    hostile = "eu\x1b[2J\x1b]8;;http://x\x07\u202e"  # clear screen, a hyperlink, RTL override
    metrics = metrics.assign(slice=metrics["slice"].replace({"region=eu": f"region={hostile}"}))
    out = write_output(tmp_path / "out", metrics, None)
    assert _run([str(out), "--sql", "SELECT DISTINCT slice FROM metrics ORDER BY slice"]) == 0
    text = capsys.readouterr().out
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "region=eu\\x1b[2J\\x1b]8;;http://x\\x07\\u202e" in text
    assert _run([str(out), "--sql", "SELECT DISTINCT slice FROM metrics", "--format", "json"]) == 0
    slices = [row["slice"] for row in json.loads(capsys.readouterr().out)]
    assert f"region={hostile}" in slices  # JSON carries the value as it is


def test_compare_lines_show_control_characters_escaped():
    from msewatch.commands import compare

    row = dict(comparison="v2\x1b[2J", slice="region=eu\x1b[31m", metric="mse", baseline="v1",
               candidate="v2", paired=True, frontier=T0,
               n_baseline=10, n_candidate=10, change=0.1, ci_low=0.05, ci_high=0.2,
               margin=0.05, alpha=0.05, p_value=0.01, decision="FAIL")  # fmt: skip
    lines = compare.render(pd.DataFrame([row]))
    assert not any("\x1b" in line for line in lines)
    assert lines[0].startswith("v2\\x1b[2J: v2 vs v1 in mse") and "region=eu\\x1b[31m" in lines[1]


def test_compare_refuses_a_foreign_file_in_the_comparisons_table(output, capsys):
    # before: read as rows of NULLs ("no comparison has been evaluated yet")
    from msewatch import cli

    (output / "comparisons").mkdir()
    foreign = output / "comparisons" / "part-0.parquet"
    pq.write_table(pa.table({"decision": ["PASS"]}), foreign)
    assert cli.main(["compare", str(output)]) == 2
    err = _one_line_error(capsys)
    assert err.startswith("msewatch compare: error: ") and str(foreign) in err
