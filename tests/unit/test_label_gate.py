"""The label gate (a window is settled) is one rule: the SLO evaluator's columns and the
trend's SQL give the same answer (``transforms/slo/sli.py``)."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from msewatch.transforms.slo.sli import LABEL_GATE_SQL, label_gate

ROW = st.tuples(
    st.sampled_from([0.0, 0.5, 0.79, 0.8, 0.81, 1.0]),  # label_coverage, around the gate
    st.booleans(),  # complete
    st.integers(0, 60),  # scored
)


def in_sql(rows, min_coverage, min_scored) -> list[bool]:
    table = pa.table(
        {
            "label_coverage": [r[0] for r in rows],
            "complete": [r[1] for r in rows],
            "scored": [r[2] for r in rows],
        }
    )
    gate = LABEL_GATE_SQL.format(min_coverage=min_coverage, min_scored=min_scored)
    with duckdb.connect() as con:
        con.register("t", table)
        return [v for (v,) in con.execute(f"SELECT {gate} FROM t").fetchall()]


def in_columns(rows, min_coverage, min_scored) -> list[bool]:
    columns = {
        "label_coverage": np.array([r[0] for r in rows], float),
        "complete": np.array([r[1] for r in rows], bool),
        "scored": np.array([r[2] for r in rows], np.int64),
    }
    return label_gate(columns, min_coverage, min_scored).tolist()


def test_the_gate_by_hand():
    rows = [(0.8, False, 30), (0.79, True, 30), (0.79, False, 60), (1.0, True, 29)]
    # coverage at the gate counts; complete stands in for coverage; 29 < 30 scored fails
    expected = [True, True, False, False]
    assert in_columns(rows, 0.8, 30) == expected
    assert in_sql(rows, 0.8, 30) == expected


@settings(max_examples=50, deadline=None)  # a DuckDB connection per example: no time limit
@given(st.lists(ROW, min_size=1, max_size=30), st.sampled_from([0.0, 0.8, 1.0]), st.integers(1, 50))
def test_sql_and_columns_agree(rows, min_coverage, min_scored):
    assert in_sql(rows, min_coverage, min_scored) == in_columns(rows, min_coverage, min_scored)
