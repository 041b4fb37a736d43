"""Many SLOs over one slice: evaluated from one copy of its rows, as each SLO alone.

Bounded runs key the metrics rows by slice (``transforms/slo/transform.py``), so the
grouping step receives each row once, whatever the number of SLOs (before: once per
SLO covering its slice, so 1,000 SLOs held 1,000 copies of the metrics). The
reference for the results is the per-SLO path: :func:`window_row` of each row for
that SLO, then ``evaluate_history`` of that SLO alone.
"""

from __future__ import annotations

import datetime
import math

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pipeline import PipelineVisitor
from apache_beam.testing.util import assert_that, equal_to

from msewatch.transforms.slo.kernel import evaluate_history
from msewatch.transforms.slo.spec import Slo, SloFile
from msewatch.transforms.slo.transform import EvaluateSlos, evaluate_slice, window_row

T0 = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)
NOW = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
SLICES = ("overall", "region=eu", "region=us")
HOURS = 30


def _slos() -> tuple[Slo, ...]:
    """24 SLOs of every SLI over overlapping slice patterns (overall, region=*, both)."""
    patterns = (("overall",), ("region=*",), ("overall", "region=*"))
    slos = []
    for i in range(24):
        kind = i % 6
        common = {"name": f"s{i}", "objective": 0.99, "slices": patterns[i % 3]}
        if kind in (0, 1):
            slos.append(Slo(sli="rmse", threshold=2.0 + i % 4, min_scored=5, **common))
        elif kind == 2:
            slos.append(Slo(sli="error_rate", threshold=(1.0, 2.0)[i % 2], min_scored=5, **common))
        elif kind == 3:
            slos.append(Slo(sli="label_freshness", threshold=0.5, within_s=3600, **common))
        elif kind == 4:
            slos.append(Slo(sli="nan_rate", threshold=0.1, **common))
        else:
            slos.append(
                Slo(sli="rmse_trend", threshold=0.0, trend_windows=3, min_scored=5, **common)
            )
    return tuple(slos)


def _rows() -> list[dict]:
    """Hourly windows of each slice, an EARLY pane (coverage 0.3) then the final one;
    values from a seeded generator, so some windows are bad for every SLI."""
    rng = np.random.default_rng(20)
    rows = []
    for name in SLICES:
        for h in range(HOURS):
            start = T0 + datetime.timedelta(hours=h)
            rmse = float(rng.uniform(0, 6))
            sum_w = float(rng.integers(10, 50))
            predictions = int(sum_w)
            for pane, coverage in enumerate((0.3, 1.0)):
                rows.append(
                    {
                        "window_start": start,
                        "window_end": start + datetime.timedelta(hours=1),
                        "slice": name,
                        "pane_index": pane,
                        "pane_timing": ("EARLY", "ON_TIME")[pane],
                        "label_coverage": coverage,
                        "complete": pane == 1,
                        "scored": int(sum_w * coverage),
                        "rmse": rmse,
                        "sum_w": sum_w * coverage,
                        "error_exceedance": [
                            {"threshold": t, "sum_w": float(rng.integers(0, 5))} for t in (1.0, 2.0)
                        ],
                        "labeled_within": [
                            {"within_s": 3600, "labeled": int(rng.integers(0, predictions))}
                        ],
                        "predictions": predictions,
                        "nan_predictions": int(rng.integers(0, 8)),
                    }
                )
    return rows


def _comparable(record) -> tuple:
    """A record (its type first) with NaN made equal to NaN."""
    values = (None if isinstance(v, float) and math.isnan(v) else v for v in record)
    return (type(record).__name__, *values)


def _normal(row: dict) -> tuple:
    """A table row, hashable, NaN made equal to NaN."""
    return tuple(
        (
            k,
            None
            if isinstance(v, float) and math.isnan(v)
            else tuple(v)
            if isinstance(v, list)
            else v,
        )
        for k, v in sorted(row.items())
    )


