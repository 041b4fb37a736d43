"""A real Prometheus scrapes ``msewatch serve`` and answers with the tables' numbers.

The demo output (a small sample through the real pipeline) is copied, served by ``msewatch
serve`` in a subprocess and scraped every second by Prometheus (``tests/prometheus_server.py``);
the expected RMSE is read from the Parquet files with pyarrow and pandas (the latest pane, the
label gate and the newest settled window done in pandas), independently of the collector.
"""

from __future__ import annotations

import functools
import shutil
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from msewatch.schemas import records
from tests import synthetic_output as so
from tests.prometheus_server import instant_query, running_prometheus, running_serve

GATE_COVERAGE, GATE_SCORED = 0.8, 30  # the rmse SLO's label gate defaults (docs/slo.md)


@pytest.fixture(scope="module")
def scraped(demo, tmp_path_factory):
    """(OUTPUT, Prometheus URL): a copy of the demo output, served and scraped."""
    base = tmp_path_factory.mktemp("prometheus")
    out = shutil.copytree(demo[0], base / "out")
    with running_serve(out, base / "serve.log") as target:
        with running_prometheus(base, [target]) as url:
            yield out, url


def newest_settled(out) -> pd.DataFrame:
    """pandas: per slice, the latest pane of its newest window that passes the label gate."""
    latest = so.latest_panes(so.read_table(out, "metrics"))
    gate = (latest["complete"] | (latest["label_coverage"] >= GATE_COVERAGE)) & (
        latest["scored"] >= GATE_SCORED
    )
    rows = latest[gate & np.isfinite(latest["rmse"])]
    return rows.sort_values(["window_end", "window_start"]).groupby("slice").tail(1)


def _value(url: str, promql: str) -> float | None:
    result = instant_query(url, promql)
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


def test_prometheus_returns_the_tables_rmse(scraped):
    out, url = scraped
    newest = newest_settled(out).set_index("slice")
    worst = newest.drop("overall")["rmse"].idxmax()  # a region, or the drifted one
    for s in ("overall", worst):
        assert _value(url, f'msewatch_rmse{{slice="{s}"}}') == newest.loc[s, "rmse"], s
    served = instant_query(url, 'count by (job) (msewatch_rmse{job="msewatch"})')
    assert int(served[0]["value"][1]) == len(newest)


def later_pane(out, row: pd.Series, rmse: float) -> pa.Table:
    """The metrics row of ``row``'s window, slice and pane as its next pane, with ``rmse``."""
    files = sorted((out / "metrics").rglob("*.parquet"))
    table = pa.concat_tables(pq.read_table(f, schema=records.METRICS) for f in files)
    keys = ("slice", "window_end", "pane_index")
    masks = (pc.equal(table[k], pa.scalar(row[k], table.schema.field(k).type)) for k in keys)
    pane = table.filter(functools.reduce(pc.and_, masks)).slice(0, 1)
    for name, value in (("rmse", rmse), ("pane_index", row["pane_index"] + 1)):
        i = pane.schema.get_field_index(name)
        pane = pane.set_column(i, pane.schema.field(i), pa.array([value], pane.field(i).type))
    return pane


def test_prometheus_sees_a_new_pane(scraped):
    """A later pane of a region's newest settled window (RMSE 123.25) reaches Prometheus."""
    out, url = scraped
    newest = newest_settled(out)
    row = newest[newest["slice"].str.startswith("region=")].iloc[-1]
    folder = out / "metrics" / f"window_date={row['window_start']:%Y-%m-%d}"
    pq.write_table(later_pane(out, row, 123.25), folder / "late-pane.parquet")
    promql = f'msewatch_rmse{{slice="{row["slice"]}"}}'
    deadline = time.monotonic() + 30
    while _value(url, promql) != 123.25:
        assert time.monotonic() < deadline, f"{promql} is still {_value(url, promql)}"
        time.sleep(0.5)


def test_a_slice_key_that_is_not_a_label_name_reaches_prometheus_renamed(scraped):
    """A slice ``sku-category=books`` (RMSE 77.5): Prometheus would refuse the whole scrape
    for a label named ``sku-category``; it stores ``sku_category`` on msewatch_slice_info,
    and a PromQL join on ``slice`` gives the slice's RMSE by that label."""
    out, url = scraped
    row = newest_settled(out).iloc[-1]  # a settled window: its copy settles too
    pane = later_pane(out, row, 77.5)
    i = pane.schema.get_field_index("slice")
    pane = pane.set_column(i, pane.schema.field(i), pa.array(["sku-category=books"]))
    folder = out / "metrics" / f"window_date={row['window_start']:%Y-%m-%d}"
    pq.write_table(pane, folder / "sku-category.parquet")
    promql = (
        "msewatch_rmse * on (slice) group_left (sku_category) "
        'msewatch_slice_info{sku_category="books"}'
    )
    deadline = time.monotonic() + 30
    while _value(url, promql) != 77.5:
        assert time.monotonic() < deadline, f"{promql} is still {_value(url, promql)}"
        time.sleep(0.5)
