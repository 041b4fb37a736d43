"""The label_anomaly SLI: its keys, its window rule on hand-built columns, and the per-SLO
``outside`` column read from ``label_range``.

Every expected verdict and value is derived in a comment from docs/slo.md (label_anomaly):
the anomalous share is ``(outside + nan_labels) / labeled``; a window is also bad when its
labels are constant or its scale is mismatched; the value adds 10 (constant) and 100
(scale) to the share.
"""

from __future__ import annotations

import datetime

import numpy as np
import pytest

from msewatch.transforms.slo.config import SloFileError, parse_slo_file
from msewatch.transforms.slo.kernel import SloEvaluator
from msewatch.transforms.slo.sli import SLI_RULES, describe_label_anomaly, required_columns
from msewatch.transforms.slo.spec import InvalidValue, Slo, SloFile
from msewatch.transforms.slo.transform import evaluate_slice, window_row

H = 3_600_000


def anomaly_slo(**kw) -> Slo:
    args = dict(
        name="labels",
        sli="label_anomaly",
        threshold=0.01,
        objective=0.99,
        valid_range=(0, 100),
        min_scored=30,
    )
    args.update(kw)
    return Slo(**args)


# One column per window; each window's expectation is in WINDOWS below.
_NAMES = (
    "labeled",
    "nan_labels",
    "outside",
    "y_true_min",
    "y_true_max",
    "scored",
    "sum_abs_pred",
    "sum_abs_true",
    "label_coverage",
    "complete",
)
WINDOWS = [
    # (columns..., settled, bad, value)
    # clean: share 0/100; min 1 != max 50; ratio 2500 / 2400 = 1.04 in [0.1, 10]
    ((100, 0, 0, 1.0, 50.0, 100, 2500.0, 2400.0, 1.0, True), True, 0, 0.0),
    # 3 outside + 2 NaN of 100 labeled: share 0.05 > 0.01 -> bad by the share alone
    ((100, 2, 3, 1.0, 50.0, 98, 2500.0, 2400.0, 1.0, True), True, 1, 0.05),
    # 1 outside of 100: share 0.01, not above 0.01 -> good
    ((100, 0, 1, 1.0, 50.0, 100, 2500.0, 2400.0, 1.0, True), True, 0, 0.01),
    # 40 finite labels, all 7 (min == max): constant (40 >= 30) -> bad, value 0 + 10
    ((40, 0, 0, 7.0, 7.0, 40, 300.0, 280.0, 1.0, True), True, 1, 10.0),
    # ratio 1200 / 100 = 12 > 10 with 50 scored: scale mismatch, value 0 + 100
    ((50, 0, 0, 0.5, 4.0, 50, 1200.0, 100.0, 1.0, True), True, 1, 100.0),
    # ratio 5 / 100 = 0.05 < 1/10: scale mismatch too
    ((50, 0, 0, 0.5, 4.0, 50, 5.0, 100.0, 1.0, True), True, 1, 100.0),
    # 20 labeled < min_scored 30: unsettled (though all of them are outside)
    ((20, 0, 20, 200.0, 300.0, 20, 20.0, 5000.0, 1.0, True), False, 0, 1.0),
    # every label NaN: 0 scored, yet settled (the gate counts labeled pairs): share 1.0;
    # constant needs 30 finite labels (0 here), the scale 30 scored pairs (0): value 1.0
    ((100, 100, 0, np.nan, np.nan, 0, 0.0, 0.0, 1.0, True), True, 1, 1.0),
    # coverage 0.5 < 0.8 and not complete: unsettled
    ((100, 0, 0, 1.0, 50.0, 100, 2500.0, 2400.0, 0.5, False), False, 0, 0.0),
    # 35 labeled, 10 NaN: 25 finite labels all equal, under min_scored: not constant;
    # share 10 / 35
    ((35, 10, 0, 3.0, 3.0, 25, 75.0, 75.0, 1.0, True), True, 1, 10 / 35),
    # 40 labels all 0: constant; sum_abs_true 0 with sum_abs_pred 5: ratio inf > 10;
    # value 0 + 10 + 100
    ((40, 0, 0, 0.0, 0.0, 40, 5.0, 0.0, 1.0, True), True, 1, 110.0),
]