def _rows_alone(records) -> dict[str, list[tuple]]:
    """The table rows the pipeline writes for reference records, per output."""
    out = {"alerts": [], "slo_status": [], "comparisons": []}
    for r in records:
        tag = {"AlertTransition": "alerts", "SloStatus": "slo_status"}.get(type(r).__name__)
        out[tag or "comparisons"].append(_normal(r.as_row(NOW)))
    return out


def _alone(slos, rows, records=None) -> set[tuple]:
    """The reference: each SLO evaluated alone on each slice it covers (per-SLO rows);
    the records are appended to ``records`` when given."""
    out = set()
    for slo in slos:
        for name in SLICES:
            if slo.covers(name):
                panes = sorted(
                    (r for r in rows if r["slice"] == name), key=lambda r: r["pane_index"]
                )
                transitions, statuses = evaluate_history(
                    slo, name, [window_row(slo, r) for r in panes]
                )
                out |= {_comparable(t) for t in transitions} | {_comparable(s) for s in statuses}
                if records is not None:
                    records += [*transitions, *statuses]
    return out


def test_all_slos_of_a_slice_in_one_pass_equal_each_slo_alone():
    slos, rows = _slos(), _rows()
    got = set()
    for name in SLICES:
        panes = sorted((r for r in rows if r["slice"] == name), key=lambda r: r["pane_index"])
        covering = [s for s in slos if s.covers(name)]
        for _, transitions, statuses in evaluate_slice(covering, name, panes):
            got |= {_comparable(t) for t in transitions} | {_comparable(s) for s in statuses}
    expected = _alone(slos, rows)
    assert got == expected
    fired = {r[2] for r in expected if r[0] == "AlertTransition" and r[6] == "firing"}
    assert len(fired) >= 5  # alerts of several SLOs fired: not only OK statuses compared


def _counter(name: str):
    def count(element):
        Metrics.counter("test", name).inc()
        return element

    return count


class _Grouping(PipelineVisitor):
    """Finds the input of the stage's GroupByKey (the SLO or the comparison stage)."""

    def __init__(self):
        self.inputs = []

    def visit_transform(self, node):
        if isinstance(node.transform, beam.GroupByKey):
            self.inputs.append(node.inputs[0])


def _run(transform, rows, expected: dict[str, list[tuple]], results: str):
    """Runs ``transform`` (the SLO or the comparison stage) on ``rows``, checking that its
    ``results`` and ``alerts`` outputs equal ``expected``'s; returns how many rows its
    GroupByKey received (``grouped``), and how many ``results`` and ``alerts`` it wrote."""
    p = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    out = p | beam.Create(rows, reshuffle=False) | transform
    visitor = _Grouping()  # before assert_that adds its own GroupByKey
    p.visit(visitor)
    [grouped] = visitor.inputs
    for tag in ("alerts", results):
        assert_that(
            out[tag] | f"Normal {tag}" >> beam.Map(_normal), equal_to(expected[tag]), f"Equal {tag}"
        )
    grouped | "CountGrouped" >> beam.Map(_counter("grouped"))
    out[results] | "CountResults" >> beam.Map(_counter("results"))
    out["alerts"] | "CountAlerts" >> beam.Map(_counter("alerts"))
    result = p.run()
    result.wait_until_finish()
    counters = result.metrics().query(MetricsFilter().with_namespace("test"))["counters"]
    return {c.key.metric.name: c.committed for c in counters}


@pytest.mark.parametrize("n", [2, 24])
def test_the_grouping_step_receives_each_row_once_whatever_the_number_of_slos(n):
    # every slice is covered (s0: overall, s1: region=*), so every row is grouped once:
    # 3 slices x 30 windows x 2 panes = 180 rows, for 2 SLOs as for 24 (before: once per
    # covering SLO: 180 for 2; with 24, overall is covered by 16 and each region by 16,
    # 2,880)
    slos = _slos()[:n]
    rows = _rows()
    records = []
    _alone(slos, rows, records)
    expected = _rows_alone(records)  # the outputs of each SLO alone, row for row
    counts = _run(EvaluateSlos(SloFile(1, slos), True, lambda: NOW), rows, expected, "slo_status")
    assert counts["grouped"] == len(SLICES) * HOURS * 2 == len(rows)
    assert counts["results"] == len(expected["slo_status"]) > 0


