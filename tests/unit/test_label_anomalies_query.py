"""``msewatch query OUT label_anomalies`` on a hand-built output folder: a metrics table
with the label columns (``label_range``, ``sum_abs_pred``, ``sum_abs_true``,
``y_true_min``, ``y_true_max``) and an outcomes table with conflicting duplicates. The
expected rows are derived by hand (comments). The DuckDB text run here is translated from
the BigQuery file, so this checks both; tests/integration/test_bigquery.py runs the
BigQuery text itself on the emulator."""

from __future__ import annotations

import datetime

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from msewatch.commands import query as query_cli
from msewatch.schemas import records

T0 = datetime.datetime(2026, 11, 2, tzinfo=datetime.UTC)
_RANGE = pa.struct([("low", pa.float64()), ("high", pa.float64()), ("outside", pa.int64())])
LABEL_FIELDS = (  # the columns docs/slo.md (label_anomaly) reads; schemas/records.py
    records.record_list(
        "label_range",
        "Per valid range: labeled pairs whose finite y_true is outside it.",
        (
            records.Field("low", pa.float64(), "FLOAT64", "", False),
            records.Field("high", pa.float64(), "FLOAT64", "", False),
            records.Field("outside", pa.int64(), "INT64", "", False),
        ),
    ),
    records.Field("sum_abs_pred", pa.float64(), "FLOAT64", ""),
    records.Field("sum_abs_true", pa.float64(), "FLOAT64", ""),
    records.Field("y_true_min", pa.float64(), "FLOAT64", ""),
    records.Field("y_true_max", pa.float64(), "FLOAT64", ""),
)


@pytest.fixture
def fields(monkeypatch):
    """METRICS_FIELDS with the label columns (until the metrics stage writes them)."""
    have = {f.name for f in records.METRICS_FIELDS}
    extra = tuple(f for f in LABEL_FIELDS if f.name not in have)
    monkeypatch.setattr(records, "METRICS_FIELDS", records.METRICS_FIELDS + extra)
    return records.METRICS_FIELDS


_ANY = {"string": "ON_TIME", "int64": 0, "double": 0.0, "bool": False}


def _row(fields, hour, slice_name="overall", pane=0, **values) -> dict:
    row = {f.name: None for f in fields}
    row.update(
        window_start=T0 + datetime.timedelta(hours=hour),
        window_end=T0 + datetime.timedelta(hours=hour + 1),
        slice=slice_name,
        pane_index=pane,
        emitted_at=T0,
        complete=True,
        labeled=100,
        nan_labels=0,
        scored=100,
        label_range=[],
        sum_abs_pred=500.0,
        sum_abs_true=450.0,
        y_true_min=1.0,
        y_true_max=9.0,
    )
    for f in fields:  # the columns the query does not read: any value of their type
        if f.repeated and row[f.name] is None:
            row[f.name] = []
        elif not f.nullable and row[f.name] is None:
            row[f.name] = _ANY.get(str(f.arrow_type), T0)
    row.update(values)
    return row


def _write(path, rows, fields):
    schema = records.arrow_schema(fields)
    folder = path / "metrics" / "window_date=2026-11-02"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / "part-0.parquet")
    outcomes = [
        ("label", "input", 1000, None),
        ("label", "duplicate", 6, None),
        ("label", "duplicate", 4, "conflicting"),
        ("label", "joined", 990, None),
    ]
    (path / "outcomes").mkdir()
    names = [f.name for f in records.OUTCOMES_FIELDS]
    table = pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in outcomes])
    pq.write_table(table.cast(records.OUTCOMES), path / "outcomes" / "part-0.parquet")


@pytest.fixture
def output(tmp_path, fields):
    ranges = lambda a, b: [  # noqa: E731
        {"low": 0.0, "high": 100.0, "outside": a},
        {"low": 2.0, "high": 8.0, "outside": b},
    ]
    rows = [
        # hour 0: clean (nothing outside, no NaN, 1 != 9, ratio 500 / 450 = 1.11)
        _row(fields, 0, label_range=ranges(0, 0)),
        # hour 1, pane 0 (superseded by pane 1: not shown): 50 outside [0, 100]
        _row(fields, 1, pane=0, label_range=ranges(50, 50)),
        # hour 1, pane 1: 3 outside [0, 100], 20 outside [2, 8], 5 NaN of 100 labeled
        _row(fields, 1, pane=1, label_range=ranges(3, 20), nan_labels=5, scored=95),
        # hour 2, region=eu: 40 labels, 4 NaN, 36 finite all 7.0: constant (36 >= 30)
        _row(
            fields,
            2,
            "region=eu",
            labeled=40,
            nan_labels=4,
            scored=36,
            y_true_min=7.0,
            y_true_max=7.0,
        ),  # fmt: skip
        # hour 2, region=us: 29 finite labels all 7.0: under 30, not constant
        _row(fields, 2, "region=us", labeled=29, scored=29, y_true_min=7.0, y_true_max=7.0),
        # hour 3: ratio 4800 / 400 = 12 > 10: scale
        _row(fields, 3, sum_abs_pred=4800.0, sum_abs_true=400.0),
        # hour 4: every |y_true| 0 with y_pred 3: ratio inf; also constant (100 labels of 0)
        _row(fields, 4, sum_abs_pred=300.0, sum_abs_true=0.0, y_true_min=0.0, y_true_max=0.0),
        # hour 5: ratio 40 / 450 = 0.089 < 0.1 but only 20 scored pairs: not judged
        _row(fields, 5, scored=20, sum_abs_pred=40.0),
    ]
    _write(tmp_path, rows, fields)
    return tmp_path


def h(hour):
    return pd.Timestamp(T0 + datetime.timedelta(hours=hour))


EXPECTED = [
    # window, slice, reason, value, anomalous, labeled, low, high
    (1, "overall", "non_finite", 5 / 100, 5, 100, None, None),
    (1, "overall", "out_of_range", 3 / 100, 3, 100, 0.0, 100.0),
    (1, "overall", "out_of_range", 20 / 100, 20, 100, 2.0, 8.0),
    (2, "region=eu", "constant", 7.0, None, 40, None, None),
    (2, "region=eu", "non_finite", 4 / 40, 4, 40, None, None),
    (3, "overall", "scale", 12.0, None, 100, None, None),
    (4, "overall", "constant", 0.0, None, 100, None, None),
    (4, "overall", "scale", float("inf"), None, 100, None, None),
    # the run: 4 conflicting duplicates of 1000 labels read
    (None, None, "conflicting_duplicate", 4 / 1000, 4, None, None, None),
]


def test_label_anomalies_lists_each_check_that_trips(output):
    got = query_cli.query(output, "label_anomalies")
    assert list(got.columns) == [
        "window_start",
        "window_end",
        "slice",
        "reason",
        "value",
        "anomalous",
        "labeled",
        "low",
        "high",
        "complete",
    ]
    rows = []
    for r in got.itertuples(index=False):
        start = None if pd.isna(r.window_start) else r.window_start
        nulls = [None if pd.isna(v) else v for v in (r.anomalous, r.labeled, r.low, r.high)]
        rows.append((start, None if pd.isna(r.slice) else r.slice, r.reason, r.value, *nulls))
    expected = [(None if e[0] is None else h(e[0]), *e[1:]) for e in EXPECTED]
    assert [r[:3] for r in rows] == [e[:3] for e in expected]
    assert [r[3] for r in rows] == pytest.approx([e[3] for e in expected], rel=1e-12)
    assert [r[4:] for r in rows] == [e[4:] for e in expected]