def columns() -> dict[str, np.ndarray]:
    n = len(WINDOWS)
    cols = {
        "window_start_ms": np.arange(n, dtype=np.int64) * H,
        "window_end_ms": (np.arange(n, dtype=np.int64) + 1) * H,
    }
    for k, name in enumerate(_NAMES):
        cols[name] = np.array([w[0][k] for w in WINDOWS], bool if name == "complete" else float)
    return cols


def test_the_rule_reads_its_columns_and_judges_each_check():
    slo = anomaly_slo()
    assert set(required_columns("label_anomaly")) == {"window_start_ms", "window_end_ms", *_NAMES}
    v = SLI_RULES["label_anomaly"].verdicts(slo, columns(), float("inf"))
    assert list(v.settled) == [w[1] for w in WINDOWS]
    settled = v.settled
    assert list(v.bad[settled]) == [w[2] for w in WINDOWS if w[1]]
    np.testing.assert_allclose(v.value[settled], [w[3] for w in WINDOWS if w[1]], rtol=1e-12)
    assert (v.eligible == 1).all()


def test_a_larger_scale_factor_and_threshold_calm_the_checks():
    # scale_factor 25: the ratios 12 and 0.05 are within [1/25, 25] = [0.04, 25], so both
    # scale windows are good; threshold 0.05: window 1's share of 0.05 is not above it
    slo = anomaly_slo(scale_factor=25, threshold=0.05)
    v = SLI_RULES["label_anomaly"].verdicts(slo, columns(), float("inf"))
    assert list(v.bad[[1, 4, 5]]) == [0, 0, 0]
    assert v.value[4] == 0.0


def test_describe_names_each_check_that_tripped():
    slo = anomaly_slo()
    assert describe_label_anomaly(slo, 0.05) == (
        "5.00% of labels outside [0, 100] or NaN/inf (bad above 1.00%)"
    )
    text = describe_label_anomaly(slo, 110.02)
    assert text.startswith("2.00% of labels")
    assert "constant labels" in text and "scale mismatch" in text and "beyond 10x" in text
    assert "scale" not in describe_label_anomaly(slo, 10.0)
    assert "constant" not in describe_label_anomaly(slo, 101.0)  # share 1.0 and the scale


@pytest.mark.parametrize(
    ("kw", "key", "what"),
    [
        ({"valid_range": None}, "valid_range", "is required"),
        ({"valid_range": (5, 5)}, "valid_range", "LOW must be below HIGH"),
        ({"valid_range": (9, 1)}, "valid_range", "LOW must be below HIGH"),
        ({"valid_range": (0, float("inf"))}, "valid_range[1]", "finite number"),
        ({"valid_range": (float("nan"), 1)}, "valid_range[0]", "finite number"),
        ({"valid_range": (0, 1, 2)}, "valid_range", "[LOW, HIGH]"),
        ({"valid_range": "0,1"}, "valid_range", "[LOW, HIGH]"),
        ({"scale_factor": 1}, "scale_factor", "must be > 1"),
        ({"scale_factor": float("inf")}, "scale_factor", "finite number"),
        ({"threshold": 1.0}, "threshold", "a share in [0, 1)"),
        ({"threshold": -0.1}, "threshold", "a share in [0, 1)"),
    ],
)
def test_the_keys_are_checked(kw, key, what):
    with pytest.raises(InvalidValue) as e:
        anomaly_slo(**kw)
    assert e.value.key == key and what in e.value.what


def test_defaults_and_other_slis():
    slo = anomaly_slo(valid_range=[0, 1e3])
    assert slo.valid_range == (0.0, 1000.0) and slo.scale_factor == 10.0
    for key, value in (("valid_range", (0, 1)), ("scale_factor", 5)):
        with pytest.raises(InvalidValue, match="applies only to sli: label_anomaly"):
            Slo(name="r", sli="rmse", threshold=1, objective=0.9, **{key: value})