# --- comparisons: the same shape (rows keyed by the rest of their slice, once) ---------

VERSIONS = ("v1", "v2", "v3")
REGIONS = ("eu", "us")


def _comparison_rows() -> list[dict]:
    """Hourly windows of model_version=V and model_version=V,region=R, a partial pane
    then the final one; v3's MSE is 4x v1's (its errors have twice the spread)."""
    rng = np.random.default_rng(21)
    rows = []
    for version in VERSIONS:
        names = [f"model_version={version}"] + [
            f"model_version={version},region={r}" for r in REGIONS
        ]
        for name in names:
            for h in range(12):
                start = T0 + datetime.timedelta(hours=h)
                n = 300
                se = rng.normal(0, 2.0 if version == "v3" else 1.0, n) ** 2
                for pane, coverage in enumerate((0.5, 1.0)):
                    k = int(n * coverage)
                    rows.append(
                        {
                            "window_start": start,
                            "window_end": start + datetime.timedelta(hours=1),
                            "slice": name,
                            "pane_index": pane,
                            "label_coverage": coverage,
                            "complete": pane == 1,
                            "scored": k,
                            "sum_w": float(k),
                            "sum_w2": float(k),
                            "sum_se": float(se[:k].sum()),
                            "sum_se2": float((se[:k] ** 2).sum()),
                            "sum_ae": float(np.sqrt(se[:k]).sum()),
                        }
                    )
    return rows


def _comparisons():
    from msewatch.transforms.compare.spec import Comparison

    pairs = [("v1", "v2"), ("v1", "v3"), ("v2", "v3")]
    return tuple(
        Comparison(
            name=f"c{i}",
            baseline=pairs[i % 3][0],
            candidate=pairs[i % 3][1],
            slices=(("overall",), ("region=*",), ("overall", "region=*"))[i // 3 % 3],
            metric=("mse", "mae")[i % 2],
            lookback_s=6 * 3600,
            min_scored=100,
        )
        for i in range(9)
    )


def _comparisons_alone(comparisons, rows) -> list[tuple]:
    """The reference: each comparison alone on each slice it covers, fed the rows of its
    two versions (the per-comparison route of the previous main)."""
    from msewatch.transforms.compare.kernel import evaluate_history as compare_history

    out = []  # the records
    for c in comparisons:
        for rest in ("overall", *(f"region={r}" for r in REGIONS)):
            if not c.covers(rest):
                continue
            mine = [
                f"model_version={v}" + ("" if rest == "overall" else f",{rest}")
                for v in (c.baseline, c.candidate)
            ]
            panes = sorted((r for r in rows if r["slice"] in mine), key=lambda r: r["pane_index"])
            results, transitions = compare_history(c, rest, panes)
            out += [*results, *transitions]
    return out


def test_the_comparisons_group_each_row_once_and_equal_each_comparison_alone():
    from msewatch.transforms.compare.transform import CompareVersions

    comparisons, rows = _comparisons(), _comparison_rows()
    expected = _rows_alone(_comparisons_alone(comparisons, rows))
    transform = CompareVersions(comparisons, True, lambda: NOW)
    counts = _run(transform, rows, expected, "comparisons")
    # every slice feeds a comparison: 3 versions x 3 slices x 12 windows x 2 panes = 216
    # rows, each grouped once (previous main: once per comparison it feeds: a version is
    # in 2 of the 3 pairs, each pair has 2 comparisons covering overall and 2 region=*,
    # so 4 per row, 864)
    assert counts["grouped"] == len(rows) == 216
    assert counts["results"] == len(expected["comparisons"]) > 0
    assert len(expected["alerts"]) > 0  # v3 FAILs: not only PASS compared