def test_the_file_keys_and_metrics_needs():
    text = """
version: 1
slos:
  - {name: a, sli: label_anomaly, threshold: 0.02, objective: 0.99, valid_range: [0, 500],
     scale_factor: 4, min_scored: 50, slices: ["region=*"]}
  - {name: b, sli: label_anomaly, threshold: 0.01, objective: 0.99, valid_range: [-1, 1]}
  - {name: c, sli: label_anomaly, threshold: 0.05, objective: 0.9, valid_range: [0, 500]}
  - {name: d, sli: rmse, threshold: 3, objective: 0.9}
"""
    slo_file = parse_slo_file(text, "s.yaml")
    a = slo_file.slos[0]
    assert (a.valid_range, a.scale_factor, a.min_scored) == ((0.0, 500.0), 4.0, 50)
    # sorted, once each
    assert slo_file.metrics_needs()["valid_ranges"] == ((-1.0, 1.0), (0.0, 500.0))
    assert SloFile(1, (slo_file.slos[3],)).metrics_needs()["valid_ranges"] == ()
    with pytest.raises(SloFileError, match=r"s.yaml: x: valid_range: is required"):
        parse_slo_file(
            "version: 1\nslos: [{name: x, sli: label_anomaly, threshold: 0, objective: 0.9}]",
            "s.yaml",
        )


def _metrics_row(i: int, ranges) -> dict:
    """A metrics row of window i with ``label_range`` entries ``(low, high, outside)``."""
    start = datetime.datetime(2026, 11, 2, tzinfo=datetime.UTC)
    return {
        "window_start": start + datetime.timedelta(hours=i),
        "window_end": start + datetime.timedelta(hours=i + 1),
        "slice": "overall",
        "pane_index": 0,
        "labeled": 100,
        "nan_labels": 0,
        "label_range": [{"low": lo, "high": hi, "outside": n} for lo, hi, n in ranges],
        "y_true_min": 1.0,
        "y_true_max": 9.0,
        "scored": 100,
        "sum_abs_pred": 500.0,
        "sum_abs_true": 500.0,
        "label_coverage": 1.0,
        "complete": True,
    }


def test_each_slo_reads_the_outside_count_of_its_own_range():
    wide, narrow = anomaly_slo(name="wide"), anomaly_slo(name="narrow", valid_range=(2, 8))
    # window 0: 0 labels outside [0, 100], 30 outside [2, 8]; window 1: 4 and 40
    rows = [_metrics_row(0, [(0.0, 100.0, 0), (2.0, 8.0, 30)])]
    rows.append(_metrics_row(1, [(0.0, 100.0, 4), (2.0, 8.0, 40)]))
    assert window_row(narrow, rows[1])["outside"] == 40
    assert window_row(anomaly_slo(valid_range=(0, 1)), rows[1])["outside"] == 0  # no entry
    got = {slo.name: statuses for slo, _, statuses in evaluate_slice([wide, narrow], "o", rows)}
    # shares: wide 0/100, 4/100; narrow 30/100, 40/100
    assert [s.value for s in got["wide"]] == [0.0, 0.04]
    assert [s.value for s in got["narrow"]] == [0.3, 0.4]
    # streaming, pane by pane, agrees
    evaluator = SloEvaluator(narrow, "o")
    values = [s.value for r in rows for s in evaluator.update([window_row(narrow, r)])[1]]
    assert values == [0.3, 0.4]


def test_slo_check_says_what_makes_a_window_bad():
    from msewatch.commands.slo import describe_slo

    lines = describe_slo(anomaly_slo(scale_factor=4))
    assert lines[0] == (
        "labels (label_anomaly): a window is bad when over 1.00% of its labels are outside "
        "[0, 100] or NaN/inf, when its labels are constant, or when mean |y_pred| / mean "
        "|y_true| is beyond 4x (or below 1/4)"
    )
    assert "label_coverage >= 0.8 (or complete) and labeled >= 30" in lines[2]
